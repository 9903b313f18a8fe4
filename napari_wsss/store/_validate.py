"""Input checks of the project store; every error names the offending value and valid choices."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from ..conventions import IGNORE, IGNORE_PAINTED, MAX_CLASSES, PROPOSAL_STAGES, TRAINING_STAGES

__all__ = [
    "MASK_STAGES",
    "CHECKPOINT_STAGES",
    "STATUSES",
    "split_corrections",
    "check_classes",
    "check_labels",
    "check_image",
    "check_mask",
    "check_cams",
    "check_choice",
    "check_method",
]

#: Pseudo-mask stages a project stores (``write_mask``).
MASK_STAGES = PROPOSAL_STAGES
#: Model stages with checkpoints (``save_checkpoint``).
CHECKPOINT_STAGES = TRAINING_STAGES
#: Annotation statuses of an image.
STATUSES = ("new", "prelabelled", "accepted", "corrected", "skipped")

_METHOD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+-]{0,63}$")


def check_choice(value: str, choices: Sequence[str], what: str) -> str:
    """Return ``value`` if it is one of ``choices``, else raise naming them."""
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(choices)}")
    return value


def check_method(method: str) -> str:
    """A CAM method name: letters, digits, ``_ + -`` (it becomes part of a zarr node name)."""
    if not isinstance(method, str) or not _METHOD.match(method):
        raise ValueError(
            f"invalid CAM method name {method!r}: use 1-64 characters from "
            "letters, digits, '_', '+', '-' (e.g. 'gradcam', 'gradcam++', 'layercam')"
        )
    return method


def check_classes(classes: Sequence[str], background: bool) -> list[str]:
    """Validate a class list; with ``background`` make sure ``'background'`` is class 0."""
    if isinstance(classes, str) or not all(isinstance(c, str) for c in classes):
        raise TypeError(f"classes must be a sequence of strings, got {classes!r}")
    classes = [c.strip() for c in classes]
    if background and (not classes or classes[0] != "background"):
        classes = ["background", *classes]
    if not background and "background" in classes:
        raise ValueError(
            "'background' is reserved for the background class: create the project with "
            f"background=True (it becomes class 0) instead of listing it; got {classes}"
        )
    if background and "background" in classes[1:]:
        raise ValueError(f"'background' listed twice in {classes}")
    if any(not c for c in classes):
        raise ValueError(f"class names must not be empty: {classes}")
    dupes = sorted({c for c in classes if classes.count(c) > 1})
    if dupes:
        raise ValueError(f"duplicated class names {dupes} in {classes}")
    n_fg = len(classes) - (1 if background else 0)
    if n_fg < 1:
        raise ValueError("a project needs at least one foreground class")
    if len(classes) > MAX_CLASSES:
        raise ValueError(
            f"at most {MAX_CLASSES} classes (mask values {IGNORE_PAINTED} and {IGNORE} are reserved "
            f"for ignored pixels), got {len(classes)}"
        )
    return classes


def check_labels(labels, classes: Sequence[str], background: int | None) -> list[int]:
    """Image-level labels (indices or class names) -> sorted unique foreground indices."""
    if isinstance(labels, (str, int, np.integer)):
        labels = [labels]
    out = set()
    for lab in labels:
        if isinstance(lab, str):
            if lab not in classes:
                raise ValueError(f"unknown class name {lab!r}; valid: {', '.join(classes)}")
            idx = classes.index(lab)
        elif isinstance(lab, (int, np.integer)) and not isinstance(lab, bool):
            idx = int(lab)
            if not 0 <= idx < len(classes):
                raise ValueError(
                    f"class index {idx} out of range 0..{len(classes) - 1} ({', '.join(classes)})"
                )
        else:
            raise TypeError(f"image labels must be class indices or names, got {lab!r}")
        if idx == background:
            raise ValueError(
                "the background class is implied in a background project and is never an "
                "image label"
            )
        out.add(idx)
    return sorted(out)


def check_image(image) -> np.ndarray:
    """An image ``(H, W)`` or ``(H, W, C)`` with ``C`` in 1..4, numeric dtype."""
    img = np.asarray(image)
    if img.dtype == bool:
        img = img.astype(np.uint8)
    if img.ndim not in (2, 3) or (img.ndim == 3 and not 1 <= img.shape[2] <= 4):
        raise ValueError(f"image must have shape (H, W) or (H, W, C) with C in 1..4, got {img.shape}")
    if min(img.shape[:2]) < 1:
        raise ValueError(f"image is empty: shape {img.shape}")
    if not (np.issubdtype(img.dtype, np.integer) or np.issubdtype(img.dtype, np.floating)):
        raise TypeError(f"image dtype must be integer or float, got {img.dtype}")
    return np.ascontiguousarray(img)


def check_mask(mask, shape: tuple[int, int], n_classes: int, what: str, *,
               painted_ignore: bool = False) -> np.ndarray:
    """A ``(H, W)`` mask of class indices ``< n_classes`` or 255 (with ``painted_ignore``
    also `IGNORE_PAINTED`, for corrections) -> uint8."""
    m = np.asarray(mask)
    if m.shape != tuple(shape):
        raise ValueError(f"{what} must have the image's shape {tuple(shape)}, got {m.shape}")
    if not (np.issubdtype(m.dtype, np.integer) or m.dtype == bool):
        raise TypeError(f"{what} must hold integer class indices, got dtype {m.dtype}")
    values = np.unique(m)
    special = (values == IGNORE) | ((values == IGNORE_PAINTED) & painted_ignore)
    bad = values[((values < 0) | (values >= n_classes)) & ~special]
    if bad.size:
        also = f", {IGNORE_PAINTED} (painted ignore)" if painted_ignore else ""
        raise ValueError(
            f"{what} holds values {bad[:10].tolist()} that are neither class indices "
            f"0..{n_classes - 1} nor {IGNORE} (ignore){also}"
        )
    return np.ascontiguousarray(m, dtype=np.uint8)


def split_corrections(corrections) -> tuple[np.ndarray, np.ndarray]:
    """Corrections as a training / export mask, and where the annotator painted.

    Parameters
    ----------
    corrections : array, shape (H, W), uint8
        Stored corrections: class indices, `IGNORE_PAINTED` (painted "ignore") or
        `IGNORE` (not painted).

    Returns
    -------
    labels : ndarray, shape (H, W), uint8
        Class indices, 255 wherever there is no class (not painted or painted "ignore").
    painted : ndarray, shape (H, W), bool
        True where the annotator painted (a class or "ignore"): these pixels override
        any proposal, painted "ignore" with 255.
    """
    corr = np.asarray(corrections)
    painted = corr != IGNORE
    labels = np.where(corr == IGNORE_PAINTED, IGNORE, corr).astype(np.uint8)
    return labels, painted


def check_cams(cams, classes, n_classes: int) -> tuple[np.ndarray, list[int]]:
    """CAMs ``(K, h, w)`` float and their ``K`` distinct class indices."""
    c = np.asarray(cams)
    if c.ndim != 3:
        raise ValueError(f"cams must have shape (K, h, w), got {c.shape}")
    if not (np.issubdtype(c.dtype, np.floating) or np.issubdtype(c.dtype, np.integer)):
        raise TypeError(f"cams must be numeric, got dtype {c.dtype}")
    idx = [int(k) for k in np.asarray(classes, dtype=np.int64).reshape(-1)]
    if len(idx) != c.shape[0]:
        raise ValueError(f"{c.shape[0]} CAM slices but {len(idx)} class indices {idx}")
    if len(set(idx)) != len(idx):
        raise ValueError(f"CAM class indices must be distinct, got {idx}")
    bad = [k for k in idx if not 0 <= k < n_classes]
    if bad:
        raise ValueError(f"CAM class indices {bad} out of range 0..{n_classes - 1}")
    return np.ascontiguousarray(c, dtype=np.float32), idx
