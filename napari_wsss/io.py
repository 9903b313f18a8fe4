"""Reading image files (PNG, JPEG, TIFF, BMP) into arrays, with errors that name the file."""

from __future__ import annotations

import struct
import threading
from pathlib import Path

import numpy as np

__all__ = ["IMAGE_EXTENSIONS", "TIFF_SUFFIXES", "DEFAULT_MAX_PIXELS", "ImageReadError", "read_image",
           "decode_image", "is_image_file"]

#: File name extensions ``read_image`` accepts (lower case).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: File suffixes read and written as TIFF (lower case).
TIFF_SUFFIXES = (".tif", ".tiff")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

#: Largest image (height x width) ``read_image`` decodes by default: Pillow's own
#: decompression-bomb limit (2 x ``PIL.Image.MAX_IMAGE_PIXELS`` = 178,956,970 pixels).
DEFAULT_MAX_PIXELS = 2 * 89_478_485
_PIL_LIMIT = threading.Lock()


class ImageReadError(ValueError):
    """An image file could not be read; the message names the file and the problem."""

    def __init__(self, path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def is_image_file(path) -> bool:
    """Whether ``path`` is a regular, non-hidden file with an image extension."""
    path = Path(path)
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file() and not path.name.startswith(".")


def read_image(path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as stored (no scaling, no EXIF rotation).

    Parameters
    ----------
    path : str or Path
        A ``.png``, ``.jpg``/``.jpeg``, ``.tif``/``.tiff`` or ``.bmp`` file.
    max_pixels : int or None
        Refuse images with more pixels (height x width) than this, from the file header,
        before decoding (a "decompression bomb" or an image too large for memory);
        ``None``: no limit. The CLI's ``--max-pixels``.

    Returns
    -------
    ndarray, shape (H, W) or (H, W, C) with C in 2..4
        Grayscale images are 2-D (a single channel axis is dropped); dtype as in the file
        (uint8, uint16, int32, float32...); palette images (PNG, GIF-style TIFF) are
        expanded to RGB(A), 1-bit images to uint8 0/255. TIFF planes stored channel-first
        ``(C, H, W)`` are moved last.

    Raises
    ------
    FileNotFoundError
        No such file.
    ImageReadError
        Unsupported extension, empty, truncated or corrupt file, not an image, more than
        ``max_pixels`` pixels, or dimensions other than ``(H, W[, C])``.
    """
    return decode_image(path, max_pixels=max_pixels)[0]


def decode_image(path, *, indices: bool = False, stacks: bool = False,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, str]:
    """Decode an image file: the one PNG / JPEG / TIFF / BMP decoder of the package.

    :func:`read_image` (pictures) and :func:`napari_wsss.maskio.read_mask_file` (class
    indices) both read through it; they differ only in the switches.

    Parameters
    ----------
    path : str or Path
        A file with one of :data:`IMAGE_EXTENSIONS`.
    indices : bool
        The file holds labels, not colours: palette images give their palette indices
        (PNG mode ``P``, palette TIFF) and 1-bit images 0/1. ``False``: palettes are
        expanded to RGB(A) and 1-bit images become 0/255.
    stacks : bool
        Accept multi-page TIFF stacks (returned with a leading page axis ``N``); ``False``
        refuses them ("unsupported dimensions").
    max_pixels : int or None
        Refuse files with more pixels than this (height x width, times the pages of an
        accepted stack), from the header, before decoding; ``None``: no limit.

    Returns
    -------
    (ndarray, str)
        The array and its axes: ``"YX"``, ``"YXC"`` (C in 2..4, channels last), and with
        ``stacks`` also ``"NYX"`` / ``"NYXC"``. A single channel axis is dropped.

    Raises
    ------
    FileNotFoundError, ImageReadError
        As :func:`read_image`.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file():
        raise ImageReadError(path, "not a file")
    ext = path.suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        raise ImageReadError(
            path, f"unsupported file type {ext or '(no extension)'!r}; supported: {', '.join(IMAGE_EXTENSIONS)}"
        )
    if path.stat().st_size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    if ext in TIFF_SUFFIXES:
        image, axes = _read_tiff(path, max_pixels, indices=indices, stacks=stacks)
    else:
        image = _read_pillow(path, max_pixels, indices=indices)
        axes = "YX" if image.ndim == 2 else "YXC"
    if image.dtype == bool:
        image = image.astype(np.uint8) * (1 if indices else 255)
    return _check_dims(path, image, axes)


def _read_tiff(path: Path, max_pixels: int | None, *, indices: bool, stacks: bool) -> tuple[np.ndarray, str]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise ImageReadError(path, "TIFF file without image data")
            series = tif.series[0]
            shape, tiff_axes = tuple(series.shape), series.axes
            plane = [n for n, ax in zip(shape, tiff_axes) if ax in "YX"]
            if stacks:  # every page is decoded
                plane = [n for n, ax in zip(shape, tiff_axes) if ax not in "CS"]
            _check_pixels(path, int(np.prod(plane if len(plane) >= 2 else shape)), max_pixels)
            image = series.asarray()
            page = series.pages[0] if series.pages else None
            colormap = None if indices or page is None or page.photometric != 3 else page.colormap
    except ImageReadError:
        raise
    except (tifffile.TiffFileError, ValueError, OSError, struct.error, EOFError) as err:
        raise ImageReadError(path, f"not a readable TIFF image (truncated or corrupt?): {err}") from None
    if image.ndim == 3 and tiff_axes[0] in "CS" and tiff_axes[-1] not in "CS" and image.shape[0] <= 4:
        image, tiff_axes = np.moveaxis(image, 0, -1), tiff_axes[1:] + tiff_axes[0]  # planar (C, H, W)
    if image.ndim == 2:
        axes = "YX"
    elif not stacks:
        axes = "YXC"  # checked by _check_dims: C in 2..4, else the "unsupported dimensions" error
    elif image.ndim == 3:
        axes = "YXC" if tiff_axes[-1] in "CS" else "NYX"
    else:
        axes = "NYXC" if tiff_axes[-1] in "CS" else "N" * (image.ndim - 2) + "YX"
    if colormap is not None and not axes.endswith("C"):  # palette TIFF as a picture: indices -> RGB
        colormap = np.asarray(colormap)
        if colormap.max() > 255:
            colormap = colormap >> 8  # 16-bit TIFF colour map, reduced as Pillow does
        image, axes = colormap.T.astype(np.uint8)[image], axes + "C"
    return image, axes


def _png_is_16bit_colour(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(26)
    # IHDR: 8-byte signature, 4-byte length, b"IHDR", width, height, bit depth, colour type
    return head[:8] == _PNG_MAGIC and len(head) == 26 and head[24] == 16 and head[25] in (2, 6)


def _check_pixels(path: Path, pixels: int, max_pixels: int | None) -> None:
    if max_pixels is not None and pixels > max_pixels:
        raise ImageReadError(
            path, f"{pixels:,} pixels, more than the limit of {max_pixels:,} (a decompression bomb, or an "
                  "image too large to process): if it is genuine, raise the limit with --max-pixels"
        )


def _open_pillow(path: Path, max_pixels: int | None):
    """``Image.open`` with our pixel limit instead of Pillow's global one (header only)."""
    import warnings

    from PIL import Image

    with _PIL_LIMIT, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            im = Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    try:
        _check_pixels(path, im.size[0] * im.size[1], max_pixels)
    except ImageReadError:
        im.close()
        raise
    return im


def _read_pillow(path: Path, max_pixels: int | None, *, indices: bool) -> np.ndarray:
    from PIL import UnidentifiedImageError

    try:
        with _open_pillow(path, max_pixels) as im:  # header only: the pixel limit comes first
            if path.suffix.lower() == ".png" and _png_is_16bit_colour(path):
                image = None
            else:
                im.load()
                mode = im.mode
                if mode in ("P", "PA") and indices:
                    pass  # palette indices (and the alpha of PA) as stored
                elif mode == "P":
                    im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                elif mode == "PA":
                    im = im.convert("RGBA")
                elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                    im = im.convert("RGB")
                image = np.asarray(im)
    except UnidentifiedImageError:
        raise ImageReadError(path, "not an image (Pillow cannot identify the file)") from None
    except MemoryError:
        raise ImageReadError(path, "not enough memory to decode it: lower --max-pixels or use a smaller image") from None
    except ImageReadError:
        raise
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(path, f"truncated or corrupt image: {err}") from None
    return _read_png16(path) if image is None else image


def _read_png16(path: Path) -> np.ndarray:
    """16-bit RGB(A) PNG: Pillow would reduce it to 8 bits, OpenCV keeps all 16."""
    try:
        import cv2
    except ImportError:
        raise ImageReadError(
            path, "16-bit colour PNG needs OpenCV (pip install opencv-python-headless) or save it as TIFF"
        ) from None
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageReadError(path, "truncated or corrupt 16-bit PNG")
    return np.ascontiguousarray(image[..., [2, 1, 0, 3][: image.shape[-1]]])  # BGR(A) -> RGB(A)


def _dims_problem(shape) -> str:
    return (f"unsupported dimensions {tuple(shape)}: expected (H, W) or (H, W, C) with C <= 4 "
            "(stacks, volumes and multi-channel microscopy need to be split into 2-D images)")


def _check_dims(path: Path, image: np.ndarray, axes: str) -> tuple[np.ndarray, str]:
    if axes.endswith("C") and image.shape[-1] == 1:
        image, axes = image[..., 0], axes[:-1]
    ok = axes in ("YX", "NYX") or (axes in ("YXC", "NYXC") and 2 <= image.shape[-1] <= 4)
    if not ok or image.ndim != len(axes):
        raise ImageReadError(path, _dims_problem(image.shape))
    if min(image.shape[: image.ndim - axes.endswith("C")]) < 1:
        raise ImageReadError(path, f"image has no pixels (shape {image.shape})")
    return np.ascontiguousarray(image), axes
