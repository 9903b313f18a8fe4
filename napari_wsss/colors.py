"""One colour table for classes, shared by the napari layers and the exports.

Colours follow the PASCAL VOC palette (the colour map segmentation datasets and tools
use for indexed PNG masks): palette entry ``i`` is built from the bits of ``i``.
A project *with* a background class maps class ``c`` to palette entry ``c`` (so
background is black, as in VOC); a project *without* one maps class ``c`` to entry
``c + 1`` so that no foreground class is black. The ignore value ``255`` keeps VOC's
own entry 255, the cream ``(224, 224, 192)`` used for void borders.

This module is Qt-free: the widget, the writer and the exporter all import it.
"""

from __future__ import annotations

import numpy as np

from .conventions import IGNORE, IGNORE_LAYER, MAX_CLASSES

__all__ = ["voc_palette", "class_colors", "class_color", "mask_palette", "labels_layer_colors"]


def voc_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map.

    Parameters
    ----------
    n : int
        Number of entries.

    Returns
    -------
    ndarray, shape (n, 3), uint8
        Entry ``i`` spreads the bits of ``i`` over the high bits of R, G and B:
        bit ``3k`` of ``i`` goes to bit ``7-k`` of R, bit ``3k+1`` to G, bit ``3k+2`` to B.
    """
    if n < 0:
        raise ValueError(f"voc_palette: n must be >= 0, got {n}")
    idx = np.arange(n, dtype=np.int64)
    out = np.zeros((n, 3), dtype=np.int64)
    for k in range(8):
        for ch in range(3):
            bit = (idx >> (3 * k + ch)) & 1
            out[:, ch] |= bit << (7 - k)
    return out.astype(np.uint8)


def _entry(c: np.ndarray | int, background: int | None) -> np.ndarray | int:
    return c if background is not None else c + 1


def class_colors(n_classes: int, *, background: int | None = None) -> np.ndarray:
    """RGB colours of classes ``0..n_classes-1``.

    Parameters
    ----------
    n_classes : int
        Number of classes ``C`` (at most ``MAX_CLASSES`` = 254; 254 and 255 are the ignore values).
    background : int or None
        ``Project.background``: ``0`` when class 0 is background, else ``None``.

    Returns
    -------
    ndarray, shape (C, 3), uint8
    """
    if not 0 <= n_classes <= MAX_CLASSES:
        raise ValueError(
            f"class_colors: n_classes must be in 0..{MAX_CLASSES} "
            f"(254 and 255 are the ignore values), got {n_classes}"
        )
    if background not in (None, 0):
        raise ValueError(f"class_colors: background must be 0 or None, got {background!r}")
    return voc_palette(256)[_entry(np.arange(n_classes), background)]


def class_color(c: int, *, background: int | None = None) -> tuple[float, float, float, float]:
    """RGBA colour of one class (or of ``IGNORE``) as floats in ``[0, 1]``."""
    pal = voc_palette(256)
    rgb = pal[IGNORE] if c == IGNORE else pal[_entry(int(c), background)]
    return (*(float(v) / 255.0 for v in rgb), 1.0)


def mask_palette(n_classes: int, *, background: int | None = None) -> np.ndarray:
    """A 256-entry palette for indexed ``(H, W)`` uint8 masks.

    Entry ``c`` is the colour of class ``c`` for ``c < n_classes``, entry ``255`` the
    ignore colour, every other entry black.

    Returns
    -------
    ndarray, shape (256, 3), uint8
        Flatten it (``.ravel()``) for ``PIL.Image.putpalette``.
    """
    pal = np.zeros((256, 3), dtype=np.uint8)
    pal[:n_classes] = class_colors(n_classes, background=background)
    pal[IGNORE] = voc_palette(256)[IGNORE]
    return pal


def labels_layer_colors(n_classes: int, *, background: int | None) -> dict:
    """Colours of a napari Labels layer of this project, as napari's ``colormap`` dict.

    Layer value ``c + 1`` (class ``c``, see ``napari_wsss.conventions.class_to_layer``) ->
    its class colour, ``0`` (not painted) and ``None`` (any other value) transparent,
    ``IGNORE_LAYER`` (painted "ignore") the VOC void colour. Plain RGBA tuples: napari
    turns the dict into a ``DirectLabelColormap``, and this module stays free of napari.
    """
    transparent = (0.0, 0.0, 0.0, 0.0)
    colors = {None: transparent, 0: transparent, IGNORE_LAYER: class_color(IGNORE)}
    for c in range(n_classes):
        colors[c + 1] = class_color(c, background=background)
    return colors
