"""Full checkpoints: build, write atomically, read back safely with clear errors.

A checkpoint is ``dict(model, optimizer, scheduler, scaler, epoch, step, batch_in_epoch,
config, classes, background, backbone, stage, rng)`` (``docs/contracts.md`` plus what an
exact resume needs). Files are written through ``Project.save_checkpoint`` when training a
project, or by :class:`DirectoryCheckpoints` (temp file + ``os.replace``); they are always
read with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

__all__ = [
    "CheckpointError",
    "DirectoryCheckpoints",
    "atomic_save",
    "read_checkpoint",
    "check_classes",
    "REQUIRED_KEYS",
]

REQUIRED_KEYS = ("model", "epoch", "step", "config", "classes", "backbone", "stage")


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used; the message names the file."""


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


def read_checkpoint(path: str | Path, *, stage: str | None = None, map_location="cpu") -> dict:
    """Load a checkpoint with ``weights_only=True`` and validate its keys.

    Raises
    ------
    FileNotFoundError
        No such file.
    CheckpointError
        Unreadable / corrupted file, missing keys, or a checkpoint of another stage.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # zip, unpickling and EOF errors all mean: not a usable file
        from napari_wsss.store._models import describe_load_error, rollback_hint

        raise CheckpointError(
            f"cannot read checkpoint {path}: {describe_load_error(e)}; {rollback_hint(path)}"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a dict")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks key(s) {', '.join(missing)}")
    if stage is not None and state["stage"] != stage:
        raise CheckpointError(
            f"checkpoint {path} is a {state['stage']!r} checkpoint, expected {stage!r}"
        )
    return state


def check_classes(state: dict, classes: list[str], *, path, what: str = "the project") -> None:
    """Error naming both lists when the checkpoint's classes differ from ``classes``."""
    if list(state["classes"]) != list(classes):
        raise ValueError(
            f"checkpoint {path} was trained on classes {list(state['classes'])} but "
            f"{what} has classes {list(classes)}"
        )
