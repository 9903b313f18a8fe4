"""Background handling: CAMs of an image's labels -> per-class scores for refinement.

Two kinds of project (``Project.background``):

* **with a background class** (VOC-like, background index ``0``): the background score is
  computed from the CAMs, either as AffinityNet/PSA's power of the complement of the
  strongest CAM, ``bg = (1 - max_c M_c)^alpha`` (Ahn & Kwak, CVPR 2018, Eq. 1 and the
  released code ``psa/infer_cls.py``, ``psa/infer_aff.py``: ``alpha = 16`` for the random
  walk, ``alpha_l = 4`` / ``alpha_h = 32`` for the affinity labels), or as a constant
  threshold (``bg = threshold``: a pixel is background unless some CAM exceeds it).
* **without one** (MSRC-v2): the scores are the CAMs themselves; every pixel goes to one of
  the image's labels. Nothing is ever marked void except where the caller asks (``void``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..conventions import IGNORE
from ._utils import check_classes, check_mask, check_scores

__all__ = ["BACKGROUND_METHODS", "RefineResult", "scores_with_background", "labels_from_scores"]

BACKGROUND_METHODS = ("power", "threshold")

#: Tolerance for CAMs that overshoot 1 by rounding after normalisation / resizing.
_OVERSHOOT = 1e-3


class RefineResult(NamedTuple):
    """Output of a refinement stage.

    Attributes
    ----------
    scores : ndarray, shape (K', H, W), float32
        Refined per-class scores (probabilities for the CRF).
    classes : ndarray, shape (K',), int64
        Project class index of each score slice (background first when present).
    mask : ndarray, shape (H, W), uint8
        Hard mask in project class indices, 255 where void was asked for.
    """

    scores: np.ndarray
    classes: np.ndarray
    mask: np.ndarray


def scores_with_background(
    cams,
    classes,
    *,
    background: int | None = None,
    method: str = "power",
    alpha: float = 16.0,
    threshold: float = 0.2,
) -> tuple[np.ndarray, np.ndarray]:
    """Turn normalised CAMs into the score stack a refinement stage works on.

    Parameters
    ----------
    cams : array, shape (K, H, W)
        CAMs of the image's labels, normalised to ``[0, 1]`` (each divided by its maximum).
        ``K`` may be 0 only in a background project (the image is then all background).
    classes : sequence of int, length K
        Project class index of each CAM slice.
    background : int or None
        The project's background class index (``Project.background``), or ``None`` for a
        project without background.
    method : {"power", "threshold"}
        How the background score is made (background projects only):
        ``"power"``: ``(1 - max_c cam_c)^alpha`` (AffinityNet/PSA);
        ``"threshold"``: the constant ``threshold`` everywhere.
    alpha : float
        Exponent of the ``"power"`` method. PSA uses 16 for its random walk and
        4 / 32 for the low / high confidence maps of its affinity labels.
    threshold : float
        Background score of the ``"threshold"`` method.

    Returns
    -------
    scores : ndarray, shape (K', H, W), float32
        ``K' = K + 1`` with the background slice first, or ``K' = K`` without background.
    classes : ndarray, shape (K',), int64
        Class index of each slice, ``[background, *classes]`` or ``classes``.
    """
    arr = np.asarray(cams.detach().cpu() if hasattr(cams, "detach") else cams)
    if arr.ndim != 3:
        raise ValueError(f"cams: expected an array of shape (K, H, W), got shape {arr.shape}")
    cls = check_classes(classes, arr.shape[0])
    if background is None:
        if arr.shape[0] == 0:
            raise ValueError(
                "cams: an image of a project without background needs at least one label, got none"
            )
        return _check_range(check_scores(arr, "cams")), cls
    if background in cls.tolist():
        raise ValueError(
            f"classes {cls.tolist()} contain the background index {background}: "
            "image labels list foreground classes only"
        )
    if method not in BACKGROUND_METHODS:
        raise ValueError(f"unknown background method {method!r}; valid: {', '.join(BACKGROUND_METHODS)}")
    h, w = arr.shape[1:]
    fg = _check_range(check_scores(arr, "cams")) if arr.shape[0] else np.zeros((0, h, w), np.float32)
    if method == "power":
        if alpha <= 0:
            raise ValueError(f"alpha must be positive, got {alpha}")
        strongest = fg.max(axis=0) if fg.shape[0] else np.zeros((h, w), np.float32)
        bg = np.power(1.0 - strongest, alpha, dtype=np.float32)
    else:
        bg = np.full((h, w), threshold, dtype=np.float32)
    scores = np.concatenate([bg[None], fg], axis=0)
    return scores, np.concatenate([[background], cls]).astype(np.int64)


def labels_from_scores(
    scores,
    classes,
    *,
    void=None,
    min_score: float | None = None,
) -> np.ndarray:
    """Hard mask from per-class scores: the class of the arg-max slice at each pixel.

    Parameters
    ----------
    scores : array, shape (K, H, W)
    classes : sequence of int, length K
        Project class index of each slice.
    void : array of bool, shape (H, W), optional
        Pixels to mark void (255) whatever their scores.
    min_score : float, optional
        Pixels whose best score is below this are marked void (255).

    Returns
    -------
    ndarray, shape (H, W), uint8
        Project class indices, 255 = void. Ties go to the first slice (background first).
    """
    sc = check_scores(scores)
    cls = check_classes(classes, sc.shape[0])
    best = sc.argmax(axis=0)
    mask = cls.astype(np.uint8)[best]
    if min_score is not None:
        mask[np.take_along_axis(sc, best[None], 0)[0] < min_score] = IGNORE
    if void is not None:
        mask[check_mask(void, mask.shape, "void").astype(bool)] = IGNORE
    return mask


def _check_range(cams: np.ndarray) -> np.ndarray:
    lo, hi = float(cams.min()), float(cams.max())
    if lo < 0.0 or hi > 1.0 + _OVERSHOOT:
        raise ValueError(
            f"cams: expected values normalised to [0, 1], got range [{lo:.4g}, {hi:.4g}]; "
            "apply ReLU and divide each CAM by its maximum first"
        )
    return np.minimum(cams, 1.0) if hi > 1.0 else cams
