"""``compute``: the one entry point that runs any method on a batch."""

from __future__ import annotations

import torch
from torch import nn

from .base import BaseCAM, parse_targets
from .cam import CAM
from .gradcam import GradCAM, GradCAMPlusPlus, LayerCAM
from .minmax import DMinMaxGradCAM, MinMaxCAM
from .saliency import FullGrad, Gradients, SmoothGrad
from .scorecam import ScoreCAM

__all__ = ["METHODS", "compute", "get_method", "model_device"]

METHODS: dict[str, type[BaseCAM]] = {
    cls.name: cls
    for cls in (
        CAM,
        GradCAM,
        GradCAMPlusPlus,
        ScoreCAM,
        LayerCAM,
        MinMaxCAM,
        DMinMaxGradCAM,
        Gradients,
        SmoothGrad,
        FullGrad,
    )
}


def get_method(name: str) -> type[BaseCAM]:
    """The method class for ``name``; an unknown name lists the valid ones."""
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown CAM method {name!r}; valid methods: {', '.join(METHODS)}") from None


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a parameterless model)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def _as_images(images) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a float tensor (B, 3, H, W), got {type(images).__name__}")
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"images must be a float tensor (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    if images.is_inference():
        with torch.inference_mode(False):
            images = images.clone()
    return images


def compute(
    model: nn.Module,
    images: torch.Tensor,
    targets,
    *,
    method: str,
    layer: str | nn.Module | None = None,
    differentiable: bool = False,
    **options,
) -> torch.Tensor:
    """Raw explaining maps for every requested class of every image.

    Parameters
    ----------
    model : nn.Module
        A classifier returning logits ``(B, C)``. Its train/eval mode is left as
        is: call ``model.eval()`` for inference.
    images : Tensor, shape (B, 3, H, W)
        Normalised input batch; moved to the model's device.
    targets : list of lists of int, or array/tensor (B, C) multi-hot
        The classes to explain for each image (images may have different counts).
    method : str
        One of :data:`METHODS`: ``cam``, ``gradcam``, ``gradcam++``, ``scorecam``,
        ``layercam``, ``minmax-cam``, ``d-minmax-gradcam``, ``gradients``,
        ``smoothgrad``, ``fullgrad``.
    layer : str, nn.Module or None
        Target layer for layer methods (dotted name or module); ``None`` picks the
        registry default for the model family. Input-space methods
        (``gradients``, ``smoothgrad``, ``fullgrad``) take none.
    differentiable : bool
        Keep the autograd graph so a loss on the maps trains the model (model
        guidance); otherwise the maps are detached and the layers below the
        target layer run without a graph.
    **options
        Method options (see each method's class); an unknown one is an error.

    Returns
    -------
    Tensor, shape (B, K, h, w)
        ``K`` = most targets of any image, slot ``k`` = the ``k``-th target of the
        image (unused slots are zero). ``(h, w)`` is the target layer's resolution
        (the input's for input-space methods). On the model's device, before any
        ReLU, upsampling or normalisation (see :func:`upsample`, :func:`normalize`).
    """
    cls = get_method(method)
    runner = cls(**options)
    device = model_device(model)
    with torch.inference_mode(False):  # gradients are needed even inside a caller's inference_mode
        images = _as_images(images).to(device)
        index, valid = parse_targets(targets, images.shape[0], device)
        maps = runner(model, images, index, valid, layer=layer, differentiable=differentiable)
    return maps if differentiable else maps.detach()
