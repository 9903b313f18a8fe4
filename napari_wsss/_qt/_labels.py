"""The one place that maps mask class indices to napari Labels values and back.

napari Labels layers use ``0`` for "not painted", so class ``c`` is shown as layer value
``c + 1`` and the ignore value ``255`` as ``0``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["class_to_layer", "layer_to_class"]

IGNORE = 255


def class_to_layer(mask: np.ndarray) -> np.ndarray:
    """Mask of class indices -> Labels layer values.

    Parameters
    ----------
    mask : ndarray, shape (H, W), uint8
        Class indices ``0..C-1`` with ``255`` = ignore / unlabeled.

    Returns
    -------
    ndarray, shape (H, W), uint8
        ``c + 1`` for class ``c``, ``0`` where the mask is ``255``.
    """
    mask = np.asarray(mask)
    if mask.dtype != np.uint8:
        raise TypeError(f"class_to_layer: expected a uint8 mask, got {mask.dtype}")
    if np.any(mask == IGNORE - 1):
        raise ValueError("class_to_layer: class 254 has no Labels value (255 would overflow)")
    return np.where(mask == IGNORE, 0, mask + 1).astype(np.uint8)


def layer_to_class(data: np.ndarray) -> np.ndarray:
    """Labels layer values -> mask of class indices (inverse of `class_to_layer`).

    Parameters
    ----------
    data : ndarray, shape (H, W), integer
        ``0`` = not painted, ``v >= 1`` = class ``v - 1``.

    Returns
    -------
    ndarray, shape (H, W), uint8
        Class indices with ``255`` where nothing is painted.
    """
    data = np.asarray(data)
    if not np.issubdtype(data.dtype, np.integer):
        raise TypeError(f"layer_to_class: expected integer layer data, got {data.dtype}")
    if data.size and (data.min() < 0 or data.max() > IGNORE):
        raise ValueError(
            f"layer_to_class: layer values must be in 0..255, got {data.min()}..{data.max()}"
        )
    return np.where(data == 0, IGNORE, data.astype(np.int64) - 1).astype(np.uint8)
