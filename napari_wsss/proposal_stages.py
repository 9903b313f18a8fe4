"""The proposal stages the pipeline runs, one function each, registered in
``napari_wsss.conventions.STAGES``.

Each is ``fn(pipeline, work) -> (H, W) uint8 mask`` (project class indices, 255 = void):
``pipeline`` is the :class:`~napari_wsss.pipeline.Pipeline` (its config and models),
``work`` the :class:`StageWork` of the image, which a stage may add to for later stages.
Stages compute on ``work.image``, which is the image or, for an image longer than
``PipelineConfig.refine_max_side``, its working-resolution version; they return
``work.mask(...)`` of their scores, which brings them to the full image size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .models import predict_segmenter
from .pipeline_config import EXPLAINER
from .refine.background import labels_from_scores, scores_with_background
from .refine.crf import crf_refine
from .refine.upsample import Guide, upsample_labels

__all__ = ["StageWork", "full_size_mask", "cam", "crf", "random_walk", "segmenter", "explainer"]


@dataclass
class StageWork:
    """One image on its way through the stages.

    Attributes
    ----------
    image : ndarray, shape (H, W[, C])
    labels : ndarray, shape (K,), int64
        The image's labels, sorted.
    cams : ndarray, shape (K, H, W), float32
        Normalised class maps of ``labels`` (the Explainer's masks with ``method="explainer"``).
    scores, classes : ndarray
        :func:`~napari_wsss.refine.background.scores_with_background` of the CAMs: the
        background slice (threshold ``cam_threshold``) first where the project has one.
    extra : dict
        What stages leave for later ones (``"crf_scores"``: the CRF's probabilities).
    threshold : float
        The image's background threshold (``Pipeline.threshold``: ``cam_threshold`` resolved).
    full : callable, optional
        :func:`full_size_mask` of a working-resolution image; ``None``: ``image`` is full size.
    """

    image: np.ndarray
    labels: np.ndarray
    cams: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    extra: dict = field(default_factory=dict)
    threshold: float = 0.0
    full: Callable | None = None

    def mask(self, scores, classes, *, mask=None, edges: bool = False) -> np.ndarray:
        """A stage's ``(H, W)`` mask at the full image size from its scores on ``image``
        (``mask``: the stage's own mask at ``image`` size, used as is when that is full size;
        ``scores=None``: the indicator maps of ``mask``); ``edges``: upsampled along the
        image's edges, else bilinearly."""
        if self.full is None:
            return mask if mask is not None else labels_from_scores(scores, classes)
        return self.full(scores, classes, mask=mask, edges=edges)


def full_size_mask(image: np.ndarray, work: np.ndarray, upsample: dict) -> Callable | None:
    """``full(scores, classes, *, mask=None, edges=False)`` bringing masks computed on the
    working image ``work`` to ``image``'s size (``None`` when ``work`` is full size):
    :func:`~napari_wsss.refine.upsample.upsample_labels` tile by tile, guided by the full
    image when ``edges`` (one :class:`~napari_wsss.refine.upsample.Guide` per image, with
    ``upsample``'s ``radius`` / ``eps``), bilinear otherwise."""
    if work.shape[:2] == image.shape[:2]:
        return None
    guide: list[Guide] = []  # made once, at the first edge-aware stage

    def full(scores, classes, *, mask=None, edges=False):
        if scores is None:
            classes = np.unique(mask)
            scores = (mask[None] == classes[:, None, None]).astype(np.float32)
        if not edges:
            return upsample_labels(scores, classes, shape=image.shape[:2])
        if not guide:
            guide.append(Guide(image, work.shape[:2], low=work, **upsample))
        return upsample_labels(scores, classes, guide[0])

    return full


def cam(pipe, work: StageWork) -> np.ndarray:
    """The CAM prior: the arg-max of the scores (background below ``cam_threshold``)."""
    return work.mask(work.scores, work.classes)


def crf(pipe, work: StageWork) -> np.ndarray:
    """Dense CRF on the CAMs with the project kind's kernels (``Pipeline.crf_kwargs``)."""
    res = crf_refine(work.image, work.cams, work.labels, background=pipe.background, bg_method="threshold",
                     threshold=work.threshold, **pipe.crf_kwargs)
    work.extra["crf_scores"] = res.scores
    return work.mask(res.scores, res.classes, mask=res.mask, edges=True)


def random_walk(pipe, work: StageWork) -> np.ndarray:
    """Random walk of the CAM scores, or of the CRF's probabilities (``Pipeline.rw_input``),
    on AffinityNet affinities when trained, else colour affinities."""
    walk_from = work.extra.get("crf_scores") if pipe.rw_input == "crf" else None
    res = pipe._random_walk(work.image, work.scores if walk_from is None else walk_from, work.classes)
    return work.mask(res.scores, res.classes, mask=res.mask, edges=True)


def segmenter(pipe, work: StageWork) -> np.ndarray:
    """The trained segmenter's prediction, restricted to the image's labels (+ background)."""
    seg = predict_segmenter(pipe.segmenter, work.image, labels=work.labels.tolist(), background=pipe.background)
    return work.mask(None, None, mask=seg)


def explainer(pipe, work: StageWork) -> np.ndarray:
    """The trained Explainer's masks (background where none exceeds ``explainer_threshold``)."""
    maps = work.cams if pipe.config.method == EXPLAINER else pipe._explainer_maps(work.image, work.labels)
    return work.mask(*scores_with_background(
        maps, work.labels, background=pipe.background, method="threshold",
        threshold=pipe.config.explainer_threshold))
