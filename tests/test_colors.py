import numpy as np
import pytest
from skimage.color import rgb2lab

from napari_wsss.colors import class_color, class_colors, glasbey_palette, mask_palette, voc_palette
from napari_wsss.conventions import IGNORE


def test_voc_palette_known_entries():
    # Entries from the PASCAL VOC 2012 devkit colour map.
    pal = voc_palette(256)
    assert pal.shape == (256, 3) and pal.dtype == np.uint8
    assert pal[0].tolist() == [0, 0, 0]
    assert pal[1].tolist() == [128, 0, 0]  # aeroplane
    assert pal[15].tolist() == [192, 128, 128]  # person
    assert pal[255].tolist() == [224, 224, 192]  # void
    assert len({tuple(c) for c in pal}) == 256


def _lab(rgb):
    return rgb2lab(np.asarray(rgb, float)[None] / 255.0)[0]


def test_class_colors_are_distinct_and_never_grey():
    """23 classes (MSRC-v2): every pair differs by a CIELAB distance of at least 20 (a
    just-noticeable difference is ~2.3; the VOC map's closest pair among its first 23
    entries is under 10), and each has a chroma of at least 15 (no grey that reads as
    "unlabeled"); the table is colorcet's minimum-chroma-20 Glasbey set."""
    lab = _lab(class_colors(23, background=None))
    d = np.linalg.norm(lab[:, None] - lab[None], axis=-1)
    d[np.eye(23, dtype=bool)] = np.inf
    assert d.min() >= 20.0
    assert np.hypot(lab[:, 1], lab[:, 2]).min() >= 15.0
    voc = _lab(voc_palette(24)[1:])
    dv = np.linalg.norm(voc[:, None] - voc[None], axis=-1)
    dv[np.eye(23, dtype=bool)] = np.inf
    assert dv.min() < d.min()  # the point of the change


def test_class_colors_background_and_not():
    with_bg = class_colors(3, background=0)
    no_bg = class_colors(3, background=None)
    assert with_bg[0].tolist() == [0, 0, 0]
    # the foreground classes take the same Glasbey entries with or without a background class
    assert with_bg[1:].tolist() == no_bg[:2].tolist() == glasbey_palette()[:2].tolist()
    assert class_color(1, background=0) == class_color(0, background=None)
    assert class_color(0, background=None) == (*(glasbey_palette()[0] / 255.0), 1.0)
    assert class_color(IGNORE) == (224 / 255, 224 / 255, 192 / 255, 1.0)
    assert len({tuple(c) for c in class_colors(254)}) == 254


def test_mask_palette_layout():
    pal = mask_palette(2, background=None)
    assert pal[:2].tolist() == class_colors(2).tolist()
    assert pal[2:255].max() == 0
    assert pal[255].tolist() == [224, 224, 192]


def test_class_colors_rejects_bad_input():
    with pytest.raises(ValueError, match="ignore value"):
        class_colors(255, background=None)
    with pytest.raises(ValueError, match="background must be 0 or None"):
        class_colors(3, background=2)
