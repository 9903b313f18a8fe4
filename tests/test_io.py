"""Image file reading: formats, dtypes, channel layouts and error messages."""

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_wsss.io import IMAGE_EXTENSIONS, ImageReadError, is_image_file, read_image


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_png_rgb_gray_rgba_palette_roundtrip(tmp_path, rng):
    rgb = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (9, 7), dtype=np.uint8)
    rgba = rng.integers(0, 256, (9, 7, 4), dtype=np.uint8)
    for name, arr in [("rgb", rgb), ("gray", gray), ("rgba", rgba)]:
        Image.fromarray(arr).save(tmp_path / f"{name}.png")
        got = read_image(tmp_path / f"{name}.png")
        assert got.dtype == np.uint8 and np.array_equal(got, arr), name
    pal = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), mode="P")
    pal.putpalette([10, 20, 30, 40, 50, 60, 70, 80, 90] + [0] * 759)
    pal.save(tmp_path / "pal.png")
    got = read_image(tmp_path / "pal.png")
    assert got.shape == (2, 2, 3) and got[1, 0].tolist() == [70, 80, 90] and got[0, 1].tolist() == [40, 50, 60]


def test_16bit_png_and_tiff(tmp_path, rng):
    g16 = rng.integers(0, 65536, (5, 6), dtype=np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    got = read_image(tmp_path / "g16.png")
    assert got.dtype == np.uint16 and np.array_equal(got, g16)
    rgb16 = rng.integers(0, 65536, (5, 6, 3), dtype=np.uint16)
    import cv2

    cv2.imwrite(str(tmp_path / "rgb16.png"), rgb16[..., ::-1])  # OpenCV writes BGR
    got = read_image(tmp_path / "rgb16.png")
    assert got.dtype == np.uint16 and np.array_equal(got, rgb16)  # not reduced to 8 bits
    tifffile.imwrite(tmp_path / "g16.tif", g16)
    assert np.array_equal(read_image(tmp_path / "g16.tif"), g16)
    tifffile.imwrite(tmp_path / "rgb16.tiff", rgb16, photometric="rgb")
    got = read_image(tmp_path / "rgb16.tiff")
    assert got.dtype == np.uint16 and np.array_equal(got, rgb16)


def test_tiff_planar_and_float(tmp_path, rng):
    planar = rng.integers(0, 256, (3, 8, 9), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "planar.tif", planar, photometric="rgb", planarconfig="separate")
    got = read_image(tmp_path / "planar.tif")
    assert got.shape == (8, 9, 3) and np.array_equal(got, np.moveaxis(planar, 0, -1))
    f32 = rng.random((4, 5)).astype(np.float32)
    tifffile.imwrite(tmp_path / "f.tif", f32)
    assert np.array_equal(read_image(tmp_path / "f.tif"), f32)


def test_jpeg_and_bmp(tmp_path, rng):
    smooth = np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (24, 1))
    rgb = np.stack([smooth, smooth[:, ::-1], np.full_like(smooth, 128)], -1)
    Image.fromarray(rgb).save(tmp_path / "a.JPG", quality=95)
    got = read_image(tmp_path / "a.JPG")  # upper-case extension
    assert got.shape == (24, 32, 3) and np.abs(got.astype(int) - rgb).max() < 12
    Image.fromarray(rgb).save(tmp_path / "b.bmp")
    assert np.array_equal(read_image(tmp_path / "b.bmp"), rgb)


def test_errors_name_file_and_problem(tmp_path, rng):
    with pytest.raises(FileNotFoundError, match="missing.png: no such file"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ImageReadError, match=r"notes.txt: unsupported file type '.txt'; supported: .png"):
        read_image(tmp_path / "notes.txt")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty.png: empty file"):
        read_image(tmp_path / "empty.png")
    (tmp_path / "fake.png").write_text("this is not a png")
    with pytest.raises(ImageReadError, match=r"fake.png: not an image"):
        read_image(tmp_path / "fake.png")
    (tmp_path / "fake.tif").write_text("this is not a tiff either")
    with pytest.raises(ImageReadError, match=r"fake.tif: not a readable TIFF"):
        read_image(tmp_path / "fake.tif")
    noise = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for ext in ("png", "jpg"):
        Image.fromarray(noise).save(tmp_path / f"full.{ext}")
        raw = (tmp_path / f"full.{ext}").read_bytes()
        (tmp_path / f"cut.{ext}").write_bytes(raw[: len(raw) // 2])
        with pytest.raises(ImageReadError, match=rf"cut.{ext}: truncated or corrupt"):
            read_image(tmp_path / f"cut.{ext}")
    tifffile.imwrite(tmp_path / "full.tif", rng.integers(0, 65536, (64, 64), dtype=np.uint16))
    raw = (tmp_path / "full.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ImageReadError, match=r"cut.tif: not a readable TIFF image \(truncated or corrupt"):
        read_image(tmp_path / "cut.tif")
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((5, 8, 8), np.uint8))
    with pytest.raises(ImageReadError, match=r"stack.tif: unsupported dimensions \(5, 8, 8\)"):
        read_image(tmp_path / "stack.tif")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ImageReadError, match="dir.png: not a file"):
        read_image(tmp_path / "dir.png")


def test_is_image_file(tmp_path):
    for name in ("a.png", "b.TIFF", ".hidden.png", "c.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [n for n in ("a.png", "b.TIFF", ".hidden.png", "c.txt") if is_image_file(tmp_path / n)] == [
        "a.png",
        "b.TIFF",
    ]
    assert set(IMAGE_EXTENSIONS) >= {".png", ".jpg", ".jpeg", ".tif", ".tiff"}


def test_decode_image_axes_and_stack_switch(tmp_path, rng):
    from napari_wsss.io import decode_image

    stack = rng.integers(0, 256, (5, 8, 6), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    arr, axes = decode_image(tmp_path / "stack.tif", stacks=True)
    assert axes == "NYX"
    np.testing.assert_array_equal(arr, stack)
    with pytest.raises(ImageReadError, match=r"stack\.tif: unsupported dimensions \(5, 8, 6\)"):
        decode_image(tmp_path / "stack.tif")
    colour = rng.integers(0, 256, (2, 8, 6, 3), dtype=np.uint8)  # two RGB pages
    tifffile.imwrite(tmp_path / "rgbs.tif", colour, photometric="rgb")
    arr, axes = decode_image(tmp_path / "rgbs.tif", stacks=True)
    assert axes == "NYXC"
    np.testing.assert_array_equal(arr, colour)
    # planar (C, H, W) RGB: channels moved last, for pictures and for stacks alike
    planar = rng.integers(0, 256, (3, 8, 6), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "planar.tif", planar, photometric="rgb", planarconfig="separate")
    for stacks in (False, True):
        arr, axes = decode_image(tmp_path / "planar.tif", stacks=stacks)
        assert axes == "YXC"
        np.testing.assert_array_equal(arr, np.moveaxis(planar, 0, -1))
