"""Explainer stage: per-class sigmoid masks trained against the frozen project classifier.

Stalder et al., "What You See is What You Classify: Black Box Attributions" (NeurIPS
2022). The network is the segmenter's DeepLabV3+ (:func:`napari_wsss.models.build_segmenter`)
with one output channel per project class; the losses are
:class:`napari_wsss.models.explainer.ExplainerLoss`. Only image-level labels are needed.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from napari_wsss.models import build_segmenter, load_classifier
from napari_wsss.models.explainer import ExplainerLoss
from napari_wsss.store import checkpoint_version

from .classifier import _classifier_targets, _trainable_ids
from .config import ExplainerConfig
from .data import Source, stage_datasets
from .stage import Stage, TrainingDataError, TrainingModule

__all__ = [
    "ExplainerStageLoss",
    "ExplainerMetric",
    "build_explainer_stage",
]


class ExplainerStageLoss:
    """``loss_fn(seg_logits, batch)`` of the shared loop: :class:`ExplainerLoss` against a
    frozen classifier (kept in eval mode, no gradients to its parameters)."""

    def __init__(self, objective: ExplainerLoss, classifier: nn.Module):
        self.objective = objective
        self.classifier = classifier.eval()
        for p in self.classifier.parameters():
            p.requires_grad_(False)

    def to(self, device):
        self.classifier.to(device)
        return self

    def __call__(self, seg_logits: torch.Tensor, batch: dict):
        return self.objective(seg_logits, batch["image"], batch["labels"], self.classifier)


class ExplainerMetric:
    """Validation: the mean of each loss term over the held-out images (lower is better)."""

    def __init__(self, loss: ExplainerStageLoss):
        self.loss = loss
        self.sums: dict[str, float] = {}
        self.n = 0

    def update(self, seg_logits: torch.Tensor, batch: dict) -> None:
        total, parts = self.loss(seg_logits, batch)
        b = seg_logits.shape[0]
        for k, v in {"loss": total, **parts}.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v) * b
        self.n += b

    def compute(self) -> dict:
        return {k: v / max(self.n, 1) for k, v in self.sums.items()}


def _frozen_classifier(source, cfg: ExplainerConfig, classes: list[str]) -> tuple[nn.Module, str]:
    path = cfg.classifier_checkpoint
    if path is None:
        latest = getattr(source, "latest_checkpoint", lambda stage: None)("classifier")
        if latest is None:
            raise TrainingDataError(
                f"the explainer explains a trained classifier: project {getattr(source, 'path', '')} "
                f"has none; train one first (`napari-wsss train ... --stage classifier`) or set "
                f"explainer.classifier_checkpoint"
            )
        path = str(latest)
        cfg.classifier_checkpoint = path  # recorded in the run's config (resume explains the same one)
    return load_classifier(path, "cpu", classes=classes), path


def build_explainer_stage(source: Source, cfg: ExplainerConfig, train_ids, val_ids, *, seed=0):
    """Model, training module, loss, datasets and parameter groups of the explainer stage."""
    classes = list(source.classes)
    bg = source.background
    classifier, path = _frozen_classifier(source, cfg, classes)
    fg = [c for c in range(len(classes)) if c != bg]
    objective = ExplainerLoss(
        entropy_weight=cfg.entropy_weight, tv_weight=cfg.tv_weight,
        area_constraint_weight=cfg.area_constraint_weight, target_area_weight=cfg.target_area_weight,
        nontarget_area_weight=cfg.nontarget_area_weight, min_area=cfg.min_area, max_area=cfg.max_area,
        classes=fg,
    )
    loss = ExplainerStageLoss(objective, classifier)
    net = build_segmenter(cfg.encoder, len(classes), weights=cfg.weights)
    # freeze_bn keeps every BatchNorm in eval mode (encoder: ImageNet statistics, decoder: the
    # identity it starts as): the ASPP pooling branch normalises (B, 256, 1, 1) over the batch
    # alone in train mode, and on small batches the eval-mode masks then collapsed to 0.
    module = TrainingModule(net, frozen_part=net if cfg.freeze_bn else None)
    train_ids = _trainable_ids(source, train_ids)
    val_ids = [i for i in val_ids if len(source.image_labels(i)) or bg is not None]
    train_set, val_set = stage_datasets(source, train_ids, val_ids, _classifier_targets(len(classes), bg),
                                        cfg, seed=seed)
    enc = {id(p) for p in net.encoder.parameters()}
    groups = [
        {"params": [p for p in net.encoder.parameters() if p.requires_grad], "lr_mult": 1.0},
        {"params": [p for p in net.parameters() if id(p) not in enc], "lr_mult": cfg.head_lr_mult},
    ]
    return Stage(
        name="explainer", model=net, module=module, loss_fn=loss, param_groups=groups,
        train_set=train_set, val_set=val_set, metric=lambda: ExplainerMetric(loss),
        backbone=cfg.encoder, classes=classes, background=bg,
        extra={"checkpoint": {"classifier_version": checkpoint_version(Path(path))}},
    )
