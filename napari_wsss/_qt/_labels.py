"""The one place that maps stored mask values to napari Labels values and back.

napari Labels layers use ``0`` for "not painted", so class ``c`` is shown as layer value
``c + 1``, the store's "unlabeled" ``255`` as ``0``, and the corrections' painted
"ignore" ``254`` (``napari_wsss.store.IGNORE_PAINTED``) as `IGNORE_LAYER` ``255``: the
map is ``v = (c + 1) mod 256`` both ways, so a project's at most 254 classes and both
kinds of ignore all fit in uint8.
"""

from __future__ import annotations

import numpy as np

from napari_wsss.store import IGNORE_PAINTED

__all__ = ["class_to_layer", "layer_to_class", "IGNORE_LAYER", "value_of_class", "class_of_value",
           "is_paintable", "value_names"]

IGNORE_LAYER = (IGNORE_PAINTED + 1) % 256
"""Layer value of the "ignore" brush; stored as ``IGNORE_PAINTED`` (254)."""


def class_to_layer(mask: np.ndarray) -> np.ndarray:
    """Mask of stored values -> Labels layer values.

    Parameters
    ----------
    mask : ndarray, shape (H, W), uint8
        Class indices ``0..253``, ``254`` = painted "ignore" (corrections only), ``255`` =
        unlabeled / void.

    Returns
    -------
    ndarray, shape (H, W), uint8
        ``c + 1`` for class ``c``, `IGNORE_LAYER` for ``254``, ``0`` for ``255``.
    """
    mask = np.asarray(mask)
    if mask.dtype != np.uint8:
        raise TypeError(f"class_to_layer: expected a uint8 mask, got {mask.dtype}")
    return mask + np.uint8(1)  # uint8 wraps IGNORE (255) -> 0


def layer_to_class(data: np.ndarray) -> np.ndarray:
    """Labels layer values -> stored mask values (inverse of `class_to_layer`).

    Parameters
    ----------
    data : ndarray, shape (H, W), integer
        ``0`` = not painted, `IGNORE_LAYER` = painted "ignore", other ``v`` = class ``v - 1``.

    Returns
    -------
    ndarray, shape (H, W), uint8
        Class indices, ``254`` where "ignore" was painted, ``255`` where nothing was.
    """
    data = np.asarray(data)
    if not np.issubdtype(data.dtype, np.integer):
        raise TypeError(f"layer_to_class: expected integer layer data, got {data.dtype}")
    if data.size and (data.min() < 0 or data.max() > IGNORE_LAYER):
        raise ValueError(
            f"layer_to_class: layer values must be in 0..255, got {data.min()}..{data.max()}"
        )
    return data.astype(np.uint8) - np.uint8(1)  # uint8 wraps 0 -> 255


def value_of_class(c: int) -> int:
    """Layer value of class ``c`` (what napari's label box and hover text show)."""
    return (int(c) + 1) % 256


def class_of_value(v: int) -> int:
    """Stored value of layer value ``v``: class ``v - 1``, 254 for `IGNORE_LAYER`, 255 for 0."""
    return (int(v) - 1) % 256


def is_paintable(v: int, n_classes: int) -> bool:
    """Whether layer value ``v`` may be painted in a project of ``n_classes`` classes:
    ``0`` (the eraser), a class ``1..n_classes`` or `IGNORE_LAYER`."""
    v = int(v)
    return 0 <= v <= n_classes or v == IGNORE_LAYER


def value_names(classes: list[str]) -> dict[int, str]:
    """Layer value -> the name napari should show for it (hover text, panel)."""
    out = {0: "unlabeled"}
    out.update({value_of_class(c): name for c, name in enumerate(classes)})
    out[IGNORE_LAYER] = "ignore"
    return out
