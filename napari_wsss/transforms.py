"""Image array -> model input conversions shared by models, refinement, pipeline and trainer.

Below ``models`` / ``cams`` / ``refine`` (it imports none of them), so that all three can use it.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "to_rgb_float", "to_tensor", "normalize"]

#: Per-channel mean and std of ImageNet (RGB in ``[0, 1]``), every backbone's input normalisation.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_rgb_float(image: np.ndarray) -> np.ndarray:
    """Any stored image to float32 RGB in ``[0, 1]``.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        Grayscale, RGB or RGBA; uint8, uint16, any integer or float dtype.
        Integer images are scaled by their dtype's maximum, except uint16 and
        wider integers, which are scaled by the image's own range (16-bit
        microscopy rarely uses the full range). Alpha is dropped.

    Returns
    -------
    ndarray, shape (H, W, 3), float32
    """
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3:
        raise ValueError(f"expected an image of shape (H, W) or (H, W, C), got {img.shape}")
    if img.shape[-1] == 4:
        img = img[..., :3]
    if img.shape[-1] == 2:  # gray + alpha
        img = img[..., :1]
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    if img.shape[-1] != 3:
        raise ValueError(f"expected 1, 2, 3 or 4 channels, got {img.shape[-1]}")
    if img.dtype == np.uint8:
        out = img.astype(np.float32) / 255.0
    elif np.issubdtype(img.dtype, np.integer) or img.dtype == bool:
        lo, hi = float(img.min()), float(img.max())
        out = (img.astype(np.float32) - lo) / max(hi - lo, 1.0)
    else:
        out = img.astype(np.float32)
        lo, hi = float(np.nanmin(out)), float(np.nanmax(out))
        if lo < 0.0 or hi > 1.0:
            out = (out - lo) / max(hi - lo, 1e-12)
    return np.ascontiguousarray(out)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """ImageNet mean/std normalisation of a ``(B, 3, H, W)`` tensor in ``[0, 1]``."""
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def to_tensor(image: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """A stored image to a normalised ``(1, 3, H, W)`` float tensor on ``device``."""
    rgb = torch.from_numpy(to_rgb_float(image)).permute(2, 0, 1)[None]
    return normalize(rgb.to(device))
