import numpy as np
import pytest

from napari_wsss.conventions import IGNORE
from napari_wsss.colors import class_color, class_colors, mask_palette, voc_palette


def test_voc_palette_known_entries():
    # Entries from the PASCAL VOC 2012 devkit colour map.
    pal = voc_palette(256)
    assert pal.shape == (256, 3) and pal.dtype == np.uint8
    assert pal[0].tolist() == [0, 0, 0]
    assert pal[1].tolist() == [128, 0, 0]  # aeroplane
    assert pal[2].tolist() == [0, 128, 0]  # bicycle
    assert pal[3].tolist() == [128, 128, 0]  # bird
    assert pal[4].tolist() == [0, 0, 128]  # boat
    assert pal[15].tolist() == [192, 128, 128]  # person
    assert pal[20].tolist() == [0, 64, 128]  # tvmonitor
    assert pal[255].tolist() == [224, 224, 192]  # void
    assert len({tuple(c) for c in pal}) == 256


def test_class_colors_background_and_not():
    with_bg = class_colors(3, background=0)
    assert with_bg.tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0]]
    no_bg = class_colors(3, background=None)
    assert no_bg.tolist() == [[128, 0, 0], [0, 128, 0], [128, 128, 0]]
    assert class_color(0, background=None) == (128 / 255, 0.0, 0.0, 1.0)
    assert class_color(IGNORE) == (224 / 255, 224 / 255, 192 / 255, 1.0)


def test_mask_palette_layout():
    pal = mask_palette(2, background=None)
    assert pal[0].tolist() == [128, 0, 0] and pal[1].tolist() == [0, 128, 0]
    assert pal[2:255].max() == 0
    assert pal[255].tolist() == [224, 224, 192]


def test_class_colors_rejects_bad_input():
    with pytest.raises(ValueError, match="ignore value"):
        class_colors(255, background=None)
    with pytest.raises(ValueError, match="background must be 0 or None"):
        class_colors(3, background=2)
