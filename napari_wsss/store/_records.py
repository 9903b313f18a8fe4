"""Plain records returned by the project store."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Status", "Info", "ImageRecord"]


@dataclass(frozen=True)
class Status:
    """Annotation status of an image."""

    status: str
    time: str
    model_version: str | None = None


@dataclass(frozen=True)
class Info:
    """Provenance of one stored array."""

    slot: str
    name: str
    shape: tuple[int, ...]
    dtype: str
    time: str | None
    model_version: str | None


@dataclass
class ImageRecord:
    """One image with everything stored for it (see ``Project.load``).

    Attributes
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
    labels : ndarray of int64, shape (L,)
    masks : dict of str -> ndarray (H, W) uint8, by stage
    corrections : ndarray (H, W) uint8, 254 = painted "ignore", 255 = unlabeled
    """

    image_id: str
    image: np.ndarray
    labels: np.ndarray
    masks: dict[str, np.ndarray]
    corrections: np.ndarray
    status: Status
    cam_methods: list[str] = field(default_factory=list)
