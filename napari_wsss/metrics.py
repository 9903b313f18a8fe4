"""Segmentation metrics (mIoU, pixel accuracy, F1) and XAI metrics for CAMs.

Masks follow the project convention: class indices ``0..C-1``, ``255`` = void/ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .conventions import IGNORE

__all__ = ["IGNORE", "confusion_matrix", "SegmentationScores", "segmentation_scores"]


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


# --------------------------------------------------------------------------------------
# XAI metrics for explaining maps (CAMs)
# --------------------------------------------------------------------------------------
#
# Definitions from the MinMax-CAM paper (David, Pedrini & Dias, VISAPP 2022) and its
# public benchmark code, which extend Grad-CAM++'s Average Drop / Increase in
# Confidence to multi-label images. For image i with explained labels L_i, label
# c in L_i and its normalised map M_ic in [0, 1]:
#
#   p_i  = f(x_i)                      confidences on the image            (C,)
#   o_ic = f(x_i * M_ic)               ... on the image masked by the map  (C,)
#   ō_ic = f(x_i * (1 - M_ic))         ... with the map's region removed   (C,)
#   drop(p, o, l) = max(0, p_l - o_l) / p_l
#
#   Increase in Confidence (IC)         1[o_ic[c] > p_i[c]]                   higher is better
#   Average Drop (AD)                   drop(p_i, o_ic, c)                    lower is better
#   Average Retention (AR)              drop(p_i, ō_ic, c)                    higher is better
#   Average Drop of Others (ADO)        mean_{l in L_i, l != c} drop(p_i, o_ic, l)   higher
#   Average Retention of Others (ARO)   mean_{l in L_i, l != c} drop(p_i, ō_ic, l)   lower
#
# "Others" averages divide by max(1, |L_i| - 1): a single-label image scores 0 there.
# Values are percentages, averaged per class over the (image, label) pairs of that
# class and then over the classes that occur ("class", as the paper's tables), or over
# all pairs ("sample"). `napari_wsss.cams.masked_confidences` computes p, o and ō.


def _xai_pairs(p, o, targets) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    p = np.asarray(p, dtype=np.float64)
    o = np.asarray(o, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"confidences p must be (N, C), got shape {p.shape}")
    n, c = p.shape
    if hasattr(targets, "shape"):  # numpy array or tensor: a multi-hot matrix
        hot = np.asarray(targets.cpu() if hasattr(targets, "cpu") else targets)
        if hot.shape != (n, c) or not np.isin(hot, (0, 1)).all():
            raise ValueError(f"a targets array must be (N={n}, C={c}) multi-hot, got shape {hot.shape}")
        lists = [[int(v) for v in np.flatnonzero(row)] for row in hot]
    else:
        lists = [[int(v) for v in row] for row in targets]
    if len(lists) != n:
        raise ValueError(f"{len(lists)} target lists for {n} images")
    k = max((len(r) for r in lists), default=0)
    if o.ndim != 3 or o.shape[0] != n or o.shape[1] < k or o.shape[2] != c:
        raise ValueError(f"masked confidences must be (N={n}, K>={k}, C={c}), got shape {o.shape}")
    for i, row in enumerate(lists):
        for label in row:
            if not 0 <= label < c:
                raise ValueError(f"image {i}: label {label} outside 0..{c - 1}")
            if not p[i, label] > 0:
                raise ValueError(f"image {i}: confidence of label {label} is {p[i, label]}; drops are undefined")
    return p, o, lists


def _xai_reduce(values: list[tuple[int, float]], num_classes: int, average: str, per_class: bool):
    if average not in ("class", "sample"):
        raise ValueError(f"unknown average {average!r}; valid: 'class', 'sample'")
    sums = np.zeros(num_classes)
    counts = np.zeros(num_classes)
    for label, v in values:
        sums[label] += v
        counts[label] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        by_class = np.where(counts > 0, 100.0 * sums / counts, np.nan)
    if per_class:
        return by_class
    if not values:
        return float("nan")
    if average == "sample":
        return float(100.0 * sums.sum() / counts.sum())
    return float(np.nanmean(by_class))


def _drop(p_row: np.ndarray, o_row: np.ndarray, label: int) -> float:
    return max(0.0, p_row[label] - o_row[label]) / p_row[label]


def _own(p, o, targets, fn, average, per_class):
    p, o, lists = _xai_pairs(p, o, targets)
    values = [(c, fn(p[i], o[i, k], c)) for i, row in enumerate(lists) for k, c in enumerate(row)]
    return _xai_reduce(values, p.shape[1], average, per_class)


def _others(p, o, targets, average, per_class):
    p, o, lists = _xai_pairs(p, o, targets)
    values = []
    for i, row in enumerate(lists):
        labels = sorted(set(row))
        for k, c in enumerate(row):
            rest = [label for label in labels if label != c]
            total = sum(_drop(p[i], o[i, k], label) for label in rest)
            values.append((c, total / max(1, len(rest))))
    return _xai_reduce(values, p.shape[1], average, per_class)


def increase_in_confidence(p, o, targets, *, average: str = "class", per_class: bool = False):
    """% of explained labels whose confidence rises when only their map is kept.

    Parameters
    ----------
    p : array, shape (N, C)
        Confidences (e.g. sigmoid) on the images.
    o : array, shape (N, K, C)
        Confidences on ``x * M_k``, slot ``k`` for the ``k``-th target of each image.
    targets : list of lists of int, or (N, C) multi-hot array
        The explained labels of each image (ascending order for a multi-hot array).
    average : {"class", "sample"}
        Mean over classes of per-class means, or over all (image, label) pairs.
    per_class : bool
        Return the per-class values ``(C,)`` (NaN for classes never explained).

    Returns
    -------
    float or ndarray, in percent; higher is better.
    """
    return _own(p, o, targets, lambda pr, orow, c: float(orow[c] > pr[c]), average, per_class)


def average_drop(p, o, targets, *, average: str = "class", per_class: bool = False):
    """Average Drop %: ``max(0, p_c - o_c) / p_c`` with only the map of ``c`` kept; lower is better.

    Arguments as :func:`increase_in_confidence`.
    """
    return _own(p, o, targets, _drop, average, per_class)


def average_retention(p, o_inv, targets, *, average: str = "class", per_class: bool = False):
    """Average Retention %: the drop of ``c`` when the map's region is *removed*.

    ``o_inv`` holds confidences on ``x * (1 - M_k)``. Higher is better: the map
    retains the evidence for ``c``. Other arguments as :func:`increase_in_confidence`.
    """
    return _own(p, o_inv, targets, _drop, average, per_class)


def average_drop_of_others(p, o, targets, *, average: str = "class", per_class: bool = False):
    """Average Drop of Others %: mean drop of the image's *other* labels when only the map of ``c`` is kept.

    Higher is better (the map of ``c`` leaves the other objects out); divided by
    ``max(1, |L| - 1)``. Arguments as :func:`increase_in_confidence`.
    """
    return _others(p, o, targets, average, per_class)


def average_retention_of_others(p, o_inv, targets, *, average: str = "class", per_class: bool = False):
    """Average Retention of Others %: mean drop of the other labels when the map of ``c`` is removed.

    Lower is better (removing ``c``'s region keeps the other objects). ``o_inv``
    as in :func:`average_retention`.
    """
    return _others(p, o_inv, targets, average, per_class)


@dataclass
class XAIScores:
    """The five XAI metrics in percent (see :func:`xai_scores`)."""

    increase_in_confidence: float
    average_drop: float
    average_drop_of_others: float
    average_retention: float
    average_retention_of_others: float

    def as_dict(self) -> dict:
        return {
            "IC%": self.increase_in_confidence,
            "AD%": self.average_drop,
            "ADO%": self.average_drop_of_others,
            "AR%": self.average_retention,
            "ARO%": self.average_retention_of_others,
        }


def xai_scores(p, o, o_inv, targets, *, average: str = "class") -> XAIScores:
    """All five metrics from confidences on the images, the masked and the inverse-masked images.

    ``p (N, C)``, ``o (N, K, C)``, ``o_inv (N, K, C)`` as returned by
    ``napari_wsss.cams.masked_confidences``.
    """
    return XAIScores(
        increase_in_confidence(p, o, targets, average=average),
        average_drop(p, o, targets, average=average),
        average_drop_of_others(p, o, targets, average=average),
        average_retention(p, o_inv, targets, average=average),
        average_retention_of_others(p, o_inv, targets, average=average),
    )


__all__ += [
    "increase_in_confidence",
    "average_drop",
    "average_drop_of_others",
    "average_retention",
    "average_retention_of_others",
    "XAIScores",
    "xai_scores",
]
