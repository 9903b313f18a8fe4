"""Mask files: indexed PNG / palette TIFF of class indices, read and written (Qt-free).

Files hold class indices ``0..C-1`` with ``255`` for void / unlabeled pixels (the
convention of segmentation datasets and of the project store) and the class palette of
:mod:`napari_wsss.colors`, so that image viewers show class colours while programs read
the indices. Used by the npe2 writer (``_writer.py``), the exporter and the evaluator.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from napari_wsss.atomic import atomic_write
from napari_wsss.colors import class_colors, mask_palette, voc_palette
from napari_wsss.conventions import IGNORE
from napari_wsss.io import DEFAULT_MAX_PIXELS, TIFF_SUFFIXES, ImageReadError, decode_image

__all__ = ["MASK_EXTENSIONS", "write_mask_file", "read_mask_file", "write_ome_zarr"]

#: File extensions :func:`write_mask_file` and :func:`read_mask_file` handle.
MASK_EXTENSIONS = (".png", *TIFF_SUFFIXES)


def _check_extension(path: Path) -> str:
    ext = path.suffix.lower()
    if ext not in MASK_EXTENSIONS:
        raise ValueError(f"{path}: cannot handle masks as {ext or 'no extension'!r}; "
                         f"use {', '.join(MASK_EXTENSIONS)}")
    return ext


def _check_classes(path: Path, mask: np.ndarray, n_classes: int) -> None:
    """Refuse a mask holding a class index ``>= n_classes`` (other than ``255`` = void)."""
    bad = (mask >= n_classes) & (mask != IGNORE)
    if bad.any():
        raise ValueError(f"{path}: mask holds class {int(mask[bad].max())} but there are only "
                         f"{n_classes} classes (0..{n_classes - 1}, 255 = void)")


def write_mask_file(path, mask, *, n_classes: int, background: int | None = None) -> Path:
    """Write class indices as an indexed PNG or a palette TIFF (atomically).

    Parameters
    ----------
    path : str or Path
        ``.png`` (one 2-D mask) or ``.tif`` / ``.tiff`` (2-D, or a stack written as pages).
    mask : array of uint8, shape (H, W) or (N, H, W)
        Class indices ``0..n_classes-1``, ``255`` = void.
    n_classes : int
        Number of classes ``C``; palette entries ``0..C-1`` get the class colours,
        entry ``255`` the void colour.
    background : int or None
        ``Project.background`` (``0`` or ``None``); chooses the colour mapping.

    Returns
    -------
    Path
        The written file. A reader opening it during the write sees the old file or
        the new one, never a partial one.
    """
    path = Path(path)
    ext = _check_extension(path)
    arr = np.asarray(mask)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and ext == ".png"):
        want = "(H, W) for PNG (write stacks as .tif)" if ext == ".png" else "(H, W) or (N, H, W)"
        raise ValueError(f"{path}: mask of shape {arr.shape} cannot be written; expected {want}")
    if arr.dtype != np.uint8:
        if arr.dtype.kind not in "iub" or (arr.size and (arr.min() < 0 or arr.max() > IGNORE)):
            raise ValueError(f"{path}: mask must hold class indices 0..254 or 255 (void) as uint8, "
                             f"got dtype {arr.dtype}")
        arr = arr.astype(np.uint8)
    _check_classes(path, arr, n_classes)
    palette = mask_palette(min(n_classes, IGNORE), background=background)
    path.parent.mkdir(parents=True, exist_ok=True)
    if ext == ".png":
        from PIL import Image

        im = Image.fromarray(np.ascontiguousarray(arr))  # mode "L"; putpalette makes it "P"
        im.putpalette(palette.ravel().tolist())
        atomic_write(path, lambda tmp: im.save(tmp, format="PNG"))
    else:
        import tifffile

        colormap = palette.T.astype(np.uint16) * 257  # (3, 256), 16-bit as TIFF wants
        atomic_write(path, lambda tmp: tifffile.imwrite(
            tmp, arr, photometric="palette", colormap=colormap, compression="zlib"))
    return path


def read_mask_file(path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read a mask of class indices (``255`` = void).

    Decoded by :func:`napari_wsss.io.decode_image` with palette indices kept and TIFF
    stacks allowed; this function only checks that the file holds class indices.

    Parameters
    ----------
    path : str or Path
        Indexed or grayscale PNG, or TIFF, holding class indices (not colours).
    max_pixels : int or None
        Refuse masks with more pixels than this (all pages of a stack), before decoding;
        ``None``: no limit. As ``read_image``'s.

    Returns
    -------
    ndarray, shape (H, W) (or (N, H, W) for a multi-page TIFF), uint8
        The stored indices: a palette image gives its indices, not its colours.

    Raises
    ------
    ValueError
        Naming the file when it cannot be read, holds colours (RGB) or values outside
        ``0..255``; ``FileNotFoundError`` when there is no such file.
    """
    path = Path(path)
    _check_extension(path)
    try:
        arr, axes = decode_image(path, indices=True, stacks=True, max_pixels=max_pixels)
    except ImageReadError as err:
        raise ImageReadError(path, f"cannot read mask: {err.problem}") from None
    if axes.endswith("C"):
        mode = {2: "LA", 3: "RGB", 4: "RGBA"}[arr.shape[-1]]
        raise ValueError(f"{path}: mask is a {mode} colour image (shape {arr.shape}); expected class "
                         "indices (grayscale or indexed PNG / TIFF, 255 = void)")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{path}: mask has dtype {arr.dtype}; expected integer class indices")
    if arr.size and (arr.min() < 0 or arr.max() > IGNORE):
        raise ValueError(f"{path}: mask values span {int(arr.min())}..{int(arr.max())}; "
                         "expected class indices 0..254 and 255 = void")
    return arr.astype(np.uint8, copy=False)


def _label_metadata(classes, background, name) -> dict:
    """OME-NGFF ``image-label`` content: class colours (RGBA) and names by label value."""
    colors = class_colors(len(classes), background=background)
    void_rgb = voc_palette(256)[IGNORE].tolist()
    return {
        "colors": [{"label-value": i, "rgba": [*colors[i].tolist(), 255]} for i in range(len(classes))]
        + [{"label-value": IGNORE, "rgba": [*void_rgb, 0]}],  # void: transparent in viewers
        "properties": [{"label-value": i, "class": c} for i, c in enumerate(classes)]
        + [{"label-value": IGNORE, "class": "void"}],
        "source": {"image": "../../"},
        "napari_wsss": {"classes": list(classes), "background": background, "void": IGNORE,
                        "source": name},
    }


def write_ome_zarr(path, image, mask, *, name: str, classes, background: int | None = None,
                   image_id: str | None = None) -> Path:
    """Write an image and its class mask as an OME-Zarr image with ``labels/<name>``.

    Parameters
    ----------
    path : str or Path
        The ``.ome.zarr`` directory to create (an existing one is replaced once the new
        one is complete).
    image : ndarray, shape (H, W) or (H, W, C)
        Written with axes ``yx`` or ``cyx`` (channels moved first), one resolution level.
    mask : ndarray, shape (H, W), uint8
        Class indices, ``255`` = void; written as ``labels/<name>`` (axes ``yx``), with
        ``image-label.colors`` (class colours, void transparent) and
        ``image-label.properties`` (``{"label-value": i, "class": name}``, ``"void"`` for 255).
    name : str
        Label group name (e.g. the export source, ``"corrected"``).
    classes : sequence of str
        Class names by index.
    background : int or None
        ``Project.background``.
    image_id : str, optional
        Stored as the image's name.

    Returns
    -------
    Path
    """
    import zarr
    from ome_zarr.writer import write_image, write_labels

    path = Path(path)
    img = np.asarray(image)
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.shape != img.shape[:2] or img.ndim not in (2, 3):
        raise ValueError(f"{path}: mask of shape {mask.shape} does not fit image of shape {img.shape}")
    _check_classes(path, mask, len(classes))
    data, axes = (img, "yx") if img.ndim == 2 else (np.moveaxis(img, -1, 0), "cyx")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        root = zarr.open_group(str(tmp), mode="w")
        write_image(np.ascontiguousarray(data), root, axes=axes, scale_factors=(),
                    name=image_id or path.name)
        write_labels(mask.astype(np.uint8, copy=False), root, name=name, axes="yx",
                     scale_factors=(), scaler=None,
                     label_metadata=_label_metadata(list(classes), background, name))
        _replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _replace_dir(new: Path, dest: Path) -> None:
    """Move directory ``new`` to ``dest``, replacing an existing ``dest``."""
    if dest.exists():
        old = dest.with_name(f".{dest.name}.{os.getpid()}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dest, old)
        os.replace(new, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, dest)
