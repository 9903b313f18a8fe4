"""Background-threshold rules for projects without corrections to choose one from.

``image-*`` rules give every image its own threshold from its own normalised CAMs; the
others one threshold from all the CAMs given. :data:`DEFAULT_RULE` is the one
``cam_threshold="auto"`` uses (``bench/calibrate.py`` measured the rules on the training
images of datasets with background; see :mod:`napari_wsss.calibrate`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["THRESHOLD_RULES", "DEFAULT_RULE", "threshold_by_rule", "image_threshold", "resolve_threshold"]

#: Rules for a background threshold without corrections. ``image-*`` rules give every image
#: its own threshold from its own CAMs; the others one threshold from all the CAMs given.
THRESHOLD_RULES = ("constant-0.25", "constant-0.5", "constant-0.6", "constant-0.7", "constant-0.75",
                   "constant-0.8", "otsu", "image-otsu", "image-otsu2", "mean", "image-mean")
#: The rule used without corrections. ``bench/calibrate.py`` on training images (mIoU of the
#: thresholded CAMs, points below the best threshold the ground truth picks): shapes sample
#: 1.8 (best 0.85), CCP 120-image subset 0.3 (best 0.95); the old constant 0.25 was 30.5 / 1.2
#: below, a single-level Otsu 17.0 / 0.7. It adapts to each image (a constant 0.8 was 0.5 /
#: 0.1 below on these two, but the issue's second photo set peaked at 0.65).
DEFAULT_RULE = "image-otsu2"


def _top(cams: np.ndarray) -> np.ndarray:
    """Largest CAM per pixel (flattened); empty for an image without labels."""
    cams = np.asarray(cams, np.float32)
    return cams.max(axis=0).ravel() if cams.shape[0] else np.zeros(0, np.float32)


def _otsu(values: np.ndarray) -> float:
    from skimage.filters import threshold_otsu

    if values.size == 0 or float(values.max()) == float(values.min()):
        return 0.5
    return float(threshold_otsu(values, nbins=256))


def threshold_by_rule(rule: str, cams_list: Sequence[np.ndarray]) -> float:
    """The background threshold a rule gives for normalised CAMs ``(K, H, W)`` (one image, or
    several pooled); ``image-*`` rules are meant for one image at a time."""
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"unknown threshold rule {rule!r}; valid: {', '.join(THRESHOLD_RULES)}")
    if rule.startswith("constant-"):
        return float(rule.split("-", 1)[1])
    values = np.concatenate([_top(c) for c in cams_list]) if len(cams_list) else np.zeros(0, np.float32)
    if values.size > 2_000_000:  # a seeded sample keeps pooled rules cheap on big projects
        values = np.random.default_rng(0).choice(values, 2_000_000, replace=False)
    kind = rule.removeprefix("image-")
    if kind == "otsu":
        return _otsu(values)
    if kind == "otsu2":  # the upper split of a two-level Otsu: Otsu again above the first one
        first = _otsu(values)
        above = values[values > first]
        return _otsu(above) if above.size and above.max() > above.min() else first
    return float(values.mean()) if values.size else 0.5


def image_threshold(cams: np.ndarray, rule: str = DEFAULT_RULE) -> float:
    """The background threshold of one image's normalised CAMs under ``rule``."""
    return threshold_by_rule(rule, [cams])


def resolve_threshold(setting, cams: np.ndarray, calibration: dict | None = None) -> float:
    """The background threshold of one image: ``setting`` is a number, a rule name of
    :data:`THRESHOLD_RULES` (computed on ``cams``, normalised ``(K, H, W)``) or ``"auto"``
    (the project's ``calibration["cam_threshold"]``, else :data:`DEFAULT_RULE`)."""
    if setting == "auto":
        setting = (calibration or {}).get("cam_threshold") or DEFAULT_RULE
    return image_threshold(cams, setting) if isinstance(setting, str) else float(setting)
