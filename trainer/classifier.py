"""Classifier stage: image-level labels (+ corrections) -> the project's CAM classifier."""

from __future__ import annotations

import math

import numpy as np
import torch

from napari_wsss.conventions import IGNORE
from napari_wsss.models import Classifier, apply_kernel_usage, get_spec, load_classifier

from .config import ClassifierConfig
from .data import Source, corrections, stage_datasets
from .losses import ClassifierLoss, merge_tiles, tile_images
from .stage import Stage, TrainingDataError, TrainingModule

__all__ = [
    "ClassifierModule",
    "build_classifier_stage",
    "save_classifier",
    "MeanAveragePrecision",
]


class ClassifierModule(TrainingModule):
    """Training view of a :class:`~napari_wsss.models.Classifier`.

    ``forward(x)`` returns ``{"logits", "cams"}`` from one pass, plus ``"merged_cams"``
    (the CAMs of the ``puzzle_pieces`` tiles put back together) with Puzzle-CAM. All in
    one ``forward`` so DDP sees a single call per step.
    """

    def __init__(self, net: Classifier, *, puzzle_pieces: int = 0, freeze_bn: bool = False):
        super().__init__(net, frozen_part=net.backbone if freeze_bn else None)
        self.puzzle_pieces = puzzle_pieces

    def forward(self, x: torch.Tensor) -> dict:
        logits, cams = self.net.forward_with_cams(x)
        out = {"logits": logits, "cams": cams}
        if self.puzzle_pieces and self.training:
            _, tile_cams = self.net.forward_with_cams(tile_images(x, self.puzzle_pieces))
            out["merged_cams"] = merge_tiles(tile_cams, self.puzzle_pieces, x.shape[0])
        return out


def _classifier_targets(num_classes: int, background: int | None):
    def targets(source: Source, image_id: str) -> dict:
        corr, _ = corrections(source, image_id)
        present = np.unique(corr[corr != IGNORE])
        if present.size and present.max() >= num_classes:
            raise ValueError(
                f"corrections of image {image_id!r} hold class {int(present.max())}, "
                f"but the project has {num_classes} classes"
            )
        y = np.zeros(num_classes, dtype=np.float32)
        y[np.asarray(source.image_labels(image_id), dtype=np.int64)] = 1.0
        y[present.astype(np.int64)] = 1.0  # a painted pixel proves the class is there
        if background is not None:
            y[background] = 0.0
        return {"mask": corr, "labels": y, "has_pixels": bool(present.size)}

    return targets


def _trainable_ids(source: Source, ids: list[str]) -> list[str]:
    """Images that carry supervision; error when the project has no labels at all."""
    fg = [i for i in range(len(source.classes)) if i != source.background]
    labelled, keep = 0, []
    for i in ids:
        n = len(source.image_labels(i))
        if n == 0:
            painted = set(np.unique(corrections(source, i)[0]).tolist())
            n = len(painted - {IGNORE, source.background})
        labelled += n > 0
        if n > 0 or source.background is not None:
            keep.append(i)
    if not labelled:
        where = getattr(source, "path", "the source")
        raise TrainingDataError(
            f"project {where} has no image-level labels (classes {[source.classes[c] for c in fg]}): "
            f"label images before training the classifier"
        )
    return keep


def _ordinary_classifier(source, cfg: ClassifierConfig, classes, resume: bool) -> Classifier:
    """The frozen classifier OC-CSE erases against (explicit file, else the latest one)."""
    path = cfg.occse_checkpoint
    if path is None:
        if resume:
            raise ValueError("resuming an OC-CSE run needs classifier.occse_checkpoint: the latest "
                             "classifier checkpoint is now this run's own")
        latest = getattr(source, "latest_checkpoint", lambda stage: None)("classifier")
        if latest is None:
            raise TrainingDataError(
                f"OC-CSE needs a trained ordinary classifier: project {getattr(source, 'path', '')} "
                f"has none; train one first or set classifier.occse_checkpoint"
            )
        path = str(latest)
        cfg.occse_checkpoint = path  # recorded in the run's config
    return load_classifier(path, "cpu", classes=classes)


def build_classifier_stage(source: Source, cfg: ClassifierConfig, train_ids, val_ids, *, seed=0,
                           resume=False):
    """Model, training module, loss, datasets and parameter groups of the classifier stage."""
    classes = list(source.classes)
    bg = source.background
    spec = get_spec(cfg.backbone)
    if cfg.puzzle_pieces:
        n = math.isqrt(cfg.puzzle_pieces)
        if n * n != cfg.puzzle_pieces or n < 2:
            raise ValueError(f"puzzle_pieces must be 0 or a square >= 4, got {cfg.puzzle_pieces}")
        if cfg.crop_size % (n * spec.stride):
            raise ValueError(
                f"crop_size {cfg.crop_size} must be a multiple of {n * spec.stride} "
                f"(tiles per side {n} x backbone stride {spec.stride}) for Puzzle-CAM"
            )
    net = Classifier(cfg.backbone, len(classes), weights=cfg.weights)
    if cfg.kur:
        apply_kernel_usage(net.head, alpha=cfg.kur_alpha, background=bg)
    module = ClassifierModule(net, puzzle_pieces=cfg.puzzle_pieces, freeze_bn=cfg.freeze_bn)
    loss = ClassifierLoss(
        len(classes), background=bg, pixel_weight=cfg.pixel_weight,
        puzzle_alpha=cfg.puzzle_alpha if cfg.puzzle_pieces else 0.0, puzzle_warmup=cfg.puzzle_warmup,
        oc=_ordinary_classifier(source, cfg, classes, resume) if cfg.occse else None,
        oc_alpha=cfg.occse_alpha, oc_warmup=cfg.occse_warmup,
    )
    train_ids = _trainable_ids(source, train_ids)
    val_ids = [i for i in val_ids if len(source.image_labels(i)) or bg is not None]
    targets = _classifier_targets(len(classes), bg)
    train_set, val_set = stage_datasets(source, train_ids, val_ids, targets, cfg, seed=seed)
    groups = [
        {"params": [p for p in net.backbone.parameters() if p.requires_grad], "lr_mult": 1.0},
        {"params": list(net.head.parameters()), "lr_mult": cfg.head_lr_mult},
    ]
    fg = [c for c in range(len(classes)) if c != bg]
    return Stage(
        name="classifier", model=net, module=module, loss_fn=loss, param_groups=groups,
        train_set=train_set, val_set=val_set, metric=lambda: MeanAveragePrecision(fg),
        backbone=cfg.backbone, classes=classes, background=bg, extra={"kur": cfg.kur},
    )


class MeanAveragePrecision:
    """Mean over classes (with a positive image) of the average precision of the logits."""

    def __init__(self, classes: list[int]):
        self.classes = classes
        self.scores: list[np.ndarray] = []
        self.targets: list[np.ndarray] = []

    def update(self, outputs: dict, batch: dict) -> None:
        self.scores.append(outputs["logits"].detach().cpu().numpy())
        self.targets.append(batch["labels"].detach().cpu().numpy())

    def compute(self) -> dict:
        from sklearn.metrics import average_precision_score

        s = np.concatenate(self.scores)[:, self.classes]
        t = np.concatenate(self.targets)[:, self.classes] > 0.5
        aps = [average_precision_score(t[:, k], s[:, k]) for k in range(t.shape[1]) if t[:, k].any()]
        return {"mAP": float(np.mean(aps)) if aps else float("nan"), "images": int(t.shape[0])}


def save_classifier(project, net: Classifier) -> str:
    """Store a classifier not trained here (an ImageNet head, a model trained elsewhere) as the
    project's latest classifier checkpoint; returns its version id."""
    return project.save_checkpoint("classifier", dict(
        model=net.state_dict(), epoch=0, step=0, config={}, classes=list(project.classes),
        background=project.background, backbone=net.backbone_name, stage="classifier",
    ))
