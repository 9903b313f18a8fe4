"""Small private helpers shared by the refinement modules (validation, resizing)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..conventions import IGNORE, IGNORE_PAINTED, MAX_CLASSES
from ..transforms import to_rgb_float


def check_scores(scores, name: str = "scores") -> np.ndarray:
    """A finite ``(K, H, W)`` float32 array (not copied when it already is one)."""
    arr = scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
    if arr.ndim != 3:
        raise ValueError(f"{name}: expected an array of shape (K, H, W), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name}: needs at least one class slice, got shape {arr.shape}")
    arr = np.asarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return arr


def check_classes(classes, n: int, name: str = "classes") -> np.ndarray:
    """Class indices as an int64 vector of length ``n`` with values in ``0..MAX_CLASSES-1``."""
    cls = np.asarray(classes, dtype=np.int64).reshape(-1)
    if cls.shape[0] != n:
        raise ValueError(f"{name}: {cls.shape[0]} class indices for {n} score slices")
    if cls.size and (cls.min() < 0 or cls.max() >= MAX_CLASSES):
        raise ValueError(f"{name}: class indices must be in 0..{MAX_CLASSES - 1} "
                         f"({IGNORE_PAINTED} and {IGNORE} are ignore values), got {cls.tolist()}")
    if len(set(cls.tolist())) != cls.size:
        raise ValueError(f"{name}: duplicate class indices {cls.tolist()}")
    return cls


def check_mask(mask, shape: tuple[int, int], name: str) -> np.ndarray:
    """An ``(H, W)`` array of the given shape."""
    arr = np.asarray(mask)
    if arr.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {arr.shape}")
    return arr


def resize_scores(scores: np.ndarray, shape: tuple[int, int], *, mode: str = "bilinear") -> np.ndarray:
    """Resize ``(K, h, w)`` scores to ``(K, *shape)``; ``mode`` is "bilinear" or "area"."""
    shape = (int(shape[0]), int(shape[1]))
    if scores.shape[1:] == shape:
        return scores
    t = torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32))[None]
    if mode == "bilinear":
        out = F.interpolate(t, size=shape, mode="bilinear", align_corners=False)
    elif mode == "area":
        out = F.interpolate(t, size=shape, mode="area")
    else:
        raise ValueError(f"unknown resize mode {mode!r}; valid: 'bilinear', 'area'")
    return out[0].numpy()


def image_to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """A stored image as C-contiguous ``(H, W, 3)`` uint8 RGB (no copy for uint8 RGB input)."""
    img = np.asarray(image)
    if img.dtype == np.uint8 and img.ndim == 3 and img.shape[-1] == 3:
        return np.ascontiguousarray(img)

    rgb = to_rgb_float(img)
    return np.ascontiguousarray(np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8))
