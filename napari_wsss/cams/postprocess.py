"""Map post-processing shared by the pipeline: upsampling and per-map min-max."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["upsample", "normalize"]


def upsample(
    maps: torch.Tensor, size: tuple[int, int], *, mode: str = "bilinear", align_corners: bool = False
) -> torch.Tensor:
    """Resize maps to ``size``.

    Parameters
    ----------
    maps : Tensor, shape (B, K, h, w) or (K, h, w)
    size : (H, W)
    mode : str
        ``torch.nn.functional.interpolate`` mode; bilinear with
        ``align_corners=False`` matches OpenCV's ``cv2.resize`` (pytorch-grad-cam).

    Returns
    -------
    Tensor, shape (B, K, H, W) or (K, H, W)
    """
    if maps.ndim not in (3, 4):
        raise ValueError(f"maps must be (B, K, h, w) or (K, h, w), got shape {tuple(maps.shape)}")
    size = (int(size[0]), int(size[1]))
    if tuple(maps.shape[-2:]) == size:
        return maps
    x = maps[None] if maps.ndim == 3 else maps
    kwargs = {"align_corners": align_corners} if mode in ("linear", "bilinear", "bicubic", "trilinear") else {}
    if x.shape[1] == 0:
        out = x.new_zeros((*x.shape[:2], *size))
    else:
        out = F.interpolate(x, size=size, mode=mode, **kwargs)
    return out[0] if maps.ndim == 3 else out


def normalize(maps: torch.Tensor, *, relu: bool = True) -> torch.Tensor:
    """Per-map min-max to ``[0, 1]``, zero-safe.

    Parameters
    ----------
    maps : Tensor, shape (..., h, w)
    relu : bool
        Clamp negative values to 0 first (the ReLU of CAM methods).

    Returns
    -------
    Tensor, same shape
        ``(m - min m) / (max m - min m)`` per map; a constant map (including an
        all-zero padded slot) becomes all zeros.
    """
    if maps.ndim < 2:
        raise ValueError(f"maps must have at least 2 dimensions (h, w), got shape {tuple(maps.shape)}")
    x = maps.clamp_min(0) if relu else maps
    if x.numel() == 0:
        return x
    lo = x.amin((-2, -1), keepdim=True)
    rng = x.amax((-2, -1), keepdim=True) - lo
    safe = torch.where(rng > 0, rng, torch.ones_like(rng))
    return torch.where(rng > 0, (x - lo) / safe, torch.zeros_like(x))
