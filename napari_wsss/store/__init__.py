"""The zarr project store: the one place that reads and writes project data.

See ``docs/store.md`` for the on-disk layout and the atomic-write protocol.
"""

from ._checkpoint_file import (
    CheckpointError,
    check_checkpoint_classes,
    checkpoint_version,
    read_checkpoint,
    resolve_checkpoint,
)
from ._project import Project, image_sha1
from ._records import ImageRecord, Info, Status
from ._schema import SCHEMA_VERSION, ProjectError, ReadOnlyError
from ._validate import (
    CHECKPOINT_STAGES,
    MASK_STAGES,
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
    "SCHEMA_VERSION",
    "MASK_STAGES",
    "CHECKPOINT_STAGES",
    "STATUSES",
    "split_corrections",
    "CheckpointError",
    "read_checkpoint",
    "resolve_checkpoint",
    "check_checkpoint_classes",
    "checkpoint_version",
]
