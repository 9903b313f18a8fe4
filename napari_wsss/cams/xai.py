"""Model scores on CAM-masked inputs, for the XAI metrics in ``napari_wsss.metrics``."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .api import model_device
from .base import parse_targets
from .postprocess import upsample

__all__ = ["masked_confidences"]

_ACTIVATIONS = ("sigmoid", "softmax")


@torch.no_grad()
def masked_confidences(
    model: nn.Module,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets,
    *,
    activation: str = "sigmoid",
    batch_size: int = 16,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Confidences on the images, on ``x * M_k`` and on ``x * (1 - M_k)``.

    Parameters
    ----------
    model : nn.Module
        Classifier returning logits ``(B, C)`` (put it in eval mode).
    images : Tensor, shape (B, 3, H, W)
    maps : Tensor, shape (B, K, h, w)
        Maps in ``[0, 1]`` (see :func:`napari_wsss.cams.normalize`), slot ``k``
        for the ``k``-th target of each image; upsampled (bilinear) to ``(H, W)``.
    targets : list of lists of int or (B, C) multi-hot
        As given to :func:`napari_wsss.cams.compute`.
    activation : {"sigmoid", "softmax"}
        Logits to confidences (sigmoid for multi-label classifiers).
    batch_size : int
        Masked images per forward pass.

    Returns
    -------
    p : ndarray, shape (B, C)
        Confidences on the unmasked images.
    o : ndarray, shape (B, K, C)
        Confidences on ``x * M_k`` (NaN in unused slots).
    o_inv : ndarray, shape (B, K, C)
        Confidences on ``x * (1 - M_k)`` (NaN in unused slots).
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(_ACTIVATIONS)}")
    device = model_device(model)
    images = images.to(device)
    b, _, h, w = images.shape
    index, valid = parse_targets(targets, b)
    if maps.ndim != 4 or maps.shape[0] != b or maps.shape[1] < index.shape[1]:
        raise ValueError(f"maps must be (B={b}, K>={index.shape[1]}, h, w), got {tuple(maps.shape)}")
    if maps.numel() and (float(maps.min()) < 0 or float(maps.max()) > 1):
        raise ValueError("maps must be in [0, 1]; normalise them first (napari_wsss.cams.normalize)")
    masks = upsample(maps.detach().to(device, images.dtype), (h, w))

    def confidences(x: torch.Tensor) -> torch.Tensor:
        out = torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
        return torch.sigmoid(out) if activation == "sigmoid" else torch.softmax(out, dim=1)

    p = confidences(images)
    c = p.shape[1]
    o = torch.full((b, index.shape[1], c), float("nan"), dtype=torch.float64)
    o_inv = o.clone()
    for i in range(b):
        k = int(valid[i].sum())
        if not k:
            continue
        m = masks[i, :k, None]  # (k, 1, H, W)
        o[i, :k] = confidences(images[i] * m).double().cpu()
        o_inv[i, :k] = confidences(images[i] * (1 - m)).double().cpu()
    return p.double().cpu().numpy(), o.numpy(), o_inv.numpy()
