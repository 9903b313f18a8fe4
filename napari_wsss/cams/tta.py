"""Test-time augmentation: multi-scale and horizontal-flip CAMs merged at one size.

As in P-NOC / Puzzle-CAM inference: the image is resized to each scale, explained
together with its mirror image, each map is un-flipped, resized to a common size and
the views are merged (sum, mean or max).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .api import compute, model_device
from .base import parse_targets
from .postprocess import upsample

__all__ = ["compute_tta", "MERGES"]

MERGES = ("sum", "mean", "max")


def compute_tta(
    model: nn.Module,
    images: torch.Tensor,
    targets,
    *,
    method: str,
    scales: Sequence[float] = (1.0, 0.5, 1.5, 2.0),
    flip: bool = True,
    merge: str = "sum",
    size: tuple[int, int] | None = None,
    relu: bool = True,
    layer: str | nn.Module | None = None,
    differentiable: bool = False,
    **options,
) -> torch.Tensor:
    """Maps from several scales and flips, merged at a common size.

    Parameters
    ----------
    model, images, targets, method, layer, differentiable, **options
        As for :func:`napari_wsss.cams.compute`.
    scales : sequence of float
        Input scale factors; each view is the image resized (bilinear) to
        ``round(H * s) x round(W * s)``.
    flip : bool
        Also explain the horizontally flipped image (same forward batch) and
        un-flip its maps.
    merge : {"sum", "mean", "max"}
        How the views are combined after resizing.
    size : (h, w) or None
        Output size; ``None`` is the input size ``(H, W)``.
    relu : bool
        Clamp each view's map at 0 before merging (P-NOC sums ReLU'd CAMs).

    Returns
    -------
    Tensor, shape (B, K, h, w)
        Unused target slots are zero.
    """
    if merge not in MERGES:
        raise ValueError(f"unknown merge {merge!r}; valid: {', '.join(MERGES)}")
    if not len(scales) or any(float(s) <= 0 for s in scales):
        raise ValueError(f"scales must be a non-empty sequence of positive factors, got {tuple(scales)}")
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError("images must be a float tensor (B, 3, H, W)")
    images = images.to(model_device(model))
    b, _, h, w = images.shape
    out_size = (h, w) if size is None else (int(size[0]), int(size[1]))
    index, valid = parse_targets(targets, b)
    lists = [index[i][valid[i]].tolist() for i in range(b)]
    views = []
    for s in scales:
        hs, ws = max(1, round(h * float(s))), max(1, round(w * float(s)))
        x = images if (hs, ws) == (h, w) else F.interpolate(images, size=(hs, ws), mode="bilinear", align_corners=False)
        t = lists
        if flip:
            x = torch.cat([x, x.flip(-1)])
            t = lists + lists
        maps = compute(model, x, t, method=method, layer=layer, differentiable=differentiable, **options)
        if relu:
            maps = maps.clamp_min(0)
        parts = [maps[:b], maps[b:].flip(-1)] if flip else [maps]
        views.extend(upsample(p, out_size) for p in parts)
    stacked = torch.stack(views)
    if merge == "sum":
        return stacked.sum(0)
    if merge == "mean":
        return stacked.mean(0)
    return stacked.amax(0)
