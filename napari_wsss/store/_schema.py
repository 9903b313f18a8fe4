"""Schema version of the project store and migrations between versions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

__all__ = ["SCHEMA_VERSION", "MIGRATIONS", "ProjectError", "ReadOnlyError", "check_schema"]

#: Version of the on-disk layout this code writes (``docs/store.md``).
SCHEMA_VERSION = 1

#: ``MIGRATIONS[v]`` upgrades a project directory in place from schema ``v`` to ``v + 1``.
#: Schema 1 is the first released layout, so there is nothing to migrate yet.
MIGRATIONS: dict[int, Callable[[Path], None]] = {}


class ProjectError(ValueError):
    """A directory is not a (readable) napari-wsss project."""


class ReadOnlyError(PermissionError):
    """A write was attempted on a project opened with ``mode="r"``."""


def check_schema(path: Path, version, *, writable: bool) -> list[Callable[[Path], None]]:
    """Migrations needed to bring a project at schema ``version`` to :data:`SCHEMA_VERSION`.

    Raises
    ------
    ProjectError
        The version is unknown, newer than this code, or older without a migration path,
        or migrating is needed but the project is opened read-only.
    """
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ProjectError(f"{path}: invalid schema_version {version!r} (expected an integer)")
    if version > SCHEMA_VERSION:
        raise ProjectError(
            f"{path} was written with project schema version {version}, but this napari-wsss "
            f"reads schema versions up to {SCHEMA_VERSION}: upgrade napari-wsss to open it"
        )
    steps = []
    for v in range(version, SCHEMA_VERSION):
        if v not in MIGRATIONS:
            raise ProjectError(
                f"{path} uses project schema version {version}; this napari-wsss reads "
                f"version {SCHEMA_VERSION} and has no migration from version {v} to {v + 1}"
            )
        steps.append(MIGRATIONS[v])
    if steps and not writable:
        raise ProjectError(
            f"{path} uses project schema version {version} and must be migrated to version "
            f"{SCHEMA_VERSION}: open it once with mode='r+'"
        )
    return steps
