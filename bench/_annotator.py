"""A deterministic simulated annotator for ``bench/effort.py`` (NoC@85 / NoC@90).

At each step it paints one stroke -- a disk of fixed radius with the ground-truth class of its
centre -- at the interior point of the largest error region: the largest 4-connected component
of the pixels whose mask class differs from the ground truth (void ground truth excluded), at
the maximum of that component's Euclidean distance transform (the image border counts as the
component's boundary). Ties go to the first component / pixel in raster order, so the same
inputs always give the same strokes. It stops at the target IoU or after ``max_strokes``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.ndimage as ndi

__all__ = ["NOT_PAINTED", "disk", "image_iou", "next_stroke", "noc", "simulate"]

NOT_PAINTED = 255


def image_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean IoU over the classes in the ground truth or the prediction of one image.

    Void ground truth (255) is left out; unlabeled prediction (255) counts as wrong for the
    ground-truth class.
    """
    valid = gt != 255
    p, g = pred[valid], gt[valid]
    classes = np.union1d(np.unique(g), np.unique(p[p != 255]))
    if classes.size == 0:
        return 1.0
    ious = [np.count_nonzero((p == c) & (g == c)) / np.count_nonzero((p == c) | (g == c)) for c in classes]
    return float(np.mean(ious))


def next_stroke(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int] | None:
    """``(y, x)`` of the interior point of the largest error region, or None without errors."""
    error = (pred != gt) & (gt != 255)
    labels, n = ndi.label(error)
    if n == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    largest = int(np.argmax(sizes)) + 1
    dist = ndi.distance_transform_edt(np.pad(labels == largest, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(y), int(x)


def disk(shape: tuple[int, int], centre: tuple[int, int], radius: float) -> np.ndarray:
    """Boolean disk ``|p - centre| <= radius`` clipped to the image."""
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius * radius


def noc(ious: list[float], target: float, cap: int = 20) -> int:
    """Strokes until ``ious[n] >= target`` (``ious[0]`` before any stroke); ``cap`` if never."""
    for n, iou in enumerate(ious):
        if iou >= target:
            return min(n, cap)
    return cap


def simulate(
    gt: np.ndarray,
    start: np.ndarray,
    *,
    refine: Callable[[np.ndarray], np.ndarray] | None = None,
    radius: float = 5.0,
    max_strokes: int = 20,
    target: float = 0.90,
) -> dict:
    """Run the simulated annotator on one image.

    Parameters
    ----------
    gt : ndarray (H, W) uint8
        Ground truth (255 = void).
    start : ndarray (H, W) uint8
        The mask before any stroke (all 255 when painting from scratch).
    refine : callable, optional
        ``refine(strokes) -> mask`` run after every stroke on the stroke map (class indices,
        255 unpainted); without it the stroke is painted into the mask (brush only).
    radius, max_strokes, target
        Stroke disk radius (pixels), stroke cap and the IoU to stop at.

    Returns
    -------
    dict
        ``ious`` (before and after each stroke), ``strokes`` (their centres), ``pixels``
        (brush pixels painted, summed over the strokes), ``mask`` (the final mask).
    """
    gt = np.asarray(gt)
    mask = np.array(start, dtype=np.uint8, copy=True)
    strokes = np.full(gt.shape, NOT_PAINTED, np.uint8)
    ious, centres, pixels = [image_iou(mask, gt)], [], 0
    while ious[-1] < target and len(centres) < max_strokes:
        centre = next_stroke(mask, gt)
        if centre is None:
            break
        area = disk(gt.shape, centre, radius)
        strokes[area] = gt[centre]
        pixels += int(area.sum())
        centres.append(centre)
        if refine is None:
            mask[area] = gt[centre]
        else:
            mask = np.asarray(refine(strokes), dtype=np.uint8)
        ious.append(image_iou(mask, gt))
    return {"ious": ious, "strokes": centres, "pixels": pixels, "mask": mask}
