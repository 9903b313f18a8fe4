"""Segmentation metrics (mIoU, pixel accuracy, F1) and XAI metrics for CAMs.

Masks follow the project convention: class indices ``0..C-1``, ``255`` = void/ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["IGNORE", "confusion_matrix", "SegmentationScores", "segmentation_scores"]

IGNORE = 255


def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion matrix ``M[t, p]`` over pixels whose target is not ``IGNORE``.

    Parameters
    ----------
    pred, target : ndarray of int, same shape
        Predicted and true class indices. Predictions equal to ``IGNORE`` on a
        labelled pixel count as wrong for the true class (column dropped).
    num_classes : int

    Returns
    -------
    ndarray, shape (num_classes, num_classes + 1), int64
        The last column counts labelled pixels predicted as void.
    """
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {pred.shape} != target shape {target.shape}")
    valid = target != IGNORE
    t = target[valid].astype(np.int64)
    p = pred[valid].astype(np.int64)
    if t.size and t.max() >= num_classes:
        raise ValueError(f"target has class {t.max()} but num_classes={num_classes}")
    keep = p < num_classes
    conf = np.zeros((num_classes, num_classes + 1), dtype=np.int64)
    conf[:, :-1] = np.bincount(
        t[keep] * num_classes + p[keep], minlength=num_classes**2
    ).reshape(num_classes, num_classes)
    # Last column: labelled pixels predicted as void or out of range (misses of their class).
    conf[:, -1] = np.bincount(t[~keep], minlength=num_classes)
    return conf


@dataclass
class SegmentationScores:
    """Scores from a confusion matrix; ``iou`` is NaN for classes absent from both."""

    iou: np.ndarray
    f1: np.ndarray
    pixel_accuracy: float
    miou: float
    mean_f1: float

    def as_dict(self, classes: list[str] | None = None) -> dict:
        names = classes or [str(i) for i in range(len(self.iou))]
        return {
            "mIoU": self.miou,
            "pixel_accuracy": self.pixel_accuracy,
            "mean_F1": self.mean_f1,
            "IoU": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, self.iou)},
            "F1": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, self.f1)},
        }


def segmentation_scores(conf: np.ndarray) -> SegmentationScores:
    """IoU, F1, pixel accuracy from :func:`confusion_matrix` output (summed over images).

    ``IoU_c = TP / (TP + FP + FN)`` and ``F1_c = 2TP / (2TP + FP + FN)``; classes with
    ``TP + FP + FN = 0`` are NaN and left out of the means. Pixels predicted as void count
    as false negatives of their true class.
    """
    conf = np.asarray(conf, dtype=np.float64)
    m = conf[:, :-1]
    tp = np.diag(m)
    fn = conf.sum(1) - tp
    fp = m.sum(0) - tp
    denom = tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(denom > 0, tp / denom, np.nan)
        f1 = np.where(denom > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    total = conf.sum()
    return SegmentationScores(
        iou=iou,
        f1=f1,
        pixel_accuracy=float(tp.sum() / total) if total else float("nan"),
        miou=float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan"),
        mean_f1=float(np.nanmean(f1)) if np.any(~np.isnan(f1)) else float("nan"),
    )
