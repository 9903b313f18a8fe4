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


def _palette_png(path, indices, colours):
    """An indexed PNG whose palette entry ``i`` is ``colours[i]`` (the rest black)."""
    im = Image.fromarray(np.asarray(indices, np.uint8))
    pal = np.zeros((256, 3), np.uint8)
    pal[: len(colours)] = colours
    im.putpalette(pal.ravel().tolist())
    im.save(path)


def test_one_decoder_palette_png_indices_as_mask_colours_as_image(tmp_path):
    from napari_wsss.io import read_image

    colours = [(10, 20, 30), (200, 100, 50), (0, 255, 0)]
    _palette_png(tmp_path / "p.png", [[0, 1], [2, 1]], colours)
    assert read_mask_file(tmp_path / "p.png").tolist() == [[0, 1], [2, 1]]
    rgb = read_image(tmp_path / "p.png")
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [10, 20, 30] and rgb[1, 0].tolist() == [0, 255, 0]
    assert rgb[0, 1].tolist() == rgb[1, 1].tolist() == [200, 100, 50]


def test_one_decoder_palette_tiff_indices_as_mask_colours_as_image(tmp_path):
    from napari_wsss.colors import mask_palette
    from napari_wsss.io import read_image

    mask = np.array([[0, 1], [2, 255]], np.uint8)
    write_mask_file(tmp_path / "p.tif", mask, n_classes=3)
    assert read_mask_file(tmp_path / "p.tif").tolist() == mask.tolist()
    # as an image: the colours the writer put in the palette (16-bit c * 257, read back as c)
    palette = mask_palette(3, background=None)
    np.testing.assert_array_equal(read_image(tmp_path / "p.tif"), palette[mask])


def test_one_decoder_bilevel_is_0_1_as_mask_0_255_as_image(tmp_path):
    from napari_wsss.io import read_image

    Image.fromarray(np.array([[True, False]])).save(tmp_path / "b.png")
    tifffile.imwrite(tmp_path / "b.tif", np.array([[True, False]]))
    for name in ("b.png", "b.tif"):
        assert read_mask_file(tmp_path / name).tolist() == [[1, 0]]
        assert read_image(tmp_path / name).tolist() == [[255, 0]]


def test_mask_stacks_read_as_pages_even_when_narrow(tmp_path):
    # pages 6 x 3: the old shape test took the last axis (3) for colour channels
    stack = np.random.default_rng(0).integers(0, 3, (2, 6, 3)).astype(np.uint8)
    stack[1, 0, 0] = 255
    write_mask_file(tmp_path / "s.tif", stack, n_classes=3)
    np.testing.assert_array_equal(read_mask_file(tmp_path / "s.tif"), stack)


def test_max_pixels_applies_to_masks(tmp_path):
    write_mask_file(tmp_path / "m.png", np.zeros((10, 10), np.uint8), n_classes=2)
    write_mask_file(tmp_path / "s.tif", np.zeros((3, 10, 10), np.uint8), n_classes=2)
    assert read_mask_file(tmp_path / "m.png", max_pixels=100).shape == (10, 10)
    with pytest.raises(ValueError, match=r"m\.png: cannot read mask: 100 pixels, more than the limit of 99"):
        read_mask_file(tmp_path / "m.png", max_pixels=99)
    # a stack decodes every page: 3 x 100 pixels count against the limit
    assert read_mask_file(tmp_path / "s.tif", max_pixels=300).shape == (3, 10, 10)
    with pytest.raises(ValueError, match=r"s\.tif: cannot read mask: 300 pixels, more than the limit of 299"):
        read_mask_file(tmp_path / "s.tif", max_pixels=299)


def test_colour_mask_tiff_and_missing_file(tmp_path):
    tifffile.imwrite(tmp_path / "c.tif", np.zeros((4, 5, 3), np.uint8))
    with pytest.raises(ValueError, match=r"c\.tif: mask is a RGB colour image \(shape \(4, 5, 3\)\)"):
        read_mask_file(tmp_path / "c.tif")
    with pytest.raises(FileNotFoundError, match=r"gone\.png: no such file"):
        read_mask_file(tmp_path / "gone.png")


def test_ome_zarr_refuses_classes_beyond_the_list_and_writes_nothing(tmp_path):
    from napari_wsss.maskio import write_ome_zarr

    image = np.zeros((2, 3, 3), np.uint8)
    with pytest.raises(ValueError, match=r"m\.ome\.zarr: mask holds class 2 but there are only 2 classes "
                                         r"\(0\.\.1, 255 = void\)"):
        write_ome_zarr(tmp_path / "m.ome.zarr", image, np.array([[0, 2, 255], [1, 1, 0]], np.uint8),
                       name="corrected", classes=["a", "b"])
    assert list(tmp_path.iterdir()) == []
