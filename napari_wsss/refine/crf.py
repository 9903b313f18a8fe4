"""Fully connected (dense) CRF refinement through ``pydensecrf``.

The model is Krähenbühl & Koltun, "Efficient Inference in Fully Connected CRFs with Gaussian
Edge Potentials", NIPS 2011: unary ``-log p`` from the class scores, Potts pairwise terms
with a smoothness kernel ``w2 exp(-|p_i - p_j|^2 / 2 theta_gamma^2)`` and an appearance
(bilateral) kernel ``w1 exp(-|p_i - p_j|^2 / 2 theta_alpha^2 - |I_i - I_j|^2 / 2 theta_beta^2)``,
mean-field inference.

Kernel defaults (all keyword arguments):

==================  =========  ============================  ===============================
keyword             default    PSA / AffinityNet (ours)      other settings in the literature
==================  =========  ============================  ===============================
``gaussian_sxy``    3          3 (theta_gamma)               K&K demo 3; IRN/P-NOC labels 3
``gaussian_compat`` 3          3 (w2)                        K&K demo 3; IRN/P-NOC labels 3
``bilateral_sxy``   80         80 (theta_alpha)              K&K demo 60; IRN/P-NOC labels 50
``bilateral_srgb``  13         13 (theta_beta)               K&K demo 20; IRN/P-NOC labels 5
``bilateral_compat`` 10        10 (w1)                       K&K demo 10; IRN/P-NOC labels 10
``n_iter``          10         10 mean-field iterations      K&K demo 10; IRN/P-NOC labels 10
==================  =========  ============================  ===============================

The defaults are PSA's (Ahn & Kwak, CVPR 2018, released code ``psa/tool/imutils.py``
``crf_inference``: ``addPairwiseGaussian(sxy=3, compat=3)``, ``addPairwiseBilateral(sxy=80,
srgb=13, compat=10)``, ``t=10``, unary ``unary_from_softmax`` of the background + CAM scores),
which are also pydensecrf's README example. "K&K demo" is ``examples/dense_inference.cpp`` of
Krähenbühl's densecrf code (``addPairwiseGaussian(3, 3, 3)``, ``addPairwiseBilateral(60, 60,
20, 20, 20, im, 10)``, 10 iterations). "IRN/P-NOC labels" is ``crf_inference_label`` of IRN
(Ahn et al., CVPR 2019), used unchanged by Puzzle-CAM and P-NOC to refine *hard* label maps
(``gt_prob=0.7``): pass those values to use their setting.

Cost grows linearly with the number of labels (500x375, 21 labels, 10 iterations takes about
4.5 s on the 2-core dev machine), so only the image's own labels (plus background) are used.
"""

from __future__ import annotations

import numpy as np
import pydensecrf.densecrf as dcrf
from pydensecrf.utils import unary_from_softmax

from ._utils import check_scores, image_to_uint8_rgb, resize_scores
from .background import RefineResult, labels_from_scores, scores_with_background

__all__ = ["dense_crf", "crf_refine", "NO_BACKGROUND_CRF", "default_crf"]

#: Dense-CRF kernels of projects without background (a softer appearance kernel).
#: ``python bench/quality.py --tune-crf 60`` on 60 MSRC-v2 *training* images: mIoU 58.8 with
#: these vs 56.2 with the literature's (PSA: ``bilateral_srgb=13, bilateral_compat=10``;
#: CAMs alone 55.1). Background projects keep the literature's kernels: on the shapes
#: sample (`napari-wsss demo`) they give CRF ~69 mIoU, these ~56.
NO_BACKGROUND_CRF = {"bilateral_srgb": 5.0, "bilateral_compat": 4.0}


def default_crf(background: int | None) -> dict:
    """Default CRF kernels of a project kind: :data:`NO_BACKGROUND_CRF` without background,
    ``crf_refine``'s own (the literature's) with one."""
    return dict(NO_BACKGROUND_CRF) if background is None else {}


def dense_crf(
    image: np.ndarray,
    scores,
    *,
    n_iter: int = 10,
    gaussian_sxy: float = 3.0,
    gaussian_compat: float = 3.0,
    bilateral_sxy: float = 80.0,
    bilateral_srgb: float = 13.0,
    bilateral_compat: float = 10.0,
    clip: float = 1e-5,
) -> np.ndarray:
    """Dense CRF marginals of per-class scores on an image.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        The image as stored; converted to uint8 RGB for the bilateral kernel
        (uint8 RGB is used as is).
    scores : array, shape (K, H, W)
        Non-negative class scores (e.g. background + CAMs from
        :func:`~napari_wsss.refine.background.scores_with_background`). The unary is
        ``-log(clip(scores, clip, 1))`` as in pydensecrf's ``unary_from_softmax`` (and PSA);
        scores need not sum to 1 (a per-pixel constant does not change the CRF).
    n_iter : int
        Mean-field iterations.
    gaussian_sxy, gaussian_compat : float
        Smoothness kernel: spatial std (pixels) and Potts weight.
    bilateral_sxy, bilateral_srgb, bilateral_compat : float
        Appearance kernel: spatial std (pixels), colour std (0..255 units) and Potts weight.
    clip : float
        Lower clip of the scores before the logarithm.

    Returns
    -------
    ndarray, shape (K, H, W), float32
        Per-pixel class probabilities (sum to 1 over K).
    """
    sc = check_scores(scores)
    rgb = image_to_uint8_rgb(image)
    k, h, w = sc.shape
    if rgb.shape[:2] != (h, w):
        raise ValueError(f"image shape {rgb.shape[:2]} != scores shape {(h, w)}; resize the scores first")
    if n_iter < 1:
        raise ValueError(f"n_iter must be >= 1, got {n_iter}")
    crf = dcrf.DenseCRF2D(w, h, k)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(sc, clip=clip)))
    crf.addPairwiseGaussian(sxy=gaussian_sxy, compat=gaussian_compat)
    crf.addPairwiseBilateral(sxy=bilateral_sxy, srgb=bilateral_srgb, rgbim=rgb, compat=bilateral_compat)
    # ``inference(n_iter)`` holds the GIL for the whole run; stepping it (the same
    # computation, bit for bit) lets a GUI thread run between iterations.
    q, tmp1, tmp2 = crf.startInference()
    for _ in range(n_iter):
        crf.stepInference(q, tmp1, tmp2)
    return np.asarray(q, dtype=np.float32).reshape(k, h, w)


def crf_refine(
    image: np.ndarray,
    cams,
    classes,
    *,
    background: int | None = None,
    bg_method: str = "power",
    alpha: float = 16.0,
    threshold: float = 0.2,
    void=None,
    min_prob: float | None = None,
    **crf_kwargs,
) -> RefineResult:
    """CAMs of an image's labels -> dense-CRF probabilities and hard mask at image size.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
    cams : array, shape (K, h, w)
        Normalised CAMs of the image's labels (any resolution; bilinearly resized to the
        image).
    classes : sequence of int, length K
        Project class index of each CAM.
    background : int or None
        ``Project.background``. With a background the CRF has ``K + 1`` labels.
    bg_method, alpha, threshold
        Background score, see :func:`~napari_wsss.refine.background.scores_with_background`.
    void : array of bool, shape (H, W), optional
        Pixels to mark 255 in the mask.
    min_prob : float, optional
        Mark 255 where the largest CRF probability is below this.
    **crf_kwargs
        Kernel parameters of :func:`dense_crf`.

    Returns
    -------
    RefineResult
        ``scores`` (K', H, W) probabilities, ``classes`` (K',), ``mask`` (H, W) uint8.
    """
    h, w = np.asarray(image).shape[:2]
    # Resize the CAMs (not the scores): the background is a non-linear function of them.
    cams = np.asarray(cams.detach().cpu() if hasattr(cams, "detach") else cams, dtype=np.float32)
    if cams.ndim == 3 and cams.shape[0] > 0:
        cams = resize_scores(cams, (h, w))
    elif cams.ndim == 3:
        cams = np.zeros((0, h, w), np.float32)
    scores, cls = scores_with_background(
        cams, classes, background=background, method=bg_method, alpha=alpha, threshold=threshold
    )
    probs = dense_crf(image, scores, **crf_kwargs)
    mask = labels_from_scores(probs, cls, void=void, min_score=min_prob)
    return RefineResult(probs, cls, mask)
