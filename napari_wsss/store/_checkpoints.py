"""Model checkpoints inside a project: ``models/<stage>/<version>/checkpoint.pt``.

Each version is a zero-length zarr array node whose attributes summarise the checkpoint
(stage, epoch, step, backbone, classes, time) and whose directory also holds the torch file
``checkpoint.pt``, which zarr never lists (it only looks at ``c/...`` chunk keys inside an
array). The file is written first (temporary file + atomic rename), the node's ``zarr.json``
last, so a version is visible only once complete.
"""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import numpy as np
import zarr

from ._checkpoint_file import torch_load
from ._files import atomic_write_bytes, utc_now
from ._nodes import ATTRS, NodeStore
from ._validate import CHECKPOINT_STAGES, check_choice

__all__ = ["save_checkpoint", "checkpoint_versions", "checkpoint_path", "load_checkpoint"]

FILE = "checkpoint.pt"
_VERSION = re.compile(r"^(?P<stage>[a-z]+)-(?P<n>\d{4,})$")
_SUMMARY = ("epoch", "step", "backbone", "stage")


def checkpoint_versions(root: Path, stage: str) -> list[str]:
    """Complete checkpoint versions of ``stage``, oldest first."""
    check_choice(stage, CHECKPOINT_STAGES, "checkpoint stage")
    folder = root / "models" / stage
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        m = _VERSION.match(entry.name)
        if m and m["stage"] == stage and (entry / "zarr.json").is_file() and (entry / FILE).is_file():
            found.append((int(m["n"]), entry.name))
    return [name for _, name in sorted(found)]


def save_checkpoint(nodes: NodeStore, stage: str, state: dict, classes: list[str]) -> str:
    """Atomically save ``state`` as the next version of ``stage``; return its version id."""
    import torch

    check_choice(stage, CHECKPOINT_STAGES, "checkpoint stage")
    if not isinstance(state, dict):
        raise TypeError(f"a checkpoint state must be a dict, got {type(state).__name__}")
    if "classes" in state and list(state["classes"]) != list(classes):
        raise ValueError(
            f"checkpoint classes {list(state['classes'])} differ from the project's {classes}"
        )
    existing = checkpoint_versions(nodes.root, stage)
    folder = nodes.root / "models" / stage
    n = 1 + max([int(_VERSION.match(v)["n"]) for v in existing] + _leftover_numbers(folder, stage))
    version = f"{stage}-{n:04d}"
    node = folder / version
    node.mkdir(parents=True, exist_ok=False)
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(node / FILE, buf.getvalue())
    summary = {k: state[k] for k in _SUMMARY if isinstance(state.get(k), (int, str))}
    summary.update(version=version, stage=stage, time=utc_now(), classes=list(classes), file=FILE)
    zarr.create_array(
        nodes.zstore,
        name=f"models/{stage}/{version}",
        shape=(0,),
        dtype=np.uint8,
        attributes={ATTRS: summary},
    )
    return version


def _leftover_numbers(folder: Path, stage: str) -> list[int]:
    """Numbers of incomplete versions (a killed save) so they are never reused."""
    if not folder.is_dir():
        return [0]
    return [0] + [int(m["n"]) for e in folder.iterdir() if (m := _VERSION.match(e.name))]


def remove_incomplete(root: Path) -> int:
    """Delete checkpoint versions a killed save left without ``zarr.json`` or file."""
    removed = 0
    for stage in CHECKPOINT_STAGES:
        folder = root / "models" / stage
        if not folder.is_dir():
            continue
        complete = set(checkpoint_versions(root, stage))
        for entry in folder.iterdir():
            if entry.is_dir() and _VERSION.match(entry.name) and entry.name not in complete:
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
    return removed


def checkpoint_path(root: Path, version: str) -> Path:
    """Path of the torch file of a checkpoint version id such as ``classifier-0003``."""
    m = _VERSION.match(version or "")
    if not m:
        raise ValueError(f"invalid checkpoint version id {version!r} (expected e.g. 'classifier-0001')")
    check_choice(m["stage"], CHECKPOINT_STAGES, "checkpoint stage")
    path = root / "models" / m["stage"] / version / FILE
    if version not in checkpoint_versions(root, m["stage"]):
        raise FileNotFoundError(f"no checkpoint {version!r} in {root} (looked for {path})")
    return path


def load_checkpoint(path: Path, classes: list[str], *, map_location="cpu") -> dict:
    """`torch_load` (``weights_only=True``) and check its class list against ``classes``."""
    state = torch_load(path, map_location=map_location)
    if "classes" in state and list(state["classes"]) != list(classes):
        raise ValueError(
            f"checkpoint {path} was trained on classes {list(state['classes'])}, "
            f"but the project has {list(classes)}"
        )
    return state
