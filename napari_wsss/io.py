"""Reading image files (PNG, JPEG, TIFF, BMP) into arrays, with errors that name the file."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

__all__ = ["IMAGE_EXTENSIONS", "TIFF_SUFFIXES", "ImageReadError", "read_image", "is_image_file"]

#: File name extensions ``read_image`` accepts (lower case).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: File suffixes read and written as TIFF (lower case).
TIFF_SUFFIXES = (".tif", ".tiff")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


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


def read_image(path) -> np.ndarray:
    """Read an image file as stored (no scaling, no EXIF rotation).

    Parameters
    ----------
    path : str or Path
        A ``.png``, ``.jpg``/``.jpeg``, ``.tif``/``.tiff`` or ``.bmp`` file.

    Returns
    -------
    ndarray, shape (H, W) or (H, W, C) with C in 2..4
        Grayscale images are 2-D (a single channel axis is dropped); dtype as in the file
        (uint8, uint16, int32, float32...); palette images are expanded to RGB(A), 1-bit
        images to uint8 0/255. TIFF planes stored channel-first ``(C, H, W)`` are moved last.

    Raises
    ------
    FileNotFoundError
        No such file.
    ImageReadError
        Unsupported extension, empty, truncated or corrupt file, not an image, or
        dimensions other than ``(H, W[, C])``.
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
    image = _read_tiff(path) if ext in TIFF_SUFFIXES else _read_pillow(path)
    return _check_dims(path, image)


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise ImageReadError(path, "TIFF file without image data")
            series = tif.series[0]
            image = series.asarray()
            axes = series.axes
    except ImageReadError:
        raise
    except (tifffile.TiffFileError, ValueError, OSError, struct.error, EOFError) as err:
        raise ImageReadError(path, f"not a readable TIFF image (truncated or corrupt?): {err}") from None
    if image.ndim == 3 and axes[0] in "CS" and axes[-1] not in "CS" and image.shape[0] <= 4:
        image = np.moveaxis(image, 0, -1)  # planar (C, H, W) -> (H, W, C)
    return image


def _png_is_16bit_colour(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(26)
    # IHDR: 8-byte signature, 4-byte length, b"IHDR", width, height, bit depth, colour type
    return head[:8] == _PNG_MAGIC and len(head) == 26 and head[24] == 16 and head[25] in (2, 6)


def _read_pillow(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if path.suffix.lower() == ".png" and _png_is_16bit_colour(path):
        return _read_png16(path)
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif mode == "PA":
                im = im.convert("RGBA")
            elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                im = im.convert("RGB")
            image = np.asarray(im)
    except UnidentifiedImageError:
        raise ImageReadError(path, "not an image (Pillow cannot identify the file)") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(path, f"truncated or corrupt image: {err}") from None
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    return image


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


def _check_dims(path: Path, image: np.ndarray) -> np.ndarray:
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2 or (image.ndim == 3 and 2 <= image.shape[-1] <= 4):
        if min(image.shape[:2]) < 1:
            raise ImageReadError(path, f"image has no pixels (shape {image.shape})")
        return np.ascontiguousarray(image)
    raise ImageReadError(
        path,
        f"unsupported dimensions {image.shape}: expected (H, W) or (H, W, C) with C <= 4 "
        "(stacks, volumes and multi-channel microscopy need to be split into 2-D images)",
    )
