"""Region tools for corrections (Qt-free): fill a region with a class, accept all but a class,
erase a class.

Masks are ``(H, W)`` uint8 class indices with ``255`` = unlabeled and, in the annotator's
corrections, ``254`` = painted "ignore". Every function returns a new array and leaves its
inputs unchanged; the panel writes the result to its labels layer (one undo step).
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi

from .conventions import IGNORE, IGNORE_PAINTED

__all__ = ["REGION_MODES", "superpixels", "region_at", "fill_region", "accept_all_but", "erase_class"]

NOT_PAINTED = IGNORE
REGION_MODES = ("superpixel", "segment")


def superpixels(image: np.ndarray, *, n_segments: int = 400, compactness: float = 10.0) -> np.ndarray:
    """SLIC superpixels of an image (``skimage.segmentation.slic``), labels ``0..n-1``, (H, W) int."""
    from skimage.segmentation import slic

    img = np.asarray(image)
    channel_axis = -1 if img.ndim == 3 else None
    return slic(img, n_segments=n_segments, compactness=compactness, start_label=0,
                channel_axis=channel_axis).astype(np.int32)


def region_at(point, *, mode: str = "segment", proposal: np.ndarray | None = None,
              segments: np.ndarray | None = None) -> np.ndarray:
    """The region under ``point`` as a boolean ``(H, W)`` array.

    Parameters
    ----------
    point : (y, x)
        Pixel coordinates (rounded).
    mode : {"segment", "superpixel"}
        ``"segment"``: the 4-connected component of ``proposal`` containing the point (its
        pixels of the point's class); ``"superpixel"``: the point's label in ``segments``.
    proposal : ndarray (H, W), for ``"segment"``
    segments : ndarray (H, W) int, for ``"superpixel"`` (see :func:`superpixels`)
    """
    if mode not in REGION_MODES:
        raise ValueError(f"unknown region mode {mode!r}; valid: {', '.join(REGION_MODES)}")
    ref = proposal if mode == "segment" else segments
    if ref is None:
        raise ValueError(f"region mode {mode!r} needs {'proposal' if mode == 'segment' else 'segments'}")
    ref = np.asarray(ref)
    y, x = (int(round(float(v))) for v in point)
    if not (0 <= y < ref.shape[0] and 0 <= x < ref.shape[1]):
        raise ValueError(f"point {(y, x)} is outside the image of shape {ref.shape}")
    same = ref == ref[y, x]
    if mode == "superpixel":
        return same
    comp, _ = ndi.label(same)
    return comp == comp[y, x]


def fill_region(corrections: np.ndarray, region: np.ndarray, cls: int) -> np.ndarray:
    """``corrections`` with ``region`` painted ``cls`` (a class index, or 254 for ignore)."""
    out = np.array(corrections, dtype=np.uint8, copy=True)
    if not 0 <= int(cls) <= IGNORE_PAINTED:
        raise ValueError(f"class index must be in 0..{IGNORE_PAINTED}, got {cls}")
    out[np.asarray(region, dtype=bool)] = int(cls)
    return out


def accept_all_but(proposal: np.ndarray, corrections: np.ndarray, exclude) -> np.ndarray:
    """Accept the proposal except the classes ``exclude``: unpainted pixels take the proposal's
    class unless it is excluded (they stay unlabeled); painted pixels keep the annotator's value."""
    prop = np.asarray(proposal)
    out = np.array(corrections, dtype=np.uint8, copy=True)
    if prop.shape != out.shape:
        raise ValueError(f"proposal shape {prop.shape} != corrections shape {out.shape}")
    excluded = np.isin(prop, np.atleast_1d(np.asarray(exclude, dtype=np.int64)))
    take = (out == NOT_PAINTED) & ~excluded
    out[take] = prop[take]
    return out


def erase_class(mask: np.ndarray, cls: int) -> np.ndarray:
    """``mask`` with every pixel of class ``cls`` set to unlabeled (255)."""
    out = np.array(mask, dtype=np.uint8, copy=True)
    out[out == int(cls)] = NOT_PAINTED
    return out
