"""The segmenter (and the Explainer's network): DeepLabV3+ from segmentation_models_pytorch.

Build, load from a checkpoint, predict one image. Training lives in ``trainer.segmenter``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..device import resolve_device
from ..store import resolve_checkpoint
from ._loading import load_weights
from .scale import model_input, scale_rule

__all__ = ["TORCHVISION_ENCODERS", "build_segmenter", "load_segmenter", "predict_segmenter"]

#: Encoders whose smp module is the torchvision model minus its classifier (ImageNet weights
#: come from torchvision, offline).
TORCHVISION_ENCODERS = ("mobilenet_v2", "resnet18", "resnet34", "resnet50", "resnet101")


def build_segmenter(encoder: str, num_classes: int, *, weights: str | None = None) -> nn.Module:
    """DeepLabV3+ whose encoder gets torchvision's ImageNet weights (offline).

    ``segmentation_models_pytorch`` downloads its own encoder weights, which fails
    offline; its ``mobilenet_v2`` and ``resnet*`` encoders are torchvision models with
    the classifier removed, so torchvision's state dict fits them key for key.
    """
    import segmentation_models_pytorch as smp

    if weights is not None and encoder not in TORCHVISION_ENCODERS:
        raise ValueError(
            f"encoder {encoder!r} cannot take torchvision weights; valid encoders: "
            f"{', '.join(TORCHVISION_ENCODERS)} (or weights=None)"
        )
    model = smp.DeepLabV3Plus(encoder_name=encoder, encoder_weights=None, classes=num_classes)
    if weights is not None:
        import torchvision.models as tvm

        sd = tvm.get_model(encoder, weights=weights).state_dict()
        sd = {k: v for k, v in sd.items() if not k.startswith(("classifier.", "fc."))}
        own = model.encoder.state_dict()
        if set(sd) != set(own):
            raise ValueError(
                f"torchvision {encoder} weights do not match the smp encoder: "
                f"{sorted(set(sd) ^ set(own))[:5]}"
            )
        nn.Module.load_state_dict(model.encoder, sd, strict=True)
    return model


def load_segmenter(project_or_checkpoint, device=None, *, classes=None) -> nn.Module:
    """The trained DeepLabV3+ of a project (latest checkpoint) or from a checkpoint file.

    Returns the model in eval mode on ``device`` with ``classes`` and ``background``
    attributes. Errors as :func:`napari_wsss.models.load_classifier`.
    """
    return load_segmentation_net(project_or_checkpoint, "segmenter", device, classes=classes)[0]


def load_segmentation_net(project_or_checkpoint, stage: str, device=None, *, classes=None):
    """``(net, state)``: the DeepLabV3+ of a ``stage`` checkpoint (``segmenter`` or
    ``explainer``) in eval mode on ``device``, with ``classes``, ``scale`` (its training scale,
    applied at inference) and ``background`` attributes, and the checkpoint dict."""
    state, path = resolve_checkpoint(project_or_checkpoint, stage, classes=classes)
    net = build_segmenter(state["backbone"], len(state["classes"]), weights=None)
    load_weights(net, state["model"], path=path)
    net.classes = list(state["classes"])
    net.scale = scale_rule(state)
    net.background = state.get("background")
    return net.to(resolve_device(device)).eval(), state


@torch.inference_mode()
def predict_segmenter(model: nn.Module, image: np.ndarray, *, labels=None, background=None,
                      device=None) -> np.ndarray:
    """Segment one image.

    Parameters
    ----------
    model : nn.Module
        From :func:`load_segmenter` (or any ``(B, 3, H, W) -> (B, C, H, W)`` model). A model
        with a training scale (``model.scale``, stored in the checkpoint) segments the image
        resized to it, and the class scores come back to the image size.
    image : ndarray, shape (H, W[, C])
        As stored (any dtype :func:`napari_wsss.transforms.to_rgb_float` takes).
    labels : sequence of int, optional
        Restrict the prediction to these classes (plus ``background`` if given, default
        the model's ``background`` attribute).
    device : optional
        Default: the model's device.

    Returns
    -------
    ndarray, shape (H, W), uint8
    """
    if device is None:
        device = next(model.parameters()).device
    h, w = np.asarray(image).shape[:2]
    x = model_input(image, device, scale_rule(model))  # at the training scale (model.scale)
    sh, sw = x.shape[-2:]
    x = F.pad(x, (0, (-sw) % 32, 0, (-sh) % 32), mode="replicate")
    logits = model(x)[:, :, :sh, :sw].float()
    if (sh, sw) != (h, w):
        logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
    logits = logits[0]
    if labels is not None:
        keep = torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
        keep[torch.as_tensor(list(labels), dtype=torch.long, device=logits.device)] = True
        bg = background if background is not None else getattr(model, "background", None)
        if bg is not None:
            keep[bg] = True
        logits = logits.masked_fill(~keep[:, None, None], float("-inf"))
    return logits.argmax(0).to(torch.uint8).cpu().numpy()
