"""Seeded synthetic data: coloured blobs on noise, one colour per class."""

from __future__ import annotations

import numpy as np
import pytest

from trainer import MemorySource
from trainer.config import TrainConfig

COLOURS = np.array([[230, 30, 30], [30, 200, 30], [40, 60, 230]], dtype=np.uint8)


def synthetic_source(n=8, size=64, *, background=False, corrections=0, masks=False, seed=0):
    """``n`` images of ``size`` px; image i holds blobs of 1-2 classes.

    Pixel truth: class c where its blob is, else background (index 0 in a background
    project) or the first label (no background). ``corrections`` images get a few
    painted pixels; ``masks`` stores the full truth as the "rw" pseudo-mask.
    """
    rng = np.random.default_rng(seed)
    fg_names = ["red", "green", "blue"]
    classes = (["background"] if background else []) + fg_names
    off = 1 if background else 0
    src = MemorySource(classes=classes, background=0 if background else None)
    for i in range(n):
        img = rng.integers(60, 120, size=(size, size, 3)).astype(np.uint8)
        k = 1 + (i % 2)
        chosen = sorted(rng.choice(3, size=k, replace=False).tolist())
        truth = np.full((size, size), 0 if background else off + chosen[0], np.uint8)
        yy, xx = np.mgrid[:size, :size]
        for j, c in enumerate(chosen):
            cy, cx = rng.integers(size // 4, 3 * size // 4, size=2)
            r = size // 5
            blob = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            img[blob] = COLOURS[c]
            truth[blob] = off + c
        iid = f"img{i:02d}"
        src.images[iid] = img
        src.labels[iid] = [off + c for c in chosen]
        if i < corrections:
            corr = np.full((size, size), 255, np.uint8)
            pts = rng.integers(0, size, size=(40, 2))
            corr[pts[:, 0], pts[:, 1]] = truth[pts[:, 0], pts[:, 1]]
            src.corrections[iid] = corr
        if masks:
            src.masks[(iid, "rw")] = truth
    return src


def tiny_config(*, augment=False, **stage) -> TrainConfig:
    """Small, fast settings: ImageNet MobileNetV2 (offline), 64 px crops, CPU.

    Keyword ``section__key=value`` sets a stage option (``classifier__epochs=3``).
    Without ``augment`` the crops are the whole (64 px) images, so every epoch sees the
    same batch and the loss falls steadily.
    """
    cfg = TrainConfig(device="cpu", seed=0, log_every=1)
    for name in ("classifier", "segmenter"):
        s = cfg.stage(name)
        s.epochs, s.batch_size, s.crop_size = 2, 4, 64
        s.scheduler = "constant"
        if not augment:
            s.scale_range, s.hflip, s.color_jitter = (1.0, 1.0), False, 0.0
    cfg.classifier.lr, cfg.classifier.head_lr_mult = 0.001, 10.0
    cfg.segmenter.lr = 0.01
    for k, v in stage.items():
        section, _, key = k.partition("__")
        if not key:
            setattr(cfg, section, v)
        else:
            setattr(cfg.stage(section), key, v)
    return cfg


@pytest.fixture
def source():
    return synthetic_source()


def to_project(src: MemorySource, path):
    """Write a synthetic source into a real project store."""
    from napari_wsss.store import Project

    fg = [c for i, c in enumerate(src.classes) if i != src.background]
    project = Project.create(path, fg, background=src.background is not None)
    assert project.classes == src.classes
    for iid in src.image_ids():
        project.add_image(iid, src.images[iid], list(src.labels[iid]))
        if iid in src.corrections:
            project.write_corrections(iid, src.corrections[iid])
    for (iid, stage), mask in src.masks.items():
        project.write_mask(iid, stage, mask, model_version="synthetic")
    return project
