"""Small file-system primitives of the project store: atomic writes, JSON, locking, keys.

Every file the store publishes goes through ``napari_wsss.atomic`` (temporary file in the
same directory, fsync, :func:`os.replace`, which POSIX and Windows both guarantee to be
atomic within one file system): a reader (or a process started after a crash) sees the old
or the new file, never a mix.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from datetime import datetime, timezone
from pathlib import Path

from ..atomic import TMP_SUFFIX, atomic_write_bytes

try:  # POSIX advisory locks; on Windows writers are not serialised (documented).
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "read_json",
    "utc_now",
    "ProjectLock",
    "make_key",
    "TMP_SUFFIX",
]



def utc_now() -> str:
    """Current time as an ISO 8601 string in UTC with millisecond precision."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def atomic_write_json(path: Path, obj: dict, *, fsync: bool = True) -> None:
    """Atomically replace ``path`` by the JSON encoding of ``obj``."""
    atomic_write_bytes(path, json.dumps(obj, indent=1, ensure_ascii=False).encode("utf-8"), fsync=fsync)


def read_json(path: Path) -> dict:
    """Read a JSON file, naming the file when it is missing or malformed."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return json.loads(raw)
    except ValueError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


class ProjectLock:
    """Re-entrant inter-process write lock on a project directory.

    ``flock`` on the directory itself (no extra file in the zarr hierarchy). Threads of one
    process are serialised by an ``RLock``; other processes by the advisory lock, which the
    kernel releases when a process dies, so a killed writer never leaves a stale lock.
    """

    def __init__(self, directory: Path):
        self._dir = Path(directory)
        self._rlock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    def __enter__(self) -> "ProjectLock":
        self._rlock.acquire()
        try:
            if self._depth == 0 and fcntl is not None:
                fd = os.open(self._dir, os.O_RDONLY)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
                self._fd = fd
            self._depth += 1
        except BaseException:
            self._rlock.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        self._rlock.release()


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_MAX_KEY = 80


def make_key(image_id: str, taken_lower: set[str]) -> str:
    """Map an image id to a portable zarr node name, unique among ``taken_lower``.

    Ids made only of ``[A-Za-z0-9._-]`` (not starting with ``.`` or ``__``, at most 80
    characters) are used as they are. Any other id keeps its safe characters (others become
    ``_``) and gets ``.`` plus the first 10 hex digits of its SHA-1. Case-insensitive file
    systems are respected: a key whose lower-case form is taken gets the hash (and, if that
    collides too, a counter). The id -> key map is stored in the project index, so keys never
    have to be recomputed.
    """
    safe = _UNSAFE.sub("_", image_id)[:_MAX_KEY].lstrip(".")
    if safe.startswith("__"):
        safe = "_" + safe.lstrip("_")
    key = safe
    if not key or key != image_id or key.lower() in taken_lower:
        digest = hashlib.sha1(image_id.encode("utf-8")).hexdigest()[:10]
        key = f"{safe or 'id'}.{digest}"
        n = 1
        while key.lower() in taken_lower:
            key = f"{safe or 'id'}.{digest}.{n}"
            n += 1
    return key
