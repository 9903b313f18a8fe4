"""The zarr project store: the one place that reads and writes project data.

See ``docs/store.md`` for the on-disk layout and the atomic-write protocol.
"""

from ._checkpoints import CheckpointReadError
from ._project import Project, image_sha1
from ._records import ImageRecord, Info, Status
from ._schema import SCHEMA_VERSION, ProjectError, ReadOnlyError
from ._validate import (
    CHECKPOINT_STAGES,
    IGNORE,
    IGNORE_PAINTED,
    MASK_STAGES,
    MAX_CLASSES,
    STATUSES,
    split_corrections,
)

__all__ = [
    "Project",
    "image_sha1",
    "Status",
    "Info",
    "ImageRecord",
    "ProjectError",
    "ReadOnlyError",
    "CheckpointReadError",
    "SCHEMA_VERSION",
    "MASK_STAGES",
    "CHECKPOINT_STAGES",
    "STATUSES",
    "IGNORE",
    "IGNORE_PAINTED",
    "MAX_CLASSES",
    "split_corrections",
]
