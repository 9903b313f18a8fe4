"""Versioned, immutable arrays behind atomically swapped pointers (the store's write protocol).

Protocol (see ``docs/store.md``):

1. A write never touches a published array. It creates a *new* single-chunk array under a
   fresh name ``<slot-prefix>.<8 hex>`` in the image group (zarr writes its ``zarr.json`` and
   chunk file; until step 2 nothing refers to it, so a crash here leaves only garbage).
2. It then replaces the image group's ``zarr.json`` (whose attributes map each slot to its
   current array name) with one atomic ``os.replace``: readers see the old or the new name.
3. The array the slot pointed to before is deleted.

A reader resolves the name, reads the array, and re-reads the pointer: if the slot still
names the same array, that array was current during the whole read (names are never
reused and only non-current arrays are deleted), so the data is exactly one published
version. Otherwise it retries with the new name.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import zarr
from zarr.errors import ArrayNotFoundError, NodeNotFoundError

from ._files import atomic_write_json, read_json

__all__ = ["NodeStore", "ATTRS"]

#: Namespace of the store's attributes inside every zarr.json.
ATTRS = "napari_wsss"
_RETRIES = 200
_MISSING = (FileNotFoundError, KeyError, ArrayNotFoundError, NodeNotFoundError)


class NodeStore:
    """Read/write zarr nodes of one project directory, caching immutable array handles."""

    def __init__(self, root: Path, *, read_only: bool):
        self.root = Path(root)
        self.zstore = zarr.storage.LocalStore(self.root, read_only=read_only)
        self._arrays: dict[str, zarr.Array] = {}

    # -- groups ------------------------------------------------------------------------
    def group_file(self, rel: str) -> Path:
        return self.root / rel / "zarr.json" if rel else self.root / "zarr.json"

    def read_group(self, rel: str) -> dict:
        """The store's attributes of the group at ``rel`` ("" for the root)."""
        meta = read_json(self.group_file(rel))
        if meta.get("node_type") != "group":
            raise ValueError(f"{self.group_file(rel)} is not zarr group metadata")
        return meta.get("attributes", {}).get(ATTRS, {})

    def write_group(self, rel: str, attrs: dict) -> None:
        """Atomically create or replace the group at ``rel`` with ``attrs``."""
        path = self.group_file(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"zarr_format": 3, "node_type": "group", "attributes": {ATTRS: attrs}}
        atomic_write_json(path, meta)

    # -- arrays ------------------------------------------------------------------------
    def new_array(self, group: str, prefix: str, data: np.ndarray, *, fill_value, attrs: dict) -> str:
        """Write ``data`` as a new single-chunk array in ``group``; return its node name."""
        while True:
            name = f"{prefix}.{uuid.uuid4().hex[:8]}"
            if not (self.root / group / name).exists():
                break
        chunks = tuple(max(1, s) for s in data.shape)
        arr = zarr.create_array(
            self.zstore,
            name=f"{group}/{name}",
            shape=data.shape,
            chunks=chunks,
            dtype=data.dtype,
            fill_value=fill_value,
            attributes={ATTRS: attrs},
            config={"write_empty_chunks": True},  # every non-empty array has its chunk file
        )
        if data.size:
            arr[...] = data
        return name

    def read_array(self, path: str) -> tuple[np.ndarray, dict]:
        """Data and store attributes of the array at ``path`` (handles are cached).

        Raises ``FileNotFoundError`` when the array does not exist (any more).
        """
        arr = self._arrays.get(path)
        try:
            if arr is None:
                arr = zarr.open_array(self.zstore, path=path, mode="r", zarr_format=3)
                self._arrays[path] = arr
            data = arr[...]
            # zarr reads a missing chunk as fill_value; ours always exist, so a missing one
            # means the array was deleted (garbage-collected or damaged) under us.
            if data.size and not os.path.exists(self._chunk_file(path, data.ndim)):
                raise FileNotFoundError(path)
        except _MISSING as err:
            self._arrays.pop(path, None)
            raise FileNotFoundError(f"no array {path} in {self.root}") from err
        return data, dict(arr.attrs.get(ATTRS, {}))

    def _chunk_file(self, path: str, ndim: int) -> str:
        return os.path.join(self.root, path, "c", *(["0"] * ndim))

    def array_meta(self, path: str) -> tuple[tuple[int, ...], np.dtype, dict]:
        """Shape, dtype and store attributes of an array without reading its chunk."""
        arr = self._arrays.get(path)
        try:
            if arr is None:
                arr = zarr.open_array(self.zstore, path=path, mode="r", zarr_format=3)
                self._arrays[path] = arr
        except _MISSING as err:
            raise FileNotFoundError(f"no array {path} in {self.root}") from err
        return arr.shape, arr.dtype, dict(arr.attrs.get(ATTRS, {}))

    def delete(self, path: str) -> None:
        """Remove a node directory (garbage collection; ignores what is already gone)."""
        self._arrays.pop(path, None)
        shutil.rmtree(self.root / path, ignore_errors=True)


def consistent_read(read_meta, read_arrays):
    """Run ``read_arrays(meta)`` until the image's pointers are unchanged around it.

    Parameters
    ----------
    read_meta : callable () -> dict
        Reads the image group attributes (one atomic file read); ``meta["arrays"]`` maps
        slots to array names.
    read_arrays : callable (dict) -> object
        Reads the arrays ``meta`` names; raises ``FileNotFoundError`` when an array was
        garbage-collected under it.

    Returns
    -------
    meta, result
        Of the first attempt whose pointers did not change while reading.
    """
    missing = 0
    for attempt in range(_RETRIES):
        before = read_meta()
        try:
            result = read_arrays(before)
        except FileNotFoundError as err:
            result, error = _RETRY, err
        after = read_meta()
        same = after.get("arrays") == before.get("arrays")
        if result is not _RETRY and same:
            return after, result
        if result is _RETRY and same:
            # the pointer did not move, yet its array is gone: not a race but damage
            missing += 1
            if missing >= 3:
                raise FileNotFoundError(
                    f"{error}, although the image group still points to it: the project is "
                    "damaged (files deleted by hand?)"
                ) from error
        if attempt > 10:
            time.sleep(0.001 * min(attempt, 50))
    raise RuntimeError(
        f"could not get a consistent read after {_RETRIES} attempts: another process keeps "
        "replacing these arrays"
    )


_RETRY = object()
