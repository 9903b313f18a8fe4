"""Image -> CAMs -> dense CRF -> random walk (-> segmenter, explainer) proposals.

One implementation used by the CLI (``prelabel``), the napari panel and the trainer. A
:class:`Pipeline` holds the models; :meth:`Pipeline.run` turns one image and its
image-level labels into :class:`Proposals` (all labels of the image in one CAM pass);
:func:`save_proposals` writes them to the project; :func:`prelabel` does a whole
project, resumably, with progress and a report of the images that failed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import cams as cam_engine
from .conventions import IGNORE, STAGES
from .device import resolve_device
from .models import explainer_maps, load_affinity, load_classifier, load_explainer, load_segmenter
from .models.scale import model_input, scale_rule
from .pipeline_config import EXPLAINER, CRFOptions, PipelineConfig, RWOptions
from .proposal_stages import StageWork, full_size_mask
from .refine.background import scores_with_background
from .refine.crf import default_crf
from .refine.random_walk import build_affinity, random_walk_refine
from .refine.upsample import area_downsample, working_shape
from .store import checkpoint_version
from .transforms import to_tensor

__all__ = [
    "EXPLAINER",
    "CRFOptions",
    "RWOptions",
    "PipelineConfig",
    "Proposals",
    "Pipeline",
    "save_proposals",
    "prelabel",
    "PrelabelReport",
]

@dataclass
class Proposals:
    """What the pipeline proposes for one image.

    Attributes
    ----------
    cams : ndarray, shape (K, h, w), float32
        CAMs of the image's labels, normalised to ``[0, 1]``, at image size, or at the
        working size of an image larger than ``PipelineConfig.refine_max_side``.
    cam_classes : ndarray, shape (K,), int64
    masks : dict of str -> ndarray (H, W) uint8
        By stage (``cam``, ``crf``, ``rw``, ``segmenter``, ``explainer``), project class indices.
    model_version : str
    method : str
        The CAM method.
    """

    cams: np.ndarray
    cam_classes: np.ndarray
    masks: dict[str, np.ndarray]
    model_version: str
    method: str = "cam"


class Pipeline:
    """The proposal models of a project and the settings to run them.

    Parameters
    ----------
    model : Classifier (or any classifier the CAM engine supports)
    classes : list of str
        The project's classes (``len(classes)`` outputs of ``model``).
    background : int or None
        The project's background class.
    config : PipelineConfig
    model_version : str
        Recorded with every proposal.
    affinity : AffinityNet, optional
        Trained affinity model for the random walk (else colour affinity).
    segmenter : nn.Module, optional
        Trained segmenter (``"segmenter"`` stage).
    explainer : nn.Module, optional
        Trained Explainer (``"explainer"`` stage and ``method="explainer"``).
    device : torch.device or str, optional
        Default: the model's device.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        classes: Sequence[str],
        background: int | None,
        config: PipelineConfig | None = None,
        *,
        model_version: str,
        affinity=None,
        segmenter=None,
        explainer=None,
        device=None,
    ):
        self.config = config or PipelineConfig()
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(self.device).eval()
        self.classes = list(classes)
        self.background = background
        self.model_version = model_version
        self.affinity = affinity.to(self.device).eval() if affinity is not None else None
        self.segmenter = segmenter.to(self.device).eval() if segmenter is not None else None
        self.explainer = explainer.to(self.device).eval() if explainer is not None else None
        #: stage -> checkpoint version of the models in use, and stage -> why a project model is not
        #: (set by :meth:`from_project`)
        self.models: dict[str, str] = {"classifier": model_version}
        self.dropped: dict[str, str] = {}
        #: the project's pipeline defaults (``Project.read_calibration``), set by :meth:`from_project`
        self.calibration: dict | None = None
        if self.config.method == EXPLAINER and self.explainer is None:
            raise ValueError("method 'explainer' needs a trained explainer: train one with "
                             "`napari-wsss train PROJECT --stage explainer`")

    @classmethod
    def from_project(cls, project, config: PipelineConfig | None = None, *, device=None,
                     classifier=None) -> "Pipeline":
        """The project's latest trained models (classifier required; affinity, segmenter,
        explainer if any).

        ``classifier`` (a checkpoint file) replaces the project's classifier: the project's
        AffinityNet and segmenter are kept (they read the image, not the classifier), its
        Explainer only if it was trained to explain that same checkpoint. ``pipeline.models``
        (stage -> version) and ``pipeline.dropped`` (stage -> reason) say which.
        """
        device = resolve_device(device)
        path = project.latest_checkpoint("classifier") if classifier is None else classifier
        if path is None:
            raise FileNotFoundError(
                f"project {project.path} has no classifier yet: train one with "
                f"`napari-wsss train {project.path} --stage classifier`"
            )
        if classifier is None:
            model = load_classifier(project, device)
        else:
            model = load_classifier(classifier, device, classes=project.classes)
        models, dropped = {"classifier": checkpoint_version(path)}, {}
        affinity = segmenter = explainer = None
        if (p := project.latest_checkpoint("affinity")) is not None:
            affinity, models["affinity"] = load_affinity(project, device), checkpoint_version(p)
        if (p := project.latest_checkpoint("segmenter")) is not None:
            segmenter, models["segmenter"] = load_segmenter(project, device), checkpoint_version(p)
        if (p := project.latest_checkpoint("explainer")) is not None:
            net = load_explainer(project, device)
            if classifier is None or net.classifier_version == checkpoint_version(classifier):
                explainer, models["explainer"] = net, checkpoint_version(p)
            else:
                dropped["explainer"] = (f"{checkpoint_version(p)} explains classifier "
                                        f"{net.classifier_version or '?'}, not {path}")
        pipe = cls(model, project.classes, project.background, config,
                   model_version=checkpoint_version(path), affinity=affinity, segmenter=segmenter,
                   explainer=explainer, device=device)
        pipe.models, pipe.dropped = models, dropped
        pipe.set_calibration(project.read_calibration())
        return pipe

    def set_calibration(self, calibration: dict | None) -> None:
        """Use a project's calibration (``"auto"`` threshold; with ``apply_calibration`` the
        refinement stages it turned off are left out of ``config.refine``)."""
        self.calibration = calibration
        off = (calibration or {}).get("refine_off") or {}
        if self.config.apply_calibration and off:
            self.config = self.config.replace(refine=tuple(s for s in self.config.refine if s not in off))

    def with_config(self, **changes) -> "Pipeline":
        """The same models with ``config.replace(**changes)`` (and the same calibration)."""
        import copy

        other = copy.copy(self)
        other.config = self.config.replace(**changes)
        return other

    def threshold(self, cams: np.ndarray) -> float:
        """The background threshold of an image with normalised CAMs ``cams`` (K, H, W)."""
        from .refine.threshold import resolve_threshold

        return resolve_threshold(self.config.cam_threshold, cams, self.calibration)

    # -- CAMs ------------------------------------------------------------------------
    def _rule(self, model):
        """The scale rule ``model`` was trained at, or None (then ``max_side`` / ``min_side``)."""
        return scale_rule(model) if self.config.scale == "model" else None

    def _model_input(self, model, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Normalised batch of same-size images at the inference size of ``model``."""
        rule = self._rule(model)
        if rule is not None:
            return torch.cat([model_input(image, self.device, rule) for image in images])
        x = torch.cat([to_tensor(image, self.device) for image in images])
        size = self._inference_size(*x.shape[-2:])
        if size != tuple(x.shape[-2:]):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x

    def _inference_size(self, h: int, w: int) -> tuple[int, int]:
        scale = 1.0
        if self.config.max_side and max(h, w) > self.config.max_side:
            scale = self.config.max_side / max(h, w)
        elif self.config.min_side and min(h, w) < self.config.min_side:
            scale = self.config.min_side / min(h, w)
        return round(h * scale), round(w * scale)

    def working_image(self, image: np.ndarray) -> np.ndarray:
        """``image`` itself, or its area average (uint8 RGB) at the working size when its
        long side exceeds ``config.refine_max_side``."""
        image = np.asarray(image)
        size = working_shape(*image.shape[:2], self.config.refine_max_side)
        return image if size == image.shape[:2] else area_downsample(image, size)

    def cams(self, image: np.ndarray, labels: Sequence[int]) -> np.ndarray:
        """Normalised CAMs ``(K, h, w)`` of ``labels`` (TTA as configured); the Explainer's
        masks with ``method="explainer"``. At image size, or at the working size of an image
        larger than ``config.refine_max_side`` (:meth:`working_image`)."""
        return self.cams_batch([image], [labels])[0]

    def cams_batch(self, images: Sequence[np.ndarray], labels: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """:meth:`cams` of several images: images of the same size share one batched pass."""
        images = [self.working_image(image) for image in images]
        if self.config.method == EXPLAINER:
            return [self._explainer_maps(np.asarray(image), lab) for image, lab in zip(images, labels)]
        out: list[np.ndarray | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (image, lab) in enumerate(zip(images, labels)):
            h, w = np.asarray(image).shape[:2]
            if len(lab) == 0:
                out[i] = np.zeros((0, h, w), np.float32)
            else:
                groups.setdefault((h, w), []).append(i)
        cfg = self.config
        for (h, w), idx in groups.items():
            x = self._model_input(self.model, [images[i] for i in idx])
            targets = [[int(c) for c in labels[i]] for i in idx]
            with torch.inference_mode(mode=not cam_engine.METHODS[cfg.method].needs_grad):
                maps = cam_engine.compute_tta(self.model, x, targets, method=cfg.method, scales=cfg.scales,
                                              flip=cfg.flip, merge=cfg.merge)
                maps = cam_engine.normalize(cam_engine.upsample(maps.detach(), (h, w))).float().cpu().numpy()
            for row, i in enumerate(idx):
                out[i] = maps[row, : len(targets[row])]
        return out

    def _explainer_maps(self, image: np.ndarray, labels: Sequence[int]) -> np.ndarray:
        """The Explainer's sigmoid masks ``(K, H, W)`` of ``labels`` at image size (one pass)."""
        h, w = image.shape[:2]
        labels = [int(c) for c in labels]
        if not labels:
            return np.zeros((0, h, w), np.float32)
        x = self._model_input(self.explainer, [image])
        maps = explainer_maps(self.explainer, x, labels)
        return cam_engine.upsample(maps[None], (h, w))[0].clamp(0, 1).cpu().numpy()

    # -- proposals -------------------------------------------------------------------
    def _inputs(self, image, labels) -> tuple[np.ndarray, np.ndarray]:
        image = np.asarray(image)
        labels = np.asarray(sorted(int(c) for c in labels), dtype=np.int64)
        if self.background is None and labels.size == 0:
            raise ValueError("an image of a project without background needs at least one label")
        return image, labels

    def run(self, image: np.ndarray, labels: Sequence[int], *,
            progress: Callable[[str], None] | None = None) -> Proposals:
        """All proposal stages for one image and its image-level labels."""
        image, labels = self._inputs(image, labels)
        note = progress or (lambda stage: None)
        note("cam")
        work = self.working_image(image)
        return self._proposals(image, labels, self.cams(work, labels), note, work)

    def run_batch(self, images: Sequence[np.ndarray], labels: Sequence[Sequence[int]]) -> list[Proposals]:
        """:meth:`run` for several images: batched CAMs (:meth:`cams_batch`), refinement per image."""
        pairs = [self._inputs(image, lab) for image, lab in zip(images, labels)]
        works = [self.working_image(p[0]) for p in pairs]
        cams = self.cams_batch(works, [p[1] for p in pairs])
        return [self._proposals(image, lab, c, lambda stage: None, work)
                for (image, lab), c, work in zip(pairs, cams, works)]

    @property
    def crf_kwargs(self) -> dict:
        """The CRF settings in effect: the project kind's defaults updated by ``config.crf``."""
        return {**default_crf(self.background), **self.config.crf}

    @property
    def rw_input(self) -> str:
        """``config.rw_input`` with ``"auto"`` resolved for the project kind."""
        if self.config.rw_input != "auto":
            return self.config.rw_input
        return "cam" if self.background is None else "crf"

    def has_model(self, stage: str) -> bool:
        """Whether the model a proposal stage needs (``STAGES[stage].model``) is loaded."""
        model = STAGES[stage].model
        return model is None or getattr(self, model) is not None

    def proposals_from_cams(self, image: np.ndarray, labels, cams: np.ndarray) -> Proposals:
        """:meth:`run` on CAMs already computed (``cams`` of the sorted ``labels``)."""
        image, labels = self._inputs(image, labels)
        return self._proposals(image, labels, np.asarray(cams, np.float32), lambda stage: None,
                               self.working_image(image))

    def _proposals(self, image: np.ndarray, labels: np.ndarray, cams: np.ndarray,
                   note: Callable[[str], None], work: np.ndarray | None = None) -> Proposals:
        """Every stage on ``work`` (the :meth:`working_image`, default ``image``), whose size
        the CAMs have; the masks at ``image``'s size (:func:`~napari_wsss.proposal_stages.full_size_mask`)."""
        cfg = self.config
        thr = self.threshold(cams) if self.background is not None else 0.0
        scores, cls = scores_with_background(cams, labels, background=self.background,
                                             method="threshold", threshold=thr)
        work_image = image if work is None else work
        stage_work = StageWork(work_image, labels, cams, scores, cls, threshold=thr,
                               full=full_size_mask(image, work_image, dict(cfg.upsample)))
        masks = {}
        for name, stage in STAGES.items():  # registry order: each may use the previous ones
            if name != "cam" and (name not in cfg.refine or not self.has_model(name)):
                continue
            if name != "cam":
                note(name)
            masks[name] = stage.load()(self, stage_work)
        return Proposals(cams, labels, masks, self.model_version, cfg.method)

    def _random_walk(self, image: np.ndarray, scores: np.ndarray, cls: np.ndarray):
        rw = dict(self.config.rw)
        stride = int(rw.pop("stride", 4))
        radius = int(rw.pop("radius", 5))
        h, w = image.shape[:2]
        if self.affinity is not None:  # at its training scale; the walk comes back to (h, w)
            graph = self.affinity.affinity_graph(self._model_input(self.affinity, [image]))
        else:
            grid = (max(1, round(h / stride)), max(1, round(w / stride)))
            graph = build_affinity(image, shape=grid, radius=radius)
        # Scores already hold the background slice (if any): walk them as they are.
        return random_walk_refine(scores, cls, graph, background=None, output_shape=(h, w), **rw)


def save_proposals(project, image_id: str, proposals: Proposals, *, status: bool = True) -> None:
    """Write CAMs and masks of ``proposals``; mark a new image ``prelabelled``.

    Images the annotator already accepted, corrected or skipped keep their status.
    """
    v = proposals.model_version
    project.write_cams(image_id, proposals.method, proposals.cams, proposals.cam_classes, model_version=v)
    for stage, mask in proposals.masks.items():
        project.write_mask(image_id, stage, mask, model_version=v)
    if status and project.status(image_id).status in ("new", "prelabelled"):
        project.set_status(image_id, "prelabelled", model_version=v)


@dataclass
class PrelabelReport:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        lines = [f"prelabelled {len(self.done)} image(s), skipped {len(self.skipped)} already done, "
                 f"{len(self.failed)} failed, in {self.seconds:.1f} s"]
        lines += [f"  FAILED {i}: {msg}" for i, msg in self.failed.items()]
        return "\n".join(lines)


def calibrate_project(project, pipeline: Pipeline, *, write: bool = True) -> dict:
    """The project's calibration for ``pipeline``'s models: the stored one when it was chosen
    for the same models and corrections, else :func:`napari_wsss.calibrate.choose_defaults`
    (stored when ``write``)."""
    from .calibrate import DEFAULT_RULE, choose_defaults, corrected_images

    corrected = corrected_images(project)
    key = {"models": dict(pipeline.models), "rule": DEFAULT_RULE,
           "corrections": [[iid, int((lab != IGNORE).sum())] for iid, lab in corrected]}
    stored = project.read_calibration()
    if stored is not None and stored.get("key") == key:
        return stored
    base = pipeline.with_config(apply_calibration=False, refine=PipelineConfig().refine)
    base.calibration = None
    out = choose_defaults(project, pipeline=base, write=False, corrected=corrected)
    out["key"] = key
    if write:
        project.write_calibration(out)
    return out


#: Pixel budget of a prelabel batch (beyond its first image): four 2000 x 2000 images.
BATCH_PIXELS = 16_000_000


def _batches(project, ids: Sequence[str], batch_size: int):
    """``ids`` in runs of at most ``batch_size`` images and :data:`BATCH_PIXELS` pixels."""
    batch: list[str] = []
    pixels = 0
    for image_id in ids:
        try:
            n = int(np.prod(project.image_shape(image_id)))
        except Exception:  # noqa: BLE001 - a broken image is reported when it is read
            n = 0
        if batch and (len(batch) == batch_size or pixels + n > BATCH_PIXELS):
            yield batch
            batch, pixels = [], 0
        batch.append(image_id)
        pixels += n
    if batch:
        yield batch


def _is_done(project, image_id: str, pipeline: Pipeline) -> bool:
    st = project.status(image_id)
    if st.status == "new" or st.model_version != pipeline.model_version:
        return False
    wanted = {s for s in ("cam", *pipeline.config.refine) if pipeline.has_model(s)}
    return wanted <= set(project.mask_stages(image_id))


def prelabel(
    project,
    *,
    config: PipelineConfig | None = None,
    pipeline: Pipeline | None = None,
    ids: Sequence[str] | None = None,
    force: bool = False,
    batch_size: int = 4,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = True,
    device=None,
    calibrate: bool = True,
) -> PrelabelReport:
    """Compute and save proposals for the images of ``project``.

    Resumable: images whose proposals are already there for the current model are
    skipped unless ``force``. CAMs of ``batch_size`` images are computed in one batched
    pass (same-size images), refinement runs per image. A failing image is reported and
    the rest done (a batch that fails is redone image by image, so one broken image
    costs no other). Under ``torchrun`` each rank takes the images
    ``ids[rank::world_size]``, so every image is done by exactly one process. Memory
    stays flat: one batch at a time is in memory, and a batch of big images holds at most
    :data:`BATCH_PIXELS` pixels beyond its first image.
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    pipe = pipeline or Pipeline.from_project(project, config, device=device)
    if calibrate and pipe.config.cam_threshold == "auto":
        pipe.set_calibration(calibrate_project(project, pipe, write=rank == 0 and project.mode != "r"))
    all_ids = list(ids) if ids is not None else project.image_ids()
    mine = all_ids[rank::world_size]
    report = PrelabelReport()
    t0 = time.perf_counter()
    bar = tqdm(total=len(mine), desc=f"prelabel[{rank}]" if world_size > 1 else "prelabel", unit="img",
               disable=not progress, dynamic_ncols=True)
    todo = []
    for image_id in mine:
        if not force and _is_done(project, image_id, pipe):
            report.skipped.append(image_id)
            bar.update(1)
        else:
            todo.append(image_id)
    for ids_in_batch in _batches(project, todo, batch_size):
        batch = []
        for image_id in ids_in_batch:
            try:
                batch.append((image_id, project.image(image_id), project.image_labels(image_id)))
            except Exception as e:  # noqa: BLE001 - a batch goes on past a broken image
                report.failed[image_id] = f"{type(e).__name__}: {e}"
                bar.update(1)
        try:
            proposals = pipe.run_batch([b[1] for b in batch], [b[2] for b in batch])
        except Exception:  # noqa: BLE001 - redo one by one to find the broken image
            proposals = [None] * len(batch)
        for (image_id, image, labels), props in zip(batch, proposals):
            try:
                save_proposals(project, image_id, props if props is not None else pipe.run(image, labels))
                report.done.append(image_id)
            except Exception as e:  # noqa: BLE001
                report.failed[image_id] = f"{type(e).__name__}: {e}"
            bar.update(1)
    bar.close()
    report.seconds = time.perf_counter() - t0
    return report
