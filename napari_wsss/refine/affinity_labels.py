"""Training targets for AffinityNet: confident regions of the CAMs -> labelled pixel pairs.

Background projects follow Ahn & Kwak (CVPR 2018, Sec. 3.2; code ``psa/infer_cls.py`` and
``psa/voc12/data.py``): the background score ``(1 - max_c M_c)^alpha`` is made with a low
exponent ``alpha_l = 4`` (strong background: only confident foreground survives) and a high
one ``alpha_h = 32`` (weak background: only confident background survives), each optionally
refined by the dense CRF; a pixel is

* foreground class ``c`` where the ``alpha_l`` map says ``c``,
* background where the ``alpha_h`` map says background (this wins over the former),
* 255 (neutral, ignored) elsewhere.

Without a CRF this amounts to confident foreground where ``max_c M_c > ~0.28`` and
confident background where ``max_c M_c < ~0.08`` (the crossings of ``m = (1 - m)^4`` and
``m = (1 - m)^32``), close to IRN / P-NOC's thresholds 0.30 / 0.05.

Projects without background (MSRC-v2) have no such paper recipe. With the image (the
trainer's default, as the paper refines with the CRF) a pixel is labelled with the dense
CRF's class where that agrees with the CAM arg-max, 255 where they disagree: the CRF snaps
regions to edges, the disagreement band is the uncertain boundary, and pixels of different
classes on either side of it make the negative pairs the random walk needs. Without the
image we use the band of the background case on each label: class ``c`` where
``M_c >= high`` and every other label has ``M_c' < low`` (0.30 / 0.05), 255 otherwise. That
band is precise but, because CAMs of co-occurring classes overlap widely, almost never
leaves two classes within the pair radius: on 42 MSRC-v2 training images it gave no
negative pair at all (precision 0.94, coverage 0.30), the CRF agreement 66 502 (precision
0.87, coverage 0.91). An image with a single label is that label everywhere. Annotator
corrections (255 = unlabelled) override the CAM-derived labels where present.

Pairs (pixels closer than the radius, see :mod:`napari_wsss.refine.graph`) with both ends
labelled are positive when the labels agree (split into background-positive and
foreground-positive) and negative otherwise, as in the paper's Eq. 4-6.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ..conventions import IGNORE
from ._utils import check_classes, check_mask, resize_scores
from .background import labels_from_scores, scores_with_background
from .graph import pair_indices

__all__ = ["AffinityTargets", "confident_labels", "downsample_labels", "pair_targets"]


class AffinityTargets(NamedTuple):
    """Binary pair labels, each a float32 Tensor of shape ``(B, P)``.

    Attributes
    ----------
    bg_pos : both pixels background.
    fg_pos : both pixels the same foreground class.
    neg : the pixels have different classes.
    """

    bg_pos: torch.Tensor
    fg_pos: torch.Tensor
    neg: torch.Tensor

    def to(self, device) -> "AffinityTargets":
        return AffinityTargets(*(t.to(device) for t in self))


def confident_labels(
    cams,
    classes,
    *,
    background: int | None = None,
    image: np.ndarray | None = None,
    alpha_low: float = 4.0,
    alpha_high: float = 32.0,
    high: float = 0.30,
    low: float = 0.05,
    corrections=None,
    crf_kwargs: dict | None = None,
) -> np.ndarray:
    """Label map of confident regions of the CAMs, 255 elsewhere.

    Parameters
    ----------
    cams : array, shape (K, H, W)
        Normalised CAMs of the image's labels.
    classes : sequence of int, length K
    background : int or None
        ``Project.background``.
    image : ndarray, shape (H, W[, C]), optional
        When given, the dense CRF refines the labels: both score maps of background
        projects (as in the paper), the CAMs of projects without background (labels where
        the CRF agrees with the CAM arg-max; see the module docstring).
    alpha_low, alpha_high : float
        Background exponents for confident foreground / background (paper: 4 and 32).
    high, low : float
        Confidence band of projects without background (see module docstring).
    corrections : array, shape (H, W), uint8, optional
        Annotator labels (255 = unlabelled); they replace the CAM-derived labels.
    crf_kwargs : dict, optional
        Keyword arguments of :func:`~napari_wsss.refine.crf.dense_crf`.

    Returns
    -------
    ndarray, shape (H, W), uint8
        Project class indices, 255 = neutral / ignored.
    """
    arr = np.asarray(cams, dtype=np.float32)
    if arr.ndim != 3:
        raise ValueError(f"cams: expected an array of shape (K, H, W), got shape {arr.shape}")
    cls = check_classes(classes, arr.shape[0])
    if background is not None:
        labels = _confident_with_background(
            arr, cls, background, image, alpha_low, alpha_high, crf_kwargs or {}
        )
    else:
        labels = _confident_without_background(arr, cls, high, low, image, crf_kwargs or {})
    if corrections is not None:
        corr = check_mask(corrections, labels.shape, "corrections")
        labels = np.where(corr != IGNORE, corr, labels).astype(np.uint8)
    return labels


def _confident_with_background(cams, cls, background, image, alpha_low, alpha_high, crf_kwargs):
    def hard(alpha):
        scores, sc_cls = scores_with_background(cams, cls, background=background, alpha=alpha)
        if image is not None:
            from .crf import dense_crf

            scores = dense_crf(image, scores, **crf_kwargs)
        return labels_from_scores(scores, sc_cls)

    fg = hard(alpha_low)
    bg = hard(alpha_high)
    labels = np.where(fg == background, IGNORE, fg).astype(np.uint8)
    labels[bg == background] = background
    return labels


def _confident_without_background(cams, cls, high, low, image, crf_kwargs):
    cams, cls = scores_with_background(cams, cls, background=None)  # validates range and K >= 1
    h, w = cams.shape[1:]
    if cams.shape[0] == 1:
        return np.full((h, w), cls[0], np.uint8)
    order = np.argsort(-cams, axis=0, kind="stable")
    labels = cls.astype(np.uint8)[order[0]]
    if image is not None:
        from .crf import dense_crf

        crf = labels_from_scores(dense_crf(image, cams, **crf_kwargs), cls)
        labels[crf != labels] = IGNORE
        return labels
    top = np.take_along_axis(cams, order[:1], 0)[0]
    second = np.take_along_axis(cams, order[1:2], 0)[0]
    labels[(top < high) | (second >= low)] = IGNORE
    return labels


def downsample_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Majority vote of a label map onto a coarser grid (255 votes as its own value).

    Parameters
    ----------
    labels : ndarray, shape (H, W), uint8
    shape : (h, w)
        Target grid, e.g. AffinityNet's feature map size.

    Returns
    -------
    ndarray, shape (h, w), uint8
        Each cell takes the most frequent value of the pixels it covers (area weighted).
    """
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"labels: expected shape (H, W), got {lab.shape}")
    values = np.unique(lab)
    onehot = (lab[None] == values[:, None, None]).astype(np.float32)
    votes = resize_scores(onehot, shape, mode="area")
    return values.astype(np.uint8)[votes.argmax(axis=0)]


def pair_targets(labels, radius: int = 5, *, background: int | None = None) -> AffinityTargets:
    """Pair labels of every pixel pair closer than ``radius`` (order of ``pair_indices``).

    Parameters
    ----------
    labels : array, shape (h, w) or (B, h, w)
        Label maps at the affinity feature resolution (255 = ignore).
    radius : int
    background : int or None
        ``Project.background``: same-label pairs of this class are background-positive;
        without background every positive pair is foreground-positive.

    Returns
    -------
    AffinityTargets
        ``bg_pos``, ``fg_pos``, ``neg``: float32 Tensors of shape ``(B, P)``.
    """
    lab = torch.as_tensor(np.asarray(labels)).long()
    if lab.ndim == 2:
        lab = lab[None]
    if lab.ndim != 3:
        raise ValueError(f"labels: expected shape (h, w) or (B, h, w), got {tuple(lab.shape)}")
    ind_from, ind_to = (torch.from_numpy(i) for i in pair_indices(lab.shape[-2:], radius))
    flat = lab.flatten(1)
    a, b = flat[:, ind_from], flat[:, ind_to]
    valid = (a != IGNORE) & (b != IGNORE)
    pos = (a == b) & valid
    bg = pos & (a == background) if background is not None else torch.zeros_like(pos)
    return AffinityTargets(bg.float(), (pos & ~bg).float(), ((a != b) & valid).float())
