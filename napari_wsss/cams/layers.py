"""Target-layer resolution and the linear classifier weights CAM needs.

Default target layers come from the backbone registry
(``napari_wsss.models.BACKBONES[name].target_layer``): the last convolutional stage of
torchvision ResNet / MobileNetV2 / MobileNetV3 / EfficientNet / ConvNeXt, of the
``efficientnet_lite_pytorch`` EfficientNet, and ``"backbone"`` for
``napari_wsss.models.Classifier`` (any model with a string ``target_layer`` attribute).
"""

from __future__ import annotations

import difflib
from typing import Callable

import torch
from torch import nn

from ..models.backbones import get_spec

__all__ = ["resolve_layer", "default_layer_name", "linear_head"]

_WRAPPERS = (nn.DataParallel, nn.parallel.DistributedDataParallel)


def _registry_families() -> list[tuple[type, str]]:
    """(model class, registry backbone name) pairs, most specific first."""
    import torchvision.models as tvm

    families = [
        (tvm.ResNet, "resnet50"),
        (tvm.MobileNetV2, "mobilenet_v2"),
        (tvm.MobileNetV3, "mobilenet_v3_large"),
        (tvm.EfficientNet, "efficientnet_b0"),
        (tvm.ConvNeXt, "convnext_tiny"),
    ]
    try:
        from efficientnet_lite_pytorch import EfficientNet as LiteEfficientNet

        families.append((LiteEfficientNet, "efficientnet_lite0"))
    except ImportError:  # pragma: no cover - declared dependency
        pass
    return families


def _is_lite(model: nn.Module) -> bool:
    try:
        from efficientnet_lite_pytorch import EfficientNet as LiteEfficientNet
    except ImportError:  # pragma: no cover
        return False
    return isinstance(model, LiteEfficientNet)


def default_layer_name(model: nn.Module) -> str:
    """The registry's target layer for ``model`` (a dotted module name).

    Raises
    ------
    ValueError
        For a model family without a default; the message names the families
        that have one.
    """
    if isinstance(model, _WRAPPERS):
        return "module." + default_layer_name(model.module)
    own = getattr(model, "target_layer", None)
    if isinstance(own, str):
        return own
    families = _registry_families()
    for cls, name in families:
        if isinstance(model, cls):
            return get_spec(name).target_layer
    known = ", ".join(sorted({c.__name__ for c, _ in families} | {"napari_wsss.models.Classifier"}))
    raise ValueError(
        f"no default target layer for {type(model).__name__}; pass layer=<dotted module name "
        f"or module>. Models with a default: {known}"
    )


def _unknown_layer(model: nn.Module, name: str, names: list[str]) -> ValueError:
    close = difflib.get_close_matches(name, names, n=5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return ValueError(
        f"unknown layer {name!r} in {type(model).__name__}.{hint} "
        f"Valid layers: {', '.join(names)}"
    )


def resolve_layer(model: nn.Module, layer: str | nn.Module | None = None) -> tuple[str, nn.Module]:
    """Find the module to explain.

    Parameters
    ----------
    model : nn.Module
    layer : str, nn.Module or None
        ``None``: the registry default for the model family. A string: a dotted
        name from ``model.named_modules()`` (e.g. ``"layer4"``, ``"features.7"``).
        A module: a submodule of ``model``.

    Returns
    -------
    name : str
        Its dotted name (``""`` for the model itself).
    module : nn.Module
    """
    if isinstance(layer, nn.Module):
        for n, m in model.named_modules():
            if m is layer:
                return n, m
        raise ValueError(f"layer {type(layer).__name__} is not a submodule of {type(model).__name__}")
    name = default_layer_name(model) if layer is None else layer
    if not isinstance(name, str):
        raise TypeError(f"layer must be None, a module name or a module, got {type(layer).__name__}")
    modules = dict(model.named_modules())
    if name not in modules or name == "":
        raise _unknown_layer(model, name, [n for n in modules if n])
    return name, modules[name]


def _last_linear(seq: nn.Module) -> nn.Linear | None:
    """The Linear of a ``Sequential`` head made of Dropout/Flatten/Identity + one Linear."""
    if isinstance(seq, nn.Linear):
        return seq
    if not isinstance(seq, nn.Sequential) or not len(seq):
        return None
    *rest, last = list(seq)
    passthrough = (nn.Dropout, nn.Flatten, nn.Identity)
    if isinstance(last, nn.Linear) and all(isinstance(m, passthrough) for m in rest):
        return last
    return None


def linear_head(
    model: nn.Module, layer_name: str
) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor] | None]:
    """The weights ``W (C, D)`` of a global-average-pool + linear head, for CAM.

    Supported: ``napari_wsss.models.Classifier`` (``head``, a bias-free 1x1
    convolution), torchvision ``fc`` (ResNet) or ``classifier`` ending in one
    Linear after Dropout only (MobileNetV2, EfficientNet), and efficientnet-lite's
    ``_fc``. The bias (if any) is not part of the map.

    Returns
    -------
    weight : Tensor, shape (C, D)
    activation : callable or None
        Applied to the target layer's output before weighting. Only for
        efficientnet-lite, whose registry layer ``_bn1`` is followed by a shared
        ReLU6 module (``_swish``) before pooling.

    Raises
    ------
    ValueError
        When the head is not GAP + one linear layer (MobileNetV3's two-layer head,
        ConvNeXt's LayerNorm head, ...).
    """
    if isinstance(model, _WRAPPERS):
        return linear_head(model.module, layer_name.removeprefix("module."))
    activation = None
    head = None
    if isinstance(getattr(model, "head", None), nn.Conv2d) and model.head.kernel_size == (1, 1):
        head = model.head
    elif _is_lite(model):
        head = model._fc
        if layer_name == "_bn1":
            activation = model._swish
    elif isinstance(getattr(model, "fc", None), nn.Linear):
        head = model.fc
    elif getattr(model, "classifier", None) is not None:
        head = _last_linear(model.classifier)
    elif isinstance(getattr(model, "head", None), nn.Linear):
        head = model.head
    if head is None:
        raise ValueError(
            f"method 'cam' needs a global-average-pool + single linear head; "
            f"{type(model).__name__}'s head is not one (supported: Classifier.head, fc, "
            "classifier=[Dropout..., Linear], efficientnet-lite _fc). Use 'gradcam', "
            "which equals CAM up to a factor for such heads and works for any head."
        )
    return head.weight.reshape(head.weight.shape[0], -1), activation
