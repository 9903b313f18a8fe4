"""Segmenter stage: DeepLabV3+ (segmentation_models_pytorch) on pseudo-masks + corrections."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from napari_wsss.conventions import IGNORE
from napari_wsss.metrics import confusion_matrix, segmentation_scores
from napari_wsss.models.segmenter import build_segmenter

from .config import SegmenterConfig
from .data import Source, corrections, stage_datasets
from .distributed import batch_share
from .stage import Stage, TrainingDataError, TrainingModule

__all__ = [
    "SegmenterModule",
    "SegmentationLoss",
    "build_segmenter_stage",
    "MeanIoU",
]

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
