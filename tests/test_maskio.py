"""Mask files: palette PNG / TIFF written and read back as class indices."""

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_wsss.maskio import read_mask_file, write_mask_file


def test_round_trip_png_and_tiff_without_leftovers(tmp_path):
    mask = np.array([[0, 1, 255], [2, 2, 0]], np.uint8)
    for name in ("m.png", "m.tif", "sub/m.tiff"):
        path = write_mask_file(tmp_path / name, mask, n_classes=3)
        np.testing.assert_array_equal(read_mask_file(path), mask)
    # no-background palette: class 0 takes the first Glasbey colour (215, 0, 0)
    pal = np.array(Image.open(tmp_path / "m.png").getpalette()).reshape(-1, 3)
    assert pal[0].tolist() == [215, 0, 0] and pal[255].tolist() == [224, 224, 192]
    # overwriting replaces the file; no temporary files remain
    write_mask_file(tmp_path / "m.png", np.zeros((2, 3), np.uint8), n_classes=3)
    assert read_mask_file(tmp_path / "m.png").tolist() == [[0, 0, 0], [0, 0, 0]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.png", "m.tif", "sub"]


def test_palette_png_reads_indices_not_colours(tmp_path):
    im = Image.fromarray(np.array([[3, 7]], np.uint8))
    im.putpalette([200] * 768)  # every entry the same colour
    im.save(tmp_path / "p.png")
    assert read_mask_file(tmp_path / "p.png").tolist() == [[3, 7]]


def test_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"big\.png: mask holds class 5 but there are only 3 classes"):
        write_mask_file(tmp_path / "big.png", np.array([[0, 5]], np.uint8), n_classes=3)
    with pytest.raises(ValueError, match=r"x\.jpg: cannot handle masks as '\.jpg'"):
        write_mask_file(tmp_path / "x.jpg", np.zeros((2, 2), np.uint8), n_classes=3)
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match=r"rgb\.png: mask is a RGB colour image"):
        read_mask_file(tmp_path / "rgb.png")
    tifffile.imwrite(tmp_path / "w.tif", np.array([[0, 300]], np.uint16))
    with pytest.raises(ValueError, match=r"w\.tif: mask values span 0\.\.300"):
        read_mask_file(tmp_path / "w.tif")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"bad\.png: cannot read mask"):
        read_mask_file(tmp_path / "bad.png")
