"""npe2 writer: a napari Labels layer -> indexed PNG (or TIFF) of class indices.

The file holds class indices ``0..C-1`` with ``255`` for unlabeled pixels (the layer's
``0``) and for pixels painted "ignore" (the layer's ``255``), the convention of
segmentation datasets, and the VOC-style class palette of ``napari_wsss.colors`` so
that viewers show class colours. The file writing itself is
``napari_wsss.maskio.write_mask_file`` (shared with the exporter).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_wsss.conventions import IGNORE, IGNORE_PAINTED, layer_to_class
from napari_wsss.io import TIFF_SUFFIXES
from napari_wsss.maskio import write_mask_file

__all__ = ["write_labels"]



def _classes_info(data_classes: np.ndarray, meta: dict) -> tuple[int, int | None]:
    info = (meta or {}).get("metadata", {}).get("napari_wsss", {})
    if "classes" in info:
        return len(info["classes"]), info.get("background")
    present = data_classes[data_classes != IGNORE]
    return (int(present.max()) + 1 if present.size else 0), None


def write_labels(path: str, data, meta: dict) -> list[str]:
    """Write a Labels layer as an indexed PNG with a palette, or a TIFF by extension.

    Parameters
    ----------
    path : str
        ``.png`` (one 2-D mask) or ``.tif``/``.tiff`` (2-D, or a stack written as pages).
    data : ndarray, shape (H, W) or (N, H, W), integer
        Layer values: ``0`` = not painted, ``255`` = painted "ignore" (both written as
        255), other ``v`` = class ``v - 1``.
    meta : dict
        Layer attributes; ``meta["metadata"]["napari_wsss"]`` (set by this plugin's reader
        and widget) gives ``classes`` and ``background`` for the palette.

    Returns
    -------
    list of str
        The written path.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in (".png", *TIFF_SUFFIXES):
        raise ValueError(f"{path}: cannot write labels as {ext!r}; use .png, .tif or .tiff")
    arr = np.asarray(data)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and ext == ".png"):
        want = "(H, W) for PNG (save stacks as .tif)" if ext == ".png" else "(H, W) or (N, H, W)"
        raise ValueError(f"{path}: labels of shape {arr.shape} cannot be written; expected {want}")
    try:
        classes = layer_to_class(arr)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None
    classes[classes == IGNORE_PAINTED] = IGNORE
    n_classes, background = _classes_info(classes, meta)
    write_mask_file(path, classes, n_classes=n_classes, background=background)
    return [str(path)]
