"""One-line messages for what a user's input or a bad file can make the CLI fail with.

``describe(err)`` turns an exception into one line that names the file and says what to do;
``USER_ERRORS`` is what the ``napari-wsss`` command catches (anything else is a bug and keeps
its traceback). ``check_writable(path)`` fails early, before hours of training, when a
project cannot be written.
"""

from __future__ import annotations

import errno
import os
import pickle
import uuid
from pathlib import Path

__all__ = ["USER_ERRORS", "describe", "check_writable"]


def _pil_errors() -> tuple:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:  # pragma: no cover - Pillow is a dependency
        return ()
    return (Image.DecompressionBombError, UnidentifiedImageError)


USER_ERRORS = (OSError, ValueError, RuntimeError, KeyError, EOFError, MemoryError,
               pickle.UnpicklingError, *_pil_errors())

_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


def describe(err: BaseException) -> str:
    """One line for ``err``: the file involved, the problem and what to do."""
    if isinstance(err, UnicodeDecodeError):
        return (f"a file is not valid UTF-8 text ({err.reason} at byte {err.start}): re-save it as "
                "UTF-8 (e.g. LibreOffice: Save As, character set Unicode (UTF-8))")
    if isinstance(err, MemoryError):
        return "out of memory" + (f" ({err})" if str(err) else "") + \
            ": the input is too large for this machine (try smaller images or --max-side)"
    if isinstance(err, OSError) and err.errno is not None and err.filename is not None:
        name = err.filename
        if err.errno == errno.EROFS:
            return f"cannot write {name}: read-only file system; choose a writable location"
        if err.errno in (errno.EACCES, errno.EPERM):
            return f"cannot access {name}: permission denied; fix its permissions or choose another location"
        if err.errno == errno.ENOSPC:
            return f"cannot write {name}: no space left on the device; free some space and retry"
        if isinstance(err, FileExistsError):
            return f"{name} already exists"
        if isinstance(err, NotADirectoryError):
            return f"{name} (or a folder on its path) is a file, not a folder"
        if isinstance(err, IsADirectoryError):
            return f"{name} is a folder, expected a file"
        return f"{name}: {err.strerror or err}"
    if isinstance(err, KeyError) and len(err.args) == 1 and isinstance(err.args[0], str):
        return err.args[0]
    text = str(err) or type(err).__name__
    return " ".join(text.split())  # one line


def check_writable(path) -> None:
    """Raise ``PermissionError`` naming ``path`` when a file cannot be created in that folder."""
    path = Path(path)
    probe = path / f".wsss-write-test-{uuid.uuid4().hex[:8]}"
    try:
        probe.write_bytes(b"")
    except OSError as err:
        why = "read-only file system" if err.errno == errno.EROFS else (err.strerror or str(err))
        raise PermissionError(
            f"{path} is not writable ({why}): copy the project to a writable place or fix its permissions"
        ) from None
    finally:
        try:
            os.unlink(probe)
        except OSError:
            pass
