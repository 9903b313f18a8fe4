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
from numcodecs import Zstd
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
        self._metas: dict[str, _ArrayMeta] = {}

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
        # no fsync: atomic against killed processes, as the zarr chunks it points to
        atomic_write_json(path, meta, fsync=False)

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

    def _array_meta(self, path: str) -> "_ArrayMeta":
        meta = self._metas.get(path)
        if meta is None:
            try:
                raw = read_json(self.root / path / "zarr.json")
            except FileNotFoundError:
                raise FileNotFoundError(f"no array {path} in {self.root}") from None
            if raw.get("node_type") != "array":
                raise FileNotFoundError(f"{path} in {self.root} is not a zarr array")
            meta = self._metas[path] = _ArrayMeta(raw)
        return meta

    def read_array(self, path: str) -> tuple[np.ndarray, dict]:
        """Data and store attributes of the array at ``path``.

        Arrays are immutable, so their parsed metadata is cached. Single-chunk arrays with
        the codecs this store writes (``bytes`` + optional ``zstd``) are decoded directly
        from their chunk file (no event-loop round trip); anything else goes through zarr.
        Raises ``FileNotFoundError`` when the array or its chunk does not exist (any more):
        zarr would silently return the fill value for a missing chunk.
        """
        meta = self._array_meta(path)
        if meta.fast:
            data = np.empty(meta.shape, meta.dtype)
            if data.size:
                try:
                    with open(self._chunk_file(path, data.ndim), "rb") as f:
                        raw = f.read()
                except FileNotFoundError:
                    self._metas.pop(path, None)
                    raise FileNotFoundError(f"no chunk of array {path} in {self.root}") from None
                if meta.zstd:
                    _ZSTD.decode(raw, out=data)
                else:
                    data[...] = np.frombuffer(raw, meta.dtype).reshape(meta.shape)
            return data, meta.attrs
        try:
            arr = zarr.open_array(self.zstore, path=path, mode="r", zarr_format=3)
            data = arr[...]
            if data.size and not os.path.exists(self._chunk_file(path, data.ndim)):
                raise FileNotFoundError(path)
        except _MISSING as err:
            self._metas.pop(path, None)
            raise FileNotFoundError(f"no array {path} in {self.root}") from err
        return data, meta.attrs

    def _chunk_file(self, path: str, ndim: int) -> str:
        return os.path.join(self.root, path, "c", *(["0"] * ndim))

    def array_meta(self, path: str) -> tuple[tuple[int, ...], np.dtype, dict]:
        """Shape, dtype and store attributes of an array without reading its chunk."""
        meta = self._array_meta(path)
        return meta.shape, meta.dtype, meta.attrs

    def delete(self, path: str) -> None:
        """Remove a node directory (garbage collection; ignores what is already gone)."""
        self._metas.pop(path, None)
        shutil.rmtree(self.root / path, ignore_errors=True)


_ZSTD = Zstd()
_PLAIN_BYTES = ({"name": "bytes"}, {"name": "bytes", "configuration": {"endian": "little"}})


class _ArrayMeta:
    """Parsed ``zarr.json`` of an array; ``fast`` if this module can decode its chunk itself."""

    def __init__(self, raw: dict):
        self.shape = tuple(raw["shape"])
        self.attrs = dict(raw.get("attributes", {}).get(ATTRS, {}))
        codecs = raw.get("codecs", [])
        try:
            self.dtype = np.dtype(raw["data_type"]).newbyteorder("<")
        except TypeError:
            self.dtype = None
        chunks = raw.get("chunk_grid", {}).get("configuration", {}).get("chunk_shape")
        self.zstd = len(codecs) == 2 and codecs[1].get("name") == "zstd"
        self.fast = (
            self.dtype is not None
            and self.dtype.kind in "biuf"
            and chunks == [max(1, n) for n in self.shape]
            and raw.get("chunk_key_encoding")
            == {"name": "default", "configuration": {"separator": "/"}}
            and not raw.get("storage_transformers")
            and codecs[:1] in ([c] for c in _PLAIN_BYTES)
            and (len(codecs) == 1 or self.zstd)
        )
        if self.dtype is not None:
            self.dtype = self.dtype.newbyteorder("=") if self.dtype.itemsize == 1 else self.dtype


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
