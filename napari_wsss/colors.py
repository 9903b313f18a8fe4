"""One colour table for classes, shared by the napari layers, the panel and the exports.

Foreground classes take the colours of a Glasbey palette (Glasbey et al. 2007: each
colour as far as possible, in CIELAB, from all earlier ones), the 256-entry
``glasbey_bw_minc_20`` table of `colorcet`: no black, white or near-grey entries, so
that a class is never mistaken for background, an unlabeled pixel or another class.
Foreground class ``k`` (counting only foreground classes) gets table entry ``k``: the
first classes get the most distinct colours. A background class is black (as in
PASCAL VOC indexed masks; napari layers draw it nearly transparent, `BACKGROUND_ALPHA`),
and the ignore value ``255`` keeps VOC's void cream ``(224, 224, 192)``.

This module is Qt-free: the widget, the writer and the exporter all import it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .conventions import IGNORE, IGNORE_LAYER, MAX_CLASSES, class_to_layer

__all__ = ["BACKGROUND_RGB", "BACKGROUND_ALPHA", "IGNORE_RGB", "glasbey_palette", "voc_palette",
           "class_colors", "class_color", "mask_palette", "labels_layer_colors"]

BACKGROUND_RGB = (0, 0, 0)
"""Colour of a background class in masks and exports."""

BACKGROUND_ALPHA = 0.12
"""Alpha of the background class in napari Labels layers: an accepted image stays
visible under its background (the layer's opacity multiplies this)."""

IGNORE_RGB = (224, 224, 192)
"""Colour of the ignore value: PASCAL VOC's void entry 255."""


@lru_cache(maxsize=1)
def glasbey_palette() -> np.ndarray:
    """The 256 Glasbey colours foreground classes take, in order.

    Returns
    -------
    ndarray, shape (256, 3), uint8
        `colorcet`'s ``glasbey_bw_minc_20`` (the table ``colorcet.glasbey`` names),
        rounded to 8 bits. Read-only.
    """
    import colorcet

    pal = np.rint(np.asarray(colorcet.glasbey_bw_minc_20, dtype=np.float64) * 255.0)
    pal = pal.astype(np.uint8)
    pal.flags.writeable = False
    return pal


def voc_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map (kept for its void entry and for datasets that use it).

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


def _check(n_classes: int, background: int | None) -> None:
    if not 0 <= n_classes <= MAX_CLASSES:
        raise ValueError(
            f"class_colors: n_classes must be in 0..{MAX_CLASSES} "
            f"(254 and 255 are the ignore values), got {n_classes}"
        )
    if background not in (None, 0):
        raise ValueError(f"class_colors: background must be 0 or None, got {background!r}")


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
        `BACKGROUND_RGB` for the background class, Glasbey entry ``k`` for the
        ``k``-th foreground class.
    """
    _check(n_classes, background)
    out = np.empty((n_classes, 3), dtype=np.uint8)
    fg = [c for c in range(n_classes) if c != background]
    out[fg] = glasbey_palette()[: len(fg)]
    if background is not None and n_classes:
        out[background] = BACKGROUND_RGB
    return out


def class_color(c: int, *, background: int | None = None) -> tuple[float, float, float, float]:
    """RGBA colour of one class (or of ``IGNORE``) as floats in ``[0, 1]``."""
    if c == IGNORE:
        rgb = IGNORE_RGB
    elif c == background:
        rgb = BACKGROUND_RGB
    else:
        if not 0 <= int(c) < MAX_CLASSES:
            raise ValueError(f"class_color: class must be in 0..{MAX_CLASSES - 1} or {IGNORE}, got {c}")
        rgb = glasbey_palette()[int(c) - (background is not None and c > background)]
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
    pal[IGNORE] = IGNORE_RGB
    return pal


def labels_layer_colors(n_classes: int, *, background: int | None) -> dict:
    """Colours of a napari Labels layer of this project, as napari's ``colormap`` dict.

    Layer value of class ``c`` (``napari_wsss.conventions.class_to_layer``) -> its class
    colour (the background class with alpha `BACKGROUND_ALPHA`), ``0`` (not painted) and
    ``None`` (any other value) transparent, ``IGNORE_LAYER`` (painted "ignore") the VOC
    void colour. Plain RGBA tuples: napari turns the dict into a ``DirectLabelColormap``,
    and this module stays free of napari.
    """
    transparent = (0.0, 0.0, 0.0, 0.0)
    colors = {None: transparent, 0: transparent, IGNORE_LAYER: class_color(IGNORE)}
    values = class_to_layer(np.arange(n_classes, dtype=np.uint8))
    for c, v in enumerate(values.tolist()):
        r, g, b, a = class_color(c, background=background)
        colors[v] = (r, g, b, BACKGROUND_ALPHA if c == background else a)
    return colors
