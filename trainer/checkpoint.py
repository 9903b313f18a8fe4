"""Checkpoint files outside a project: written atomically (temp file + fsync + rename).

A checkpoint is ``dict(model, optimizer, scheduler, scaler, epoch, step, batch_in_epoch,
config, classes, background, backbone, stage, rng)`` (``docs/contracts.md`` plus what an
exact resume needs). Files are written through ``Project.save_checkpoint`` when training a
project, or by :class:`DirectoryCheckpoints` (temp file + ``os.replace``); they are always
read by ``napari_wsss.store.read_checkpoint`` (``torch.load(..., weights_only=True)``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

__all__ = ["DirectoryCheckpoints", "atomic_save"]


def atomic_save(state: dict, path: str | Path) -> Path:
    """``torch.save`` to a temp file in the same directory, fsync, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class DirectoryCheckpoints:
    """Checkpoints as ``<root>/<stage>/<version>.pt``, the same calls as a ``Project``.

    Used when training from a source that is not a project (tests, benchmarks).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def save_checkpoint(self, stage: str, state: dict) -> str:
        existing = sorted((self.root / stage).glob("*.pt")) if (self.root / stage).exists() else []
        version = f"{stage}-{len(existing) + 1:04d}"
        atomic_save(state, self.root / stage / f"{version}.pt")
        return version

    def latest_checkpoint(self, stage: str) -> Path | None:
        files = sorted((self.root / stage).glob("*.pt")) if (self.root / stage).exists() else []
        return files[-1] if files else None
