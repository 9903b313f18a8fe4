"""AffinityNet stage: confident regions of the stored CAMs -> pixel-pair affinities.

Ahn & Kwak, "Learning Pixel-level Semantic Affinity with Image-level Supervision", CVPR 2018
(code ``psa/train_aff.py``): per image, the CAMs ``napari-wsss prelabel`` stored are turned
into confident foreground / background labels at image size
(:func:`napari_wsss.refine.confident_labels`, dense CRF on the image where configured),
annotator corrections overriding them; the labels go through the trainer's joint
image / mask augmentation, are downsampled to the feature grid by majority vote
(:func:`napari_wsss.refine.downsample_labels`), and every pair of grid cells closer than the
radius with both ends labelled is a target (:func:`napari_wsss.refine.pair_targets`) of the
paper's loss (:func:`napari_wsss.models.affinity.affinity_loss`). Training runs in the shared
loop (:func:`trainer.run.fit`); the checkpoint carries ``AffinityNet.config`` so
:func:`napari_wsss.models.load_affinity` rebuilds the model.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F

from napari_wsss.conventions import IGNORE
from napari_wsss.models.affinity import AffinityNet, affinity_loss_terms, pair_affinity
from napari_wsss.refine import AffinityTargets, default_crf, confident_labels, downsample_labels, pair_targets

from .config import AffinityConfig
from .data import Source, corrections, stage_datasets
from .distributed import batch_share
from .stage import Stage, TrainingDataError, TrainingModule

__all__ = [
    "AffinityModule",
    "AffinityLoss",
    "AffinityPairMetric",
    "affinity_labels",
    "grid_pair_targets",
    "build_affinity_stage",
]


class AffinityModule(TrainingModule):
    """``forward(x) -> features (B, D, h, w)`` of an :class:`AffinityNet`; optionally
    freezes the backbone's BatchNorm (as the paper's ResNet-38 does)."""

    def __init__(self, net: AffinityNet, *, freeze_bn: bool = False):
        super().__init__(net, frozen_part=net.backbone if freeze_bn else None)


def grid_pair_targets(masks, grid: tuple[int, int], radius: int, *,
                      background: int | None) -> AffinityTargets:
    """Pair labels of label maps downsampled to the feature grid.

    Parameters
    ----------
    masks : Tensor or ndarray, shape (B, H, W)
        Label maps at crop size (255 = ignore).
    grid : (h, w)
        The feature map size.
    radius : int
    background : int or None

    Returns
    -------
    AffinityTargets
        Each of shape ``(B, P)`` on the CPU.
    """
    m = masks.detach().cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    small = np.stack([downsample_labels(x.astype(np.uint8), tuple(grid)) for x in m])
    return pair_targets(small, radius, background=background)


class AffinityLoss:
    """The paper's loss on the features of a batch: ``loss_fn(features, batch)``.

    ``L_bg+/4 + L_fg+/4 + L_neg/2`` (``L_fg+/2 + L_neg/2`` without background) over the
    pairs of ``batch["mask"]`` downsampled to the feature grid; logs the three terms.
    """

    def __init__(self, *, radius: int, background: int | None):
        self.radius = int(radius)
        self.background = background

    def __call__(self, features: torch.Tensor, batch: dict):
        targets = grid_pair_targets(batch["mask"], features.shape[-2:], self.radius,
                                    background=self.background).to(features.device)
        aff = pair_affinity(features.float(), self.radius)
        terms = affinity_loss_terms(aff, targets, eps=_EPS)
        names = ("bg_pos", "fg_pos", "neg") if self.background is not None else ("fg_pos", "neg")
        parts = {k: terms[k].detach() for k in names}
        # under DDP: normalise by the pair counts of the global batch, as one process does
        share = batch_share(torch.stack([terms[c] for _, c in _TERMS]), eps=_EPS)
        terms.update({k: terms[k] * share[i].to(terms[k].dtype) for i, (k, _) in enumerate(_TERMS)})
        return _combine(terms, background=self.background is not None), parts


_EPS = 1e-5  # affinity_loss's default, as in the paper's code
_TERMS = (("bg_pos", "bg_count"), ("fg_pos", "fg_count"), ("neg", "neg_count"))


def _combine(terms: dict, *, background: bool) -> torch.Tensor:
    """:func:`~napari_wsss.models.affinity.affinity_loss`'s weighting of the three terms."""
    if background:
        return terms["bg_pos"] / 4 + terms["fg_pos"] / 4 + terms["neg"] / 2
    return terms["fg_pos"] / 2 + terms["neg"] / 2


class AffinityPairMetric:
    """Mean affinity of each pair type and the balanced pair accuracy at ``W = 0.5``.

    ``pair_accuracy`` is the mean, over the pair types present, of the fraction of
    positive pairs with ``W > 0.5`` and of negative pairs with ``W < 0.5``.
    """

    def __init__(self, *, radius: int, background: int | None):
        self.radius = radius
        self.background = background
        self.sums = {k: 0.0 for k in AffinityTargets._fields}
        self.hits = dict(self.sums)
        self.counts = dict(self.sums)

    def update(self, features: torch.Tensor, batch: dict) -> None:
        targets = grid_pair_targets(batch["mask"], features.shape[-2:], self.radius,
                                    background=self.background)
        aff = pair_affinity(features.float(), self.radius).cpu()
        for name, t in zip(AffinityTargets._fields, targets):
            hit = aff < 0.5 if name == "neg" else aff > 0.5
            self.sums[name] += float((aff * t).sum())
            self.hits[name] += float((hit * t).sum())
            self.counts[name] += float(t.sum())

    def compute(self) -> dict:
        out, acc = {}, []
        for name, n in self.counts.items():
            out[f"{name}_affinity"] = self.sums[name] / n if n else float("nan")
            if n:
                acc.append(self.hits[name] / n)
        out["pair_accuracy"] = float(np.mean(acc)) if acc else float("nan")
        return out


def affinity_labels(source: Source, image_id: str, method: str, cfg: AffinityConfig) -> np.ndarray:
    """Confident labels of one image from its stored CAMs, corrections overriding.

    Parameters
    ----------
    source : Source
    image_id : str
    method : str
        CAM method to read (``source.read_cams(image_id, method)``).
    cfg : AffinityConfig
        ``alpha_low``, ``alpha_high``, ``high``, ``low``, ``crf``.

    Returns
    -------
    ndarray, shape (H, W), uint8
        Class indices, 255 = neutral. CAM slices of classes that are no longer labels of
        the image are dropped; CAMs are resized bilinearly to the image size.
    """
    image = source.image(image_id)
    h, w = image.shape[:2]
    got = source.read_cams(image_id, method)
    if got is None:
        raise TrainingDataError(
            f"image {image_id!r} has no stored {method!r} CAMs: run `napari-wsss prelabel` first"
        )
    cams, classes = np.asarray(got[0], np.float32), np.asarray(got[1], np.int64)
    keep = np.isin(classes, np.asarray(source.image_labels(image_id), np.int64))
    cams, classes = cams[keep], classes[keep]
    if cams.shape[1:] != (h, w) and len(cams):
        t = torch.from_numpy(np.ascontiguousarray(cams))[None]
        cams = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)[0].numpy()
    corr, painted = corrections(source, image_id)
    bg = source.background
    try:
        if not len(cams) and bg is None:  # nothing the CAMs can say: corrections only
            labels = np.full((h, w), IGNORE, np.uint8)
        else:
            labels = confident_labels(
                cams, classes, background=bg, image=image if cfg.crf else None,
                alpha_low=cfg.alpha_low, alpha_high=cfg.alpha_high, high=cfg.high, low=cfg.low,
                corrections=corr, crf_kwargs=default_crf(bg),
            )
    except ValueError as e:
        raise ValueError(f"image {image_id!r}, {method!r} CAMs: {e}") from e
    # painted "ignore" (255 in ``corr``) overrides the CAM labels with "neutral" too
    return np.where(painted, corr, labels).astype(np.uint8)


class _ConfidentTargets:
    """``targets(source, image_id) -> {"mask": labels}``, computed once per image."""

    def __init__(self, method: str, cfg: AffinityConfig):
        self.method = method
        self.cfg = cfg
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, source: Source, image_id: str) -> dict:
        if image_id not in self._cache:
            self._cache[image_id] = affinity_labels(source, image_id, self.method, self.cfg)
        return {"mask": self._cache[image_id]}


def _cam_method(source: Source, ids: list[str], requested: str | None) -> str:
    """The CAM method to learn from; errors say to run prelabel first."""
    where = getattr(source, "path", "the source")
    counts = Counter(m for i in ids for m in source.cam_methods(i))
    if not counts:
        raise TrainingDataError(
            f"project {where} has no stored CAMs for its {len(ids)} training image(s): "
            f"run `napari-wsss prelabel {where}` before training AffinityNet"
        )
    if requested is None:
        return counts.most_common(1)[0][0]
    if requested not in counts:
        raise TrainingDataError(
            f"project {where} has no {requested!r} CAMs (stored methods: {', '.join(sorted(counts))}): "
            f"run `napari-wsss prelabel` with that method or set affinity.cam_method"
        )
    return requested


def build_affinity_stage(source: Source, cfg: AffinityConfig, train_ids, val_ids, *, seed=0) -> Stage:
    """Model, training module, loss, datasets and parameter groups of the AffinityNet stage."""
    classes = list(source.classes)
    bg = source.background
    method = _cam_method(source, list(train_ids), cfg.cam_method)
    train_ids = [i for i in train_ids if method in source.cam_methods(i)]
    val_ids = [i for i in val_ids if method in source.cam_methods(i)]
    net = AffinityNet(cfg.backbone, cfg.weights, radius=cfg.radius)
    module = AffinityModule(net, freeze_bn=cfg.freeze_bn)
    targets = _ConfidentTargets(method, cfg)
    train_set, val_set = stage_datasets(source, train_ids, val_ids, targets, cfg, seed=seed)
    backbone, head = net.parameter_groups()
    groups = [
        {"params": [p for p in backbone if p.requires_grad], "lr_mult": 1.0},
        {"params": head, "lr_mult": cfg.head_lr_mult},
    ]
    return Stage(
        name="affinity", model=net, module=module,
        loss_fn=AffinityLoss(radius=cfg.radius, background=bg), param_groups=groups,
        train_set=train_set, val_set=val_set,
        metric=lambda: AffinityPairMetric(radius=cfg.radius, background=bg),
        backbone=cfg.backbone, classes=classes, background=bg,
        extra={"cam_method": method, "checkpoint": {"model_config": net.config, "cam_method": method}},
    )
