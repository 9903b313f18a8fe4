"""Checkpoint files outside a project: written atomically (temp file + fsync + rename).

A checkpoint is ``dict(model, optimizer, scheduler, scaler, epoch, step, batch_in_epoch,
config, classes, background, backbone, stage, rng)`` (``docs/contracts.md`` plus what an
exact resume needs). Files are written through ``Project.save_checkpoint`` when training a
project, or by :class:`DirectoryCheckpoints` (``napari_wsss.atomic``); they are always
read by ``napari_wsss.store.read_checkpoint`` (``torch.load(..., weights_only=True)``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from napari_wsss.atomic import atomic_write

__all__ = ["DirectoryCheckpoints", "atomic_save"]


def atomic_save(state: dict, path: str | Path) -> Path:
    """``torch.save`` through ``napari_wsss.atomic.atomic_write`` (temp file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


class DirectoryCheckpoints:
    """Checkpoints as ``<root>/<stage>/<version>.pt``, the same calls as a ``Project``.

    Used when training from a source that is not a project (tests, benchmarks).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def save_checkpoint(self, stage: str, state: dict, *, version: str | None = None,
                        best: dict | None = None, use: bool = True) -> str:
        """As ``Project.save_checkpoint``: a version per run (``version`` continues one);
        the step marked ``best`` is also written as ``<stage>/best/<version>.pt``. There is
        no model in use here (``use`` is accepted and ignored): the newest file is read."""
        if version is None:
            existing = sorted((self.root / stage).glob("*.pt")) if (self.root / stage).exists() else []
            version = f"{stage}-{len(existing) + 1:04d}"
        elif not (self.root / stage / f"{version}.pt").is_file():
            raise ValueError(f"no {stage} checkpoint version {version!r} to continue in {self.root}")
        atomic_save(state, self.root / stage / f"{version}.pt")
        if best is not None:
            atomic_save(state, self.root / stage / "best" / f"{version}.pt")
        return version

    def latest_checkpoint(self, stage: str) -> Path | None:
        files = sorted((self.root / stage).glob("*.pt")) if (self.root / stage).exists() else []
        return files[-1] if files else None
