"""Typed training configuration, saved with every run as YAML and loadable with ``--config``.

One :class:`TrainConfig` holds the settings shared by all stages (device, AMP, data
loading, logging) and one section per stage (optimisation and stage-specific losses).
A YAML file may give any subset; missing keys keep their defaults, unknown keys are an
error that lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from napari_wsss.conventions import TRAINING_STAGES

__all__ = [
    "StageConfig",
    "ClassifierConfig",
    "SegmenterConfig",
    "AffinityConfig",
    "ExplainerConfig",
    "TrainConfig",
    "load_config",
    "save_config",
    "config_from_dict",
    "config_to_dict",
    "apply_overrides",
]


@dataclass
class StageConfig:
    """Optimisation and data settings of one stage.

    Attributes
    ----------
    epochs : int
        Passes over the training images.
    batch_size : int
        Global batch size (split evenly over DDP processes).
    crop_size : int
        Side of the square training crops.
    scale_range : tuple of float
        Random scale of the image relative to fitting it in the crop box.
    hflip : bool
        Random horizontal flips.
    color_jitter : float
        Strength of brightness/contrast/saturation jitter (0 disables it).
    optimizer : {"sgd", "adamw"}
    lr : float
        Learning rate of the pretrained part (backbone / encoder).
    head_lr_mult : float
        Learning-rate multiplier of the freshly initialised part (head / decoder).
    momentum, weight_decay : float
    scheduler : {"poly", "cosine", "constant"}
        Per-step schedule over all epochs, after ``warmup_steps`` of linear warm-up.
    poly_power : float
    warmup_steps : int
    grad_clip : float or None
        Clip the global gradient norm to this value.
    freeze_bn : bool
        Keep the pretrained backbone's BatchNorm layers in eval mode with frozen
        affine parameters (what Puzzle-CAM's ``mode='fix'`` does); makes results
        independent of the per-process batch size.
    val_fraction : float
        Fraction of the images held out for :func:`trainer.loop.evaluate` after each
        epoch (chosen by a hash of the image id, so stable across runs).
    """

    epochs: int = 10
    batch_size: int = 16
    crop_size: int = 320
    scale_range: tuple[float, float] = (0.7, 1.3)
    hflip: bool = True
    color_jitter: float = 0.2
    optimizer: str = "sgd"
    lr: float = 0.01
    head_lr_mult: float = 10.0
    momentum: float = 0.9
    weight_decay: float = 1e-4
    scheduler: str = "poly"
    poly_power: float = 0.9
    warmup_steps: int = 0
    grad_clip: float | None = None
    freeze_bn: bool = True
    val_fraction: float = 0.0


@dataclass
class ClassifierConfig(StageConfig):
    """Classifier stage: multi-label BCE + optional pixel, Puzzle-CAM and KUR terms.

    Attributes
    ----------
    backbone : str
        A name of ``napari_wsss.models.BACKBONES``.
    weights : str or None
        Backbone weights (``"IMAGENET1K_V1"``; ``None`` for random init).
    pixel_weight : float
        Weight of the cross-entropy on upsampled differentiable CAMs at corrected
        pixels (model guidance). Strong weights cost classification accuracy: on
        MSRC-v2 a weight ten times this default dropped mAP from 0.91 to 0.79.
    puzzle_pieces : int
        Puzzle-CAM tiles (a square number, 4 in the paper); 0 disables Puzzle-CAM.
    puzzle_alpha : float
        Weight of the Puzzle-CAM reconstruction loss.
    puzzle_warmup : float
        Fraction of all steps over which the reconstruction weight rises linearly
        from 0 to ``puzzle_alpha`` (0.5 in the authors' code).
    kur : bool
        Kernel Usage Regularisation: the head uses ``alpha * W * softmax_c(W)``.
    kur_alpha : float
    occse : bool
        OC-CSE adversarial erasing against a frozen ordinary classifier.
    occse_checkpoint : str or None
        The ordinary classifier's checkpoint; default the project's latest classifier
        when training starts (give it explicitly to resume an OC-CSE run).
    occse_alpha, occse_warmup : float
        Weight of the OC-CSE term, ramped linearly over that fraction of the steps.
    """

    backbone: str = "mobilenet_v2"
    weights: str | None = "IMAGENET1K_V1"
    lr: float = 0.001
    pixel_weight: float = 0.1
    puzzle_pieces: int = 0
    puzzle_alpha: float = 1.0
    puzzle_warmup: float = 0.5
    kur: bool = False
    kur_alpha: float = 1.0
    occse: bool = False
    occse_checkpoint: str | None = None
    occse_alpha: float = 1.0
    occse_warmup: float = 0.5


@dataclass
class SegmenterConfig(StageConfig):
    """Segmenter stage: DeepLabV3+ on pseudo-masks, corrections overriding them.

    Attributes
    ----------
    encoder : str
        ``segmentation_models_pytorch`` encoder name (``mobilenet_v2``).
    weights : str or None
        torchvision ImageNet weights loaded into the encoder (offline).
    pseudo_stages : tuple of str
        Mask stages of the store to learn from, in order of preference per image.
    """

    encoder: str = "mobilenet_v2"
    weights: str | None = "IMAGENET1K_V1"
    pseudo_stages: tuple[str, ...] = ("rw", "crf", "cam")
    freeze_bn: bool = False
    lr: float = 0.01
    head_lr_mult: float = 1.0


@dataclass
class AffinityConfig(StageConfig):
    """AffinityNet stage: pair affinities learnt from confident regions of the stored CAMs.

    Defaults follow Ahn & Kwak (CVPR 2018) and their code (``psa/train_aff.py``,
    ``psa/infer_cls.py``): 8 epochs of batch 8, weight decay 5e-4, radius 5 at stride 8,
    background exponents 4 / 32. The learning rate is the trainer's, not the paper's
    0.1 (tuned for ResNet-38).

    Attributes
    ----------
    backbone : str
        A name of ``napari_wsss.models.BACKBONES``.
    weights : str or None
        Backbone weights (``"IMAGENET1K_V1"``; ``None`` for random init).
    cam_method : str or None
        Stored CAMs to learn from (``Project.read_cams(id, cam_method)``); ``None``: the
        method stored for the most training images (what ``napari-wsss prelabel`` wrote).
    radius : int
        Pair radius on the feature grid.
    alpha_low, alpha_high : float
        Background exponents of the confident foreground / background maps
        (projects with background).
    high, low : float
        Confidence band of projects without background (see
        ``napari_wsss.refine.confident_labels``).
    crf : bool
        Refine the confident regions with the dense CRF on the image (both score maps of
        background projects, as in the paper; CRF / CAM agreement without background,
        see ``napari_wsss.refine.affinity_labels``).
    """

    backbone: str = "mobilenet_v2"
    weights: str | None = "IMAGENET1K_V1"
    epochs: int = 8
    batch_size: int = 8
    weight_decay: float = 5e-4
    cam_method: str | None = None
    radius: int = 5
    alpha_low: float = 4.0
    alpha_high: float = 32.0
    high: float = 0.30
    low: float = 0.05
    crf: bool = True


@dataclass
class ExplainerConfig(StageConfig):
    """Explainer stage: per-class masks for the frozen classifier (Stalder et al., NeurIPS 2022).

    Loss weights, areas, optimiser (Adam, constant learning rate, batch 16, no data
    augmentation) follow the authors' code (``NN-Explainer``); the learning rate is their
    ResNet-50 setting (1e-4; 1e-5 for VGG-16). See :mod:`napari_wsss.models.explainer`.

    Attributes
    ----------
    encoder : str
        DeepLabV3+ encoder (``segmentation_models_pytorch`` name), as the segmenter's.
    weights : str or None
        torchvision ImageNet weights loaded into the encoder (offline).
    classifier_checkpoint : str or None
        The classifier to explain; default the project's latest classifier when training
        starts (recorded here in the run's config). Its class list must be the project's.
    entropy_weight : float
        ``lambda_e``: negative entropy of the prediction on the inverse-masked image.
    tv_weight : float
        ``lambda_tv``: total variation of the target and non-target masks.
    area_constraint_weight : float
        Weight of the per-class area constraint (``min_area`` .. ``max_area``).
    target_area_weight, nontarget_area_weight : float
        Weights of the mean target / non-target mask.
    min_area, max_area : float
        Area bounds of each present class's mask, as fractions of the image.
    freeze_bn : bool
        Keep *every* BatchNorm of the network in eval mode (the encoder's ImageNet
        statistics; the decoder's start as the identity), so inference computes exactly
        what was trained.
    """

    encoder: str = "mobilenet_v2"
    weights: str | None = "IMAGENET1K_V1"
    classifier_checkpoint: str | None = None
    optimizer: str = "adamw"
    lr: float = 1e-4
    weight_decay: float = 0.0
    head_lr_mult: float = 1.0
    scheduler: str = "constant"
    crop_size: int = 224
    scale_range: tuple[float, float] = (1.0, 1.0)
    hflip: bool = False
    color_jitter: float = 0.0
    entropy_weight: float = 1.0
    tv_weight: float = 1.0
    area_constraint_weight: float = 1.0
    target_area_weight: float = 0.1
    nontarget_area_weight: float = 0.3
    min_area: float = 0.05
    max_area: float = 0.3


@dataclass
class TrainConfig:
    """Everything one training run needs; saved as ``config.yaml`` with each run.

    Attributes
    ----------
    device : str
        ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    amp : bool
        Mixed precision: fp16 + GradScaler on CUDA, bf16 autocast on CPU.
    amp_dtype : {"auto", "float16", "bfloat16"}
        Autocast dtype when ``amp`` is on; ``"auto"`` is the default just described,
        ``"bfloat16"`` (no scaler) suits GPUs from Ampere on.
    channels_last : bool
        NHWC memory format for the model and its input batches.
    compile : bool
        ``torch.compile`` the training module.
    compile_backend : str
        ``torch.compile`` backend (``"inductor"``; ``"aot_eager"`` / ``"eager"`` to debug).
    num_workers : int
    pin_memory : bool
    seed : int
    resume : bool
        Continue the latest checkpoint of the stage (weights, optimizer, scheduler,
        epoch, step, RNG) exactly where it stopped.
    max_steps : int or None
        Stop this invocation after that many optimizer steps (the schedule still
        spans all epochs), checkpointing so that ``resume`` continues seamlessly.
    checkpoint_every : int or None
        Also checkpoint every that many steps (besides every epoch end).
    log_every : int
        Progress line (JSON on stdout) and TensorBoard scalars every that many steps.
    log_dir : str or None
        TensorBoard + config.yaml directory; default ``<project>/runs/<stage>-<time>``.
    """

    device: str = "auto"
    amp: bool = False
    amp_dtype: str = "auto"
    channels_last: bool = False
    compile: bool = False
    compile_backend: str = "inductor"
    num_workers: int = 0
    pin_memory: bool = True
    seed: int = 0
    resume: bool = False
    max_steps: int | None = None
    checkpoint_every: int | None = None
    log_every: int = 1
    log_dir: str | None = None
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    affinity: AffinityConfig = field(default_factory=AffinityConfig)
    explainer: ExplainerConfig = field(default_factory=ExplainerConfig)

    def stage(self, name: str) -> StageConfig:
        """The section of stage ``name``; an unknown name lists the valid ones."""
        if name not in TRAINING_STAGES:
            raise ValueError(f"unknown stage {name!r}; valid stages: {', '.join(sorted(TRAINING_STAGES))}")
        return getattr(self, name)


def config_to_dict(config) -> dict:
    """A dataclass config as plain YAML/pickle-safe types (tuples become lists)."""

    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(config)


def _coerce(tp, value, where: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if value is None:
        if tp is type(None) or type(None) in args:
            return None
        raise ValueError(f"{where}: None is not allowed (expected {tp})")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        return _from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, where) for v in value)
        if len(value) != len(args):
            raise ValueError(f"{where}: expected {len(args)} values, got {value!r}")
        return tuple(_coerce(a, v, where) for a, v in zip(args, value))
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)  # YAML 1.1 reads "3e-4" (no dot) as a string
        except ValueError:
            raise ValueError(f"{where}: expected a number, got {value!r}") from None
    if tp is bool and not isinstance(value, bool):
        raise ValueError(f"{where}: expected true/false, got {value!r}")
    if tp in (int, str) and (not isinstance(value, tp) or isinstance(value, bool)):
        raise ValueError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def _from_dict(cls, data: dict, where: str):
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(names)}"
        )
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def config_from_dict(data: dict | None, *, source: str = "config") -> TrainConfig:
    """Build a :class:`TrainConfig` from a (partial) nested mapping, validating types."""
    return _from_dict(TrainConfig, dict(data or {}), source)


def load_config(path: str | Path) -> TrainConfig:
    """Read a YAML config; errors name the file and the offending key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"config file {path} is not valid YAML: {e}") from None
    if data is not None and not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping, got {type(data).__name__}")
    return config_from_dict(data, source=str(path))


def save_config(config: TrainConfig, path: str | Path) -> None:
    """Write ``config`` as YAML (readable by :func:`load_config`)."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))


def apply_overrides(config: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply ``key=value`` overrides (dotted keys, YAML values): ``classifier.lr=0.02``."""
    data = config_to_dict(config)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not of the form key=value")
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                raise ValueError(f"override {item!r}: {p!r} is not a config section")
            node = node[p]
        if parts[-1] not in node:
            raise ValueError(
                f"override {item!r}: unknown key {parts[-1]!r}; valid keys: {', '.join(node)}"
            )
        node[parts[-1]] = yaml.safe_load(raw)
    return config_from_dict(data, source="override")
