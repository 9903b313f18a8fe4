"""The proposal stages the pipeline runs, one function each, registered in
``napari_wsss.conventions.STAGES``.

Each is ``fn(pipeline, work) -> (H, W) uint8 mask`` (project class indices, 255 = void):
``pipeline`` is the :class:`~napari_wsss.pipeline.Pipeline` (its config and models),
``work`` the :class:`StageWork` of the image, which a stage may add to for later stages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .models import predict_segmenter
from .pipeline_config import EXPLAINER
from .refine.background import labels_from_scores, scores_with_background
from .refine.crf import crf_refine

__all__ = ["StageWork", "cam", "crf", "random_walk", "segmenter", "explainer"]


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
    """

    image: np.ndarray
    labels: np.ndarray
    cams: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    extra: dict = field(default_factory=dict)


def cam(pipe, work: StageWork) -> np.ndarray:
    """The CAM prior: the arg-max of the scores (background below ``cam_threshold``)."""
    return labels_from_scores(work.scores, work.classes)


def crf(pipe, work: StageWork) -> np.ndarray:
    """Dense CRF on the CAMs with the project kind's kernels (``Pipeline.crf_kwargs``)."""
    res = crf_refine(work.image, work.cams, work.labels, background=pipe.background, bg_method="threshold",
                     threshold=pipe.config.cam_threshold, **pipe.crf_kwargs)
    work.extra["crf_scores"] = res.scores
    return res.mask


def random_walk(pipe, work: StageWork) -> np.ndarray:
    """Random walk of the CAM scores, or of the CRF's probabilities (``Pipeline.rw_input``),
    on AffinityNet affinities when trained, else colour affinities."""
    walk_from = work.extra.get("crf_scores") if pipe.rw_input == "crf" else None
    return pipe._random_walk(work.image, work.scores if walk_from is None else walk_from, work.classes)


def segmenter(pipe, work: StageWork) -> np.ndarray:
    """The trained segmenter's prediction, restricted to the image's labels (+ background)."""
    return predict_segmenter(pipe.segmenter, work.image, labels=work.labels.tolist(), background=pipe.background)


def explainer(pipe, work: StageWork) -> np.ndarray:
    """The trained Explainer's masks (background where none exceeds ``explainer_threshold``)."""
    maps = work.cams if pipe.config.method == EXPLAINER else pipe._explainer_maps(work.image, work.labels)
    return labels_from_scores(*scores_with_background(
        maps, work.labels, background=pipe.background, method="threshold",
        threshold=pipe.config.explainer_threshold))
