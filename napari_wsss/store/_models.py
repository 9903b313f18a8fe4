"""Which checkpoint version of each stage is *in use*, whether a file is readable, pruning.

The pointer lives in ``models/zarr.json`` (``attrs.napari_wsss.in_use = {stage: version}``),
replaced atomically like every group. Without an entry the newest version is in use. See
``docs/store.md`` ("Models in use").
"""

from __future__ import annotations

import pickle
import shutil
import zipfile
from pathlib import Path

from ._checkpoints import FILE, checkpoint_versions
from ._nodes import NodeStore

__all__ = ["in_use", "set_in_use", "problem", "describe_load_error", "rollback_hint", "prune",
           "keep_setting", "set_keep_setting", "DEFAULT_KEEP", "pin"]

_GROUP = "models"

#: Checkpoint versions kept per stage (plus the one in use) when a project does not say.
DEFAULT_KEEP = 3


def _pins(nodes: NodeStore) -> dict:
    try:
        return dict(nodes.read_group(_GROUP).get("in_use", {}))
    except FileNotFoundError:
        return {}


def in_use(nodes: NodeStore, stage: str) -> str | None:
    """The version in use: the pinned one if it still exists, else the newest (``None``: none)."""
    versions = checkpoint_versions(nodes.root, stage)
    pinned = _pins(nodes).get(stage)
    if pinned in versions:
        return pinned
    return versions[-1] if versions else None


def keep_setting(nodes: NodeStore) -> int:
    """The project's "keep the last N versions per stage" setting (``DEFAULT_KEEP`` if unset)."""
    try:
        value = nodes.read_group(_GROUP).get("keep", DEFAULT_KEEP)
    except FileNotFoundError:
        return DEFAULT_KEEP
    return value if isinstance(value, int) and value >= 1 else DEFAULT_KEEP


def set_keep_setting(nodes: NodeStore, keep: int) -> None:
    """Store the keep setting in ``models/zarr.json``. Call under the project lock."""
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ValueError(f"keep must be an integer of at least 1, got {keep!r}")
    try:
        attrs = nodes.read_group(_GROUP)
    except FileNotFoundError:
        attrs = {}
    attrs["keep"] = keep
    nodes.write_group(_GROUP, attrs)


def pin(nodes: NodeStore, stage: str, version: str) -> None:
    """Pin ``version`` unless it already is (no write then). Call under the project lock."""
    if _pins(nodes).get(stage) != version:
        set_in_use(nodes, stage, version)


def set_in_use(nodes: NodeStore, stage: str, version: str | None) -> None:
    """Pin ``version`` (``None``: unpin, the newest is in use). Call under the project lock."""
    if version is not None and version not in checkpoint_versions(nodes.root, stage):
        raise FileNotFoundError(f"no checkpoint {version!r} in {nodes.root}; versions: "
                                f"{', '.join(checkpoint_versions(nodes.root, stage)) or 'none'}")
    try:
        attrs = nodes.read_group(_GROUP)
    except FileNotFoundError:
        attrs = {}
    pins = dict(attrs.get("in_use", {}))
    if version is None:
        pins.pop(stage, None)
    else:
        pins[stage] = version
    attrs["in_use"] = pins
    nodes.write_group(_GROUP, attrs)


_CHECKED: dict[tuple, str | None] = {}


def problem(path: Path) -> str | None:
    """Why the checkpoint file ``path`` cannot be loaded (``None``: it looks intact).

    Checks the zip container torch writes and the CRC of every member (a truncated or
    overwritten file fails here) without unpickling anything. Cached per (size, mtime).
    """
    try:
        st = path.stat()
    except OSError as err:
        return f"cannot open it ({err.strerror or err})"
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _CHECKED:
        try:
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
            _CHECKED[key] = None if bad is None else f"damaged (member {bad} fails its checksum)"
        except (zipfile.BadZipFile, EOFError, OSError) as err:
            _CHECKED[key] = f"truncated or corrupted ({err})"
    return _CHECKED[key]


def describe_load_error(err: BaseException) -> str:
    """A short reason for a failed ``torch.load(weights_only=True)``, without torch's advice
    to retry with ``weights_only=False`` (which would run code stored in the file)."""
    if isinstance(err, pickle.UnpicklingError):
        return ("it holds Python objects other than tensors and plain values, so it was refused "
                "(loading those could run code from the file); it was not written by napari-wsss")
    if isinstance(err, (EOFError, RuntimeError, zipfile.BadZipFile)):
        return "truncated or corrupted"
    first = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {first}"


def rollback_hint(path: Path) -> str:
    """What to do about an unreadable checkpoint file of a project (or any file)."""
    path = Path(path)
    if path.name == FILE and len(path.parents) >= 4 and path.parents[2].name == _GROUP:
        stage, root = path.parents[1].name, path.parents[3]
        return (f"roll back to the previous version with `napari-wsss models rollback {root} --stage {stage}` "
                f"(`napari-wsss models list {root}` shows all), or retrain")
    return "use another checkpoint file"


def prune(nodes: NodeStore, stage: str, keep: int) -> list[str]:
    """Delete the oldest versions of ``stage``, keeping the newest ``keep`` and the one in use.

    Call under the project lock. Returns the deleted versions, oldest first.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    versions = checkpoint_versions(nodes.root, stage)
    used = in_use(nodes, stage)
    doomed = [v for v in versions[:-keep] if v != used]
    for version in doomed:
        # the node's zarr.json first: from then on the version no longer exists
        node = nodes.root / _GROUP / stage / version
        (node / "zarr.json").unlink(missing_ok=True)
        shutil.rmtree(node, ignore_errors=True)
    return doomed
