"""The annotation session: project state and actions, with no Qt and no napari.

The widgets are thin views over an `AnnotationSession`; everything that decides what is
shown, saved or computed lives here so that it can be tested without a viewer (the
model/view split of napari-animation).

Masks handed to and from the session are napari *layer values* (``0`` = not painted,
``c + 1`` = class ``c``, `IGNORE_LAYER` = painted "ignore"); the store holds class
indices with ``254`` for painted "ignore" and ``255`` for unlabeled. The conversion
happens in ``napari_wsss.conventions``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from napari_wsss.conventions import IGNORE_LAYER, class_to_layer, layer_to_class

__all__ = [
    "AnnotationSession",
    "ImageView",
    "MASK_STAGES",
    "UNREVIEWED",
    "merge_accept",
    "config_from_settings",
    "default_config",
]

MASK_STAGES = ("cam", "explainer", "crf", "rw", "segmenter")
"""Proposal stages shown as read-only Labels layers, in stacking order."""

UNREVIEWED = ("new", "prelabelled")
"""Statuses that "next unreviewed" stops at."""

REVIEWED = ("accepted", "corrected")
"""Statuses whose corrections are the annotator's answer (export: "from review")."""


@dataclass
class ImageView:
    """Everything the layers show for one image.

    Attributes
    ----------
    image_id : str
    image : ndarray, shape (H, W[, C])
    labels : ndarray, shape (L,), int64
        Foreground class indices of the image.
    cams : ndarray, shape (K, H', W'), float32, or None
        Stored CAMs of the session's CAM method (or the first method stored).
    cam_classes : ndarray, shape (K,), or None
    cam_pixel : (float, float)
        Size of one ``cams`` pixel in image pixels (rows, columns): the stored CAMs
        span the image, display CAMs are block means of them.
    masks : dict of str to ndarray, shape (H, W), uint8
        Proposal stage -> layer values (``c + 1``; ``0`` = ignore).
    corrections : ndarray, shape (H, W), uint8
        Layer values of the annotator's corrections.
    status : str
    """

    image_id: str
    image: np.ndarray
    labels: np.ndarray
    cams: np.ndarray | None
    cam_classes: np.ndarray | None
    cam_pixel: tuple[float, float] = (1.0, 1.0)
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    corrections: np.ndarray | None = None
    status: str = "new"


def merge_accept(corrections: np.ndarray, proposal: np.ndarray, *, only_unpainted: bool) -> np.ndarray:
    """Layer values after accepting a proposal.

    Parameters
    ----------
    corrections : ndarray, shape (H, W), uint8
        Current corrections layer values (``0`` = not painted).
    proposal : ndarray, shape (H, W), uint8
        Proposal layer values.
    only_unpainted : bool
        Keep every pixel the annotator painted (a class or "ignore") and take the
        proposal elsewhere; when False the proposal replaces everything.

    Returns
    -------
    ndarray, shape (H, W), uint8
    """
    if corrections.shape != proposal.shape:
        raise ValueError(
            f"merge_accept: corrections {corrections.shape} and proposal {proposal.shape} differ"
        )
    if not only_unpainted:
        return proposal.astype(np.uint8, copy=True)
    return np.where(corrections == 0, proposal, corrections).astype(np.uint8)


def default_config():
    """The pipeline's default ``PipelineConfig``."""
    from napari_wsss.pipeline import PipelineConfig

    return PipelineConfig()


def config_from_settings(config, settings: dict):
    """A ``PipelineConfig`` from the panel's plain settings.

    Parameters
    ----------
    config : PipelineConfig or None
        The current config (its other fields are kept); None starts from the defaults.
    settings : dict
        ``method``; ``refine`` (tuple of stages); ``tta`` (bool: the default multi-scale
        + flip test-time augmentation, else one pass at scale 1); ``cam_threshold`` (a
        number or ``"auto"``: the project's calibration);
        ``crf_iter`` (mean-field iterations); ``rw_beta`` and ``rw_t`` (random-walk
        affinity exponent and number of steps).
    """
    from napari_wsss.pipeline import PipelineConfig

    default = PipelineConfig()
    base = (config if config is not None else default).to_dict()
    crf = {**base["crf"], "n_iter": int(settings["crf_iter"])}
    rw = {**base["rw"], "beta": float(settings["rw_beta"]), "t": int(settings["rw_t"])}
    tta = dict(scales=default.scales, flip=default.flip) if settings.get("tta", True) else \
        dict(scales=(1.0,), flip=False)
    return PipelineConfig.from_dict({
        # the panel's stage boxes start from the calibration (`project_info.show_calibration`)
        # and then decide: a stage ticked by the annotator runs
        **base, "method": settings["method"], "refine": list(settings["refine"]), "apply_calibration": False,
        "cam_threshold": t if isinstance(t := settings["cam_threshold"], str) else float(t), "crf": crf, "rw": rw, **tta,
    })


def _display_cams(cams: np.ndarray, side: int | None) -> tuple[np.ndarray, tuple[int, int]]:
    """``(K, h, w)`` CAMs as float32 block means so that ``max(h', w') <= side``.

    Returns the display CAMs and the block size ``(fy, fx)``: display pixel ``(i, j)`` is
    the mean of stored pixels ``[i fy, (i + 1) fy) x [j fx, (j + 1) fx)``. Rows / columns
    left over at the bottom / right (fewer than one block) are dropped, so the display
    grid never reaches past the image. Block means are strided sums: a few milliseconds
    where an anti-aliased resize of three 512 px CAMs takes tens.
    """
    cams = np.asarray(cams, dtype=np.float32)
    h, w = cams.shape[1:]
    if side is None or max(h, w) <= side:
        return cams, (1, 1)
    fy, fx = -(-h // side), -(-w // side)
    hh, ww = (h // fy) * fy, (w // fx) * fx
    out = np.zeros((cams.shape[0], hh // fy, ww // fx), np.float32)
    for dy in range(fy):
        for dx in range(fx):
            out += cams[:, dy:hh:fy, dx:ww:fx]
    out *= np.float32(1.0 / (fy * fx))
    return out, (fy, fx)


class AnnotationSession:
    """State of one annotation session over a `napari_wsss.store.Project`.

    Parameters
    ----------
    project : napari_wsss.store.Project
    config : napari_wsss.pipeline.PipelineConfig or None
        Proposal settings; ``None`` uses the pipeline's defaults.
    pipeline_factory : callable or None
        ``factory(project, config) -> pipeline`` with ``pipeline.run(image, labels)``
        returning ``Proposals``; defaults to ``Pipeline.from_project``. Called off
        the GUI thread (it loads a model).
    in_process : bool or None
        Compute proposals in a child process (`napari_wsss.proposal_service`), so that
        the GIL-holding CRF cannot stall the GUI; the factory must then be picklable.
        Default: yes without a factory (on POSIX), no with one (a test's local factory).
    """

    def __init__(self, project, *, config=None, pipeline_factory: Callable | None = None,
                 in_process: bool | None = None):
        self.project = project
        self.config = config
        self._factory = pipeline_factory
        self._pipeline = None
        if in_process is None:
            from napari_wsss.proposal_service import AVAILABLE

            in_process = pipeline_factory is None and AVAILABLE
        self.in_process = in_process
        self._service = None
        self._lock = threading.Lock()
        self.image_ids: list[str] = list(project.image_ids())
        self._status: dict[str, str] = {}
        self._edited: dict[str, str] = {}
        for i in self.image_ids:
            st = project.status(i)
            self._status[i] = st.status
            info = project.array_info(i, "corrections")
            times = [t for t in (st.time if st.status in (*REVIEWED, "skipped") else None,
                                 info.time if info is not None else None) if t]
            if times:
                self._edited[i] = max(times)
        self._labels: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ classes
    @property
    def classes(self) -> list[str]:
        return list(self.project.classes)

    @property
    def background(self) -> int | None:
        return self.project.background

    # ------------------------------------------------------------------ listing
    def status(self, image_id: str) -> str:
        """Cached status of an image (kept in step with every write the session makes)."""
        return self._status[image_id]

    def image_labels(self, image_id: str) -> np.ndarray:
        if image_id not in self._labels:
            self._labels[image_id] = np.asarray(self.project.image_labels(image_id))
        return self._labels[image_id]

    def filtered_ids(self, *, status: str | None = None, class_index: int | None = None) -> list[str]:
        """Image ids in project order, optionally only one status / one image label."""
        if status is not None and status not in self.project.STATUSES:
            raise ValueError(f"unknown status {status!r}; valid: {', '.join(self.project.STATUSES)}")
        out = []
        for i in self.image_ids:
            if status is not None and self._status[i] != status:
                continue
            if class_index is not None and class_index not in self.image_labels(i):
                continue
            out.append(i)
        return out

    def counts(self) -> dict[str, int]:
        """Number of images per status."""
        out = dict.fromkeys(self.project.STATUSES, 0)
        for s in self._status.values():
            out[s] += 1
        return out

    def step(self, image_id: str | None, offset: int, ids: list[str]) -> str | None:
        """The id ``offset`` places after ``image_id`` in ``ids``, clamped at the ends.

        When ``image_id`` is not in ``ids`` (the filter hides it), "after" and
        "before" follow project order; None when there is nothing in that direction.
        """
        if not ids:
            return None
        if image_id in ids:
            pos = ids.index(image_id) + offset
            return ids[min(max(pos, 0), len(ids) - 1)]
        order = {k: n for n, k in enumerate(self.image_ids)}
        here = order.get(image_id, -1)
        later = [k for k in ids if order[k] > here]
        earlier = [k for k in ids if order[k] < here]
        if offset > 0:
            return later[min(offset - 1, len(later) - 1)] if later else None
        if offset < 0:
            return earlier[max(len(earlier) + offset, 0)] if earlier else None
        return None

    def resume_id(self, ids: list[str] | None = None) -> str | None:
        """Where to start: the image edited last (its corrections or review status
        written last, by the stored UTC times), else the first unreviewed one, else the first."""
        ids = self.image_ids if ids is None else ids
        if not ids:
            return None
        edited = [i for i in ids if i in self._edited]
        if edited:
            return max(edited, key=lambda i: self._edited[i])
        return next((i for i in ids if self._status[i] in UNREVIEWED), ids[0])

    def next_unreviewed(self, image_id: str | None, ids: list[str] | None = None) -> str | None:
        """The next image (wrapping around) whose status is ``new`` or ``prelabelled``."""
        ids = self.image_ids if ids is None else ids
        if not ids:
            return None
        start = ids.index(image_id) + 1 if image_id in ids else 0
        for k in range(len(ids)):
            cand = ids[(start + k) % len(ids)]
            if cand != image_id and self._status[cand] in UNREVIEWED:
                return cand
        return None

    # ------------------------------------------------------------------ loading
    def _cam_method(self, methods: list[str]) -> str | None:
        if not methods:
            return None
        wanted = getattr(self.config, "method", None)
        return wanted if wanted in methods else methods[0]

    def load(self, image_id: str, *, cam_side: int | None = 256) -> ImageView:
        """Read one image and everything stored for it (one consistent store read).

        Thread-safe (the widget reads ahead in a background thread); it does not touch
        the status cache, which only the session's own writes update.

        Parameters
        ----------
        image_id : str
        cam_side : int or None
            CAMs larger than this (long side) are shown as block means (`_display_cams`):
            they are smooth, so a coarser texture looks the same once napari
            interpolates it, and it is much cheaper to upload. None keeps the stored size.
        """
        if image_id not in self._status:
            raise KeyError(f"image {image_id!r} is not in project {self.project.path}")
        rec = self.project.load(image_id)
        cams = cam_classes = None
        method = self._cam_method(list(rec.cam_methods))
        if method is not None:
            got = self.project.read_cams(image_id, method)
            if got is not None:
                cams, cam_classes = got
        masks = {
            stage: class_to_layer(np.asarray(rec.masks[stage], dtype=np.uint8))
            for stage in MASK_STAGES if stage in rec.masks
        }
        self._labels[image_id] = np.asarray(rec.labels)
        image = np.asarray(rec.image)
        pixel = (1.0, 1.0)
        if cams is not None:
            h, w = np.shape(cams)[1:]
            cams, (fy, fx) = _display_cams(cams, cam_side)
            pixel = (image.shape[0] / h * fy, image.shape[1] / w * fx)
        return ImageView(
            image_id=image_id,
            image=image,
            labels=self._labels[image_id],
            cams=cams,
            cam_classes=None if cam_classes is None else np.asarray(cam_classes),
            cam_pixel=pixel,
            masks=masks,
            corrections=class_to_layer(np.asarray(rec.corrections, dtype=np.uint8)),
            status=rec.status.status,
        )

    # ------------------------------------------------------------------ writing
    def _set_status(self, image_id: str, status: str, model_version: str | None = None) -> None:
        self.project.set_status(image_id, status, model_version=model_version)
        self._status[image_id] = status
        self._touch(image_id)

    def _touch(self, image_id: str) -> None:
        from napari_wsss.store._files import utc_now

        self._edited[image_id] = utc_now()

    def mark_corrected(self, image_id: str) -> None:
        """Painting sets the status to ``corrected`` (a no-op when it already is)."""
        if self._status[image_id] != "corrected":
            self._set_status(image_id, "corrected")

    def save_corrections(self, image_id: str, layer_data: np.ndarray) -> None:
        """Write corrections given as layer values (thread-safe; one write at a time).

        Raises ValueError (nothing written) when a value is neither a class, the eraser's
        ``0`` nor "ignore"."""
        layer_data = np.asarray(layer_data)
        n = len(self.project.classes)
        present = (np.flatnonzero(np.bincount(layer_data.ravel(), minlength=256))
                   if layer_data.dtype == np.uint8 else np.unique(layer_data))
        bad = np.setdiff1d(present, [*range(n + 1), IGNORE_LAYER])
        if bad.size:
            raise ValueError(
                f"corrections of {image_id!r} hold label(s) {', '.join(map(str, bad[:5].tolist()))} "
                f"that are no class of this project (1..{n}, {IGNORE_LAYER} = ignore): "
                "erase those strokes or paint over them with a class"
            )
        mask = layer_to_class(layer_data)
        with self._lock:
            self.project.write_corrections(image_id, mask)
        self._touch(image_id)

    def accept(self, image_id: str, layer_data: np.ndarray, stage: str, *, only_unpainted: bool,
               proposal: np.ndarray | None = None):
        """Corrections after accepting proposal ``stage``; sets the status ``accepted``.

        ``proposal`` (layer values) is the proposal when it is not stored (the strokes'
        propagated proposal, computed in the panel); otherwise the stored ``stage`` mask.
        Returns the new layer values; the caller puts them in the layer (so that the
        change is one undoable stroke) and saves them.
        """
        if proposal is None:
            prop = self.project.read_mask(image_id, stage)
            if prop is None:
                have = ", ".join(self.project.mask_stages(image_id)) or "none"
                raise ValueError(f"image {image_id!r} has no {stage!r} proposal (stages: {have})")
            proposal = class_to_layer(np.asarray(prop, np.uint8))
        new = merge_accept(np.asarray(layer_data), np.asarray(proposal), only_unpainted=only_unpainted)
        self.mark_accepted(image_id)
        return new

    def mark_accepted(self, image_id: str) -> None:
        """Status ``accepted`` (the corrections hold a whole mask the annotator approved)."""
        self._set_status(image_id, "accepted")

    def reset(self, image_id: str) -> None:
        """Status back to ``prelabelled`` (proposals stored) or ``new``."""
        has = bool(self.project.mask_stages(image_id))
        self._set_status(image_id, "prelabelled" if has else "new")

    def skip(self, image_id: str) -> bool:
        """Skip: an unreviewed image (``new`` / ``prelabelled``) becomes ``skipped`` (left
        out of exports and training); a reviewed one (``accepted`` / ``corrected``) keeps
        its status and its mask. Returns whether the status changed."""
        if self._status[image_id] in REVIEWED:
            return False
        self._set_status(image_id, "skipped")
        return True

    def refresh_status(self, image_id: str) -> str:
        """Re-read one status from the store (after a worker wrote it)."""
        self._status[image_id] = self.project.status(image_id).status
        return self._status[image_id]

    # ------------------------------------------------------------------ proposals
    def set_config(self, config) -> None:
        """New proposal settings (the loaded models are kept)."""
        self.config = config

    def invalidate_pipeline(self) -> None:
        """Forget the models (after retraining) so the next `compute` loads the newest."""
        with self._lock:
            self._pipeline = None
        if self._service is not None:
            self._service.reload()

    def close(self) -> None:
        """Stop the proposal process, if one runs."""
        if self._service is not None:
            self._service.close()
            self._service = None

    def pipeline(self):
        """The proposal pipeline with the current config (models loaded on first use; slow)."""
        with self._lock:
            if self._pipeline is None:
                if self._factory is not None:
                    self._pipeline = self._factory(self.project, self.config)
                else:
                    from napari_wsss.pipeline import Pipeline

                    self._pipeline = Pipeline.from_project(self.project, self.config)
            if self.config is not None:
                self._pipeline.config = self.config
            return self._pipeline

    def compute(self, image_id: str, *, progress=None):
        """Run the pipeline on one image (call from a worker); returns ``Proposals``.

        ``progress(stage)`` is called before each stage (``Pipeline.run``'s hook); it
        may raise to stop the run.
        """
        pipe = self.pipeline()
        image = np.asarray(self.project.image(image_id))
        return pipe.run(image, self.image_labels(image_id), progress=progress)

    def compute_proposals(self, image_id: str, *, on_stage: Callable[[str], None] | None = None,
                          should_stop: Callable[[], bool] = lambda: False):
        """Proposals of one image (call from a worker thread); None when ``should_stop()``
        turned true before the last stage. In the child process when `in_process`."""
        if self.in_process:
            from napari_wsss.proposal_service import ProposalService

            if self._service is None:
                self._service = ProposalService(self.project.path, self._factory)
            return self._service.compute(image_id, self.config, on_stage=on_stage,
                                         should_stop=should_stop)

        class _Stop(Exception):
            pass

        def progress(stage: str) -> None:
            if should_stop():
                raise _Stop
            if on_stage is not None:
                on_stage(stage)

        try:
            return self.compute(image_id, progress=progress)
        except _Stop:
            return None

    def store_proposals(self, image_id: str, proposals) -> None:
        """Save proposals (cams + masks); a new image becomes ``prelabelled``, a reviewed
        one keeps its status (``save_proposals``)."""
        from napari_wsss.pipeline import save_proposals

        with self._lock:
            save_proposals(self.project, image_id, proposals)
        self.refresh_status(image_id)
