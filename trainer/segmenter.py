"""Segmenter stage: DeepLabV3+ (segmentation_models_pytorch) on pseudo-masks + corrections."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from napari_wsss.conventions import IGNORE
from napari_wsss.metrics import confusion_matrix, segmentation_scores
from napari_wsss.models.transforms import to_tensor

from .config import SegmenterConfig
from .data import Source, corrections, stage_datasets
from .distributed import batch_share
from .stage import (
    Stage,
    TrainingDataError,
    TrainingModule,
    load_weights,
    pick_device,
    resolve_checkpoint,
)

__all__ = [
    "build_segmenter",
    "SegmenterModule",
    "SegmentationLoss",
    "build_segmenter_stage",
    "load_segmenter",
    "predict_segmenter",
    "MeanIoU",
]

_TORCHVISION_ENCODERS = ("mobilenet_v2", "resnet18", "resnet34", "resnet50", "resnet101")


def build_segmenter(encoder: str, num_classes: int, *, weights: str | None = None) -> nn.Module:
    """DeepLabV3+ whose encoder gets torchvision's ImageNet weights (offline).

    ``segmentation_models_pytorch`` downloads its own encoder weights, which fails
    offline; its ``mobilenet_v2`` and ``resnet*`` encoders are torchvision models with
    the classifier removed, so torchvision's state dict fits them key for key.
    """
    import segmentation_models_pytorch as smp

    if weights is not None and encoder not in _TORCHVISION_ENCODERS:
        raise ValueError(
            f"encoder {encoder!r} cannot take torchvision weights; valid encoders: "
            f"{', '.join(_TORCHVISION_ENCODERS)} (or weights=None)"
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


class SegmenterModule(TrainingModule):
    """``forward(x) -> logits (B, C, H, W)``; optionally freezes the encoder's BatchNorm."""

    def __init__(self, net: nn.Module, *, freeze_bn: bool = False):
        super().__init__(net, frozen_part=net.encoder if freeze_bn else None)


class SegmentationLoss:
    """Cross-entropy over labelled pixels (``ignore_index=255``); 0 for an empty batch.

    Under DDP the mean is over the labelled pixels of the global batch (exactly one
    process's loss when every process has labelled pixels).
    """

    def __call__(self, logits: torch.Tensor, batch: dict):
        mask = batch["mask"]
        ce = F.cross_entropy(logits.float(), mask, ignore_index=IGNORE, reduction="sum")
        count = (mask != IGNORE).sum().clamp(min=1)
        loss = ce / count
        share = batch_share(count[None])[0].to(loss.dtype)
        return loss * share, {"ce": loss.detach()}


def _segmenter_targets(stages: tuple[str, ...], num_classes: int):
    def targets(source: Source, image_id: str) -> dict:
        mask = None
        for st in stages:
            mask = source.read_mask(image_id, st)
            if mask is not None:
                break
        corr, painted = corrections(source, image_id)
        out = np.full(corr.shape, IGNORE, np.uint8) if mask is None else np.array(mask, np.uint8)
        if out.shape != corr.shape:
            raise ValueError(
                f"image {image_id!r}: pseudo-mask shape {out.shape} != corrections shape {corr.shape}"
            )
        out[painted] = corr[painted]  # painted "ignore" too: 255 over the pseudo-mask
        bad = (out != IGNORE) & (out >= num_classes)
        if bad.any():
            raise ValueError(f"image {image_id!r}: mask holds class {int(out[bad].max())} >= {num_classes}")
        return {"mask": out}

    return targets


def _usable(source: Source, ids, stages) -> list[str]:
    keep = []
    for i in ids:
        if any(source.read_mask(i, st) is not None for st in stages):
            keep.append(i)
        elif np.any(corrections(source, i)[0] != IGNORE):
            keep.append(i)
    return keep


def build_segmenter_stage(source: Source, cfg: SegmenterConfig, train_ids, val_ids, *, seed=0):
    """Model, training module, loss, datasets and parameter groups of the segmenter stage."""
    classes = list(source.classes)
    stages = tuple(cfg.pseudo_stages)
    train_ids = _usable(source, train_ids, stages)
    if not train_ids:
        raise TrainingDataError(
            f"project {getattr(source, 'path', 'the source')} has no pseudo-masks of stages "
            f"{list(stages)} and no corrections: run `napari-wsss prelabel` first"
        )
    val_ids = _usable(source, val_ids, stages)
    net = build_segmenter(cfg.encoder, len(classes), weights=cfg.weights)
    module = SegmenterModule(net, freeze_bn=cfg.freeze_bn)
    targets = _segmenter_targets(stages, len(classes))
    train_set, val_set = stage_datasets(source, train_ids, val_ids, targets, cfg, seed=seed)
    enc = {id(p) for p in net.encoder.parameters()}
    groups = [
        {"params": [p for p in net.encoder.parameters() if p.requires_grad], "lr_mult": 1.0},
        {"params": [p for p in net.parameters() if id(p) not in enc], "lr_mult": cfg.head_lr_mult},
    ]
    return Stage(
        name="segmenter", model=net, module=module, loss_fn=SegmentationLoss(),
        param_groups=groups, train_set=train_set, val_set=val_set,
        metric=lambda: MeanIoU(len(classes)), backbone=cfg.encoder, classes=classes,
        background=source.background,
    )


class MeanIoU:
    """mIoU / pixel accuracy of argmax predictions against ``batch["mask"]``."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.conf = np.zeros((num_classes, num_classes + 1), np.int64)

    def update(self, logits: torch.Tensor, batch: dict) -> None:
        pred = logits.argmax(1).cpu().numpy()
        self.conf += confusion_matrix(pred, batch["mask"].cpu().numpy(), self.num_classes)

    def compute(self) -> dict:
        s = segmentation_scores(self.conf)
        return {"mIoU": s.miou, "pixel_accuracy": s.pixel_accuracy}


def load_segmenter(project_or_checkpoint, device=None, *, classes=None) -> nn.Module:
    """The trained DeepLabV3+ of a project (latest checkpoint) or from a checkpoint file.

    Returns the model in eval mode on ``device`` with a ``classes`` attribute. Errors as
    :func:`trainer.load_classifier`.
    """
    state, path = resolve_checkpoint(project_or_checkpoint, "segmenter", classes=classes)
    net = build_segmenter(state["backbone"], len(state["classes"]), weights=None)
    load_weights(net, state["model"], path=path)
    net.classes = list(state["classes"])
    net.background = state.get("background")
    return net.to(pick_device(device)).eval()


@torch.inference_mode()
def predict_segmenter(model: nn.Module, image: np.ndarray, *, labels=None, background=None,
                      device=None) -> np.ndarray:
    """Segment one image.

    Parameters
    ----------
    model : nn.Module
        From :func:`load_segmenter` (or any ``(B, 3, H, W) -> (B, C, H, W)`` model).
    image : ndarray, shape (H, W[, C])
        As stored (any dtype :func:`napari_wsss.models.to_rgb_float` takes).
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
    x = to_tensor(image, device)
    h, w = x.shape[-2:]
    ph, pw = (-h) % 32, (-w) % 32
    x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    logits = model(x)[0, :, :h, :w].float()
    if labels is not None:
        keep = torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
        keep[torch.as_tensor(list(labels), dtype=torch.long, device=logits.device)] = True
        bg = background if background is not None else getattr(model, "background", None)
        if bg is not None:
            keep[bg] = True
        logits = logits.masked_fill(~keep[:, None, None], float("-inf"))
    return logits.argmax(0).to(torch.uint8).cpu().numpy()
