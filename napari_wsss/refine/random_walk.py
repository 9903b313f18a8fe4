"""AffinityNet-style random walk: propagate class scores along pixel affinities.

Ahn & Kwak, "Learning Pixel-level Semantic Affinity with Image-level Supervision for Weakly
Supervised Semantic Segmentation", CVPR 2018, Sec. 3.3:

* ``W_ij`` is the affinity of pixels ``i, j`` closer than the radius ``gamma`` at feature
  resolution (0 otherwise; ``W_ii = 1``);
* ``T = D^-1 W^beta``: ``W^beta`` the element-wise power ("Hadamard power", which sharpens
  the affinities), ``D`` the diagonal matrix of its row sums;
* ``vec(M*_c) = T^t vec(M_c)`` for every class ``c`` including background; the result is
  upsampled to the image and the arg-max gives the mask.

Parameters (defaults of the released code ``psa/infer_aff.py``, which its README gives as
the paper's up to minor changes): ``beta = 8``; ``t = 256``, reached in the code by
``logt = 8`` repeated squarings ``T <- T @ T`` of a *dense* ``T`` (``T^(2^8)``); background
map ``(1 - max_c M_c)^alpha`` with ``alpha = 16``; radius 5 at the network's stride 8; CAMs
average-pooled to the feature grid, the walked scores upsampled bilinearly. Here ``T`` stays
sparse (``N x N`` with about ``pi r^2`` entries per row) and ``t`` sparse products
``M <- T M`` are taken instead: the same ``T^t M`` without the dense ``N x N`` matrix.

Affinities come from, in order of preference:

* a trained :class:`~napari_wsss.models.affinity.AffinityNet`
  (``model.affinity_graph(image)``);
* backbone features, :func:`feature_affinity` (AffinityNet's ``exp(-mean |f_i - f_j|)`` or
  the cosine similarity), usable before any training;
* colour, :func:`colour_affinity`, a bilateral colour kernel needing no network at all.

:func:`build_affinity` picks the first of these that is available.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import torch

from ..device import resolve_device
from ..transforms import to_tensor
from ._utils import check_scores, image_to_uint8_rgb, resize_scores
from .background import RefineResult, labels_from_scores, scores_with_background
from .graph import AffinityGraph, pair_indices, pairwise

__all__ = [
    "FEATURE_METRICS",
    "build_affinity",
    "colour_affinity",
    "feature_affinity",
    "random_walk",
    "random_walk_refine",
]

FEATURE_METRICS = ("l1", "cosine")


def colour_affinity(
    image: np.ndarray,
    shape: tuple[int, int] | None = None,
    *,
    radius: int = 5,
    srgb: float = 20.0,
    sxy: float | None = None,
    device: torch.device | str | None = None,
) -> AffinityGraph:
    """Bilateral colour affinity between pixels closer than ``radius``.

    ``W_ij = exp(-|I_i - I_j|^2 / (2 srgb^2) - |p_i - p_j|^2 / (2 sxy^2))`` for
    ``|p_i - p_j| < radius`` (the spatial Gaussian only when ``sxy`` is given: the radius
    already limits the kernel), colours in 0..255 units.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
    shape : (h, w), optional
        Grid the walk runs on (the CAMs' resolution); the image is area-averaged to it.
        Defaults to the image's own size.
    radius : int
        Neighbourhood radius in grid pixels.
    srgb : float
        Colour standard deviation. The walk raises ``W`` to ``beta``, so the effective
        colour std of the walk is ``srgb / sqrt(beta)`` (about 7 for the defaults; 20 did
        best among 10, 20, 30 on simulated partial CAMs of 20 MSRC-v2 images).
    sxy : float, optional
        Spatial standard deviation in grid pixels.
    device : torch device, optional
        Where the graph lives (CUDA when available by default).

    Returns
    -------
    AffinityGraph
    """
    rgb = image_to_uint8_rgb(image).astype(np.float32).transpose(2, 0, 1)
    grid = resize_scores(rgb, shape, mode="area") if shape is not None else rgb
    fmap = torch.from_numpy(np.ascontiguousarray(grid))[None].to(resolve_device(device))

    def kernel(a, b):
        return -((a - b) ** 2).sum(1) / (2.0 * srgb**2)

    logw = pairwise(fmap, radius, kernel)[0]
    if sxy is not None:
        logw = logw - _pair_sq_dist(grid.shape[1:], radius, fmap.device) / (2.0 * sxy**2)
    return AffinityGraph.from_pair_weights(grid.shape[1:], radius, torch.exp(logw))


def feature_affinity(
    features,
    *,
    radius: int = 5,
    metric: str = "l1",
    device: torch.device | str | None = None,
) -> AffinityGraph:
    """Affinity from a feature map, as AffinityNet defines it or by cosine similarity.

    Parameters
    ----------
    features : array or Tensor, shape (D, h, w) or (1, D, h, w)
    radius : int
    metric : {"l1", "cosine"}
        ``"l1"``: ``exp(-mean_d |f_i - f_j|)``, AffinityNet's affinity (Eq. 3 of the paper
        writes the L1 norm; the released code takes the channel *mean*, which we follow);
        meaningful for a trained AffinityNet's features.
        ``"cosine"``: ``max(0, cos(f_i, f_j))``; scale-free, for untrained backbone features.
    device : torch device, optional

    Returns
    -------
    AffinityGraph
    """
    f = torch.as_tensor(features).detach()
    if f.ndim == 3:
        f = f[None]
    if f.ndim != 4 or f.shape[0] != 1:
        raise ValueError(f"features: expected shape (D, h, w) or (1, D, h, w), got {tuple(f.shape)}")
    f = f.to(resolve_device(device) if device is not None else f.device, torch.float32)
    if metric == "l1":
        weights = pairwise(f, radius, lambda a, b: torch.exp(-(a - b).abs().mean(1)))
    elif metric == "cosine":
        f = torch.nn.functional.normalize(f, dim=1)
        weights = pairwise(f, radius, lambda a, b: (a * b).sum(1).clamp_min(0.0))
    else:
        raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(FEATURE_METRICS)}")
    return AffinityGraph.from_pair_weights(f.shape[-2:], radius, weights[0])


def build_affinity(
    image: np.ndarray,
    *,
    model=None,
    features=None,
    shape: tuple[int, int] | None = None,
    radius: int = 5,
    metric: str = "cosine",
    srgb: float = 20.0,
    sxy: float | None = None,
    device: torch.device | str | None = None,
) -> AffinityGraph:
    """The best affinity available: trained AffinityNet, else features, else colour.

    Parameters
    ----------
    image : ndarray, shape (H, W[, C])
        The image as stored.
    model : AffinityNet, optional
        A trained model; its own radius and feature grid (stride 8) are used and the
        image is normalised with :func:`napari_wsss.models.to_tensor` on the model's device.
    features : array or Tensor, shape (D, h, w), optional
        Backbone features (used when no model is given), see :func:`feature_affinity`.
    shape : (h, w), optional
        Grid of the colour affinity (default: the image size); ignored otherwise.
    radius, metric, srgb, sxy, device
        See :func:`feature_affinity` and :func:`colour_affinity`.

    Returns
    -------
    AffinityGraph
    """
    if model is not None:
        dev = next(model.parameters()).device
        return model.affinity_graph(to_tensor(image, device=dev))
    if features is not None:
        return feature_affinity(features, radius=radius, metric=metric, device=device)
    return colour_affinity(image, shape, radius=radius, srgb=srgb, sxy=sxy, device=device)


def random_walk(
    scores,
    affinity: AffinityGraph,
    *,
    beta: float = 8.0,
    t: int = 256,
    output_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Propagate per-class scores: ``vec(M*_c) = T^t vec(M_c)``, ``T = D^-1 W^beta``.

    Parameters
    ----------
    scores : array, shape (K, h, w)
        Class scores (CAMs, plus the background map in a background project). Resized by
        area averaging to the graph's grid when their size differs (as the paper's code
        average-pools the CAMs to the feature map).
    affinity : AffinityGraph
    beta : float
        Exponent sharpening the affinities (paper: 8).
    t : int
        Number of walk steps (paper: 256 = 2^8).
    output_shape : (H, W), optional
        Bilinear upsampling of the result (e.g. to the image); default: the graph's grid.

    Returns
    -------
    ndarray, shape (K, H, W), float32
    """
    sc = check_scores(scores)
    if t < 0 or int(t) != t:
        raise ValueError(f"t must be a non-negative integer, got {t!r}")
    sc = resize_scores(sc, affinity.shape, mode="area")
    m = sc.reshape(sc.shape[0], -1).T.astype(np.float64)
    out = _propagate(affinity.transition(beta), m, int(t)).T.reshape(sc.shape).astype(np.float32)
    return resize_scores(out, output_shape) if output_shape is not None else out


def _propagate(trans: torch.Tensor, m: np.ndarray, t: int) -> np.ndarray:
    """``T^t m`` by ``t`` sparse products: scipy on CPU (several times faster than torch's
    CPU sparse kernels), torch on accelerators."""
    if trans.device.type == "cpu":
        csr = scipy.sparse.csr_matrix(
            (trans.values().numpy(), trans.col_indices().numpy(), trans.crow_indices().numpy()),
            shape=tuple(trans.shape),
        )
        for _ in range(t):
            m = csr @ m
        return m
    x = torch.from_numpy(m).to(trans.device, trans.dtype)
    for _ in range(t):
        x = trans @ x
    return x.cpu().numpy()


def random_walk_refine(
    cams,
    classes,
    affinity: AffinityGraph,
    *,
    background: int | None = None,
    bg_method: str = "power",
    alpha: float = 16.0,
    threshold: float = 0.2,
    beta: float = 8.0,
    t: int = 256,
    output_shape: tuple[int, int] | None = None,
    void=None,
) -> RefineResult:
    """CAMs of an image's labels -> propagated scores and hard mask.

    Parameters
    ----------
    cams : array, shape (K, H, W)
        Normalised CAMs of the image's labels (typically at image size).
    classes : sequence of int, length K
    affinity : AffinityGraph
        From :func:`colour_affinity`, :func:`feature_affinity` or
        ``AffinityNet.affinity_graph``.
    background : int or None
        ``Project.background``; the background map is made at the CAMs' resolution
        before pooling (paper: ``alpha = 16``).
    bg_method, alpha, threshold
        See :func:`~napari_wsss.refine.background.scores_with_background`.
    beta, t
        Walk parameters, see :func:`random_walk`.
    output_shape : (H, W), optional
        Output size; default: the CAMs' size.
    void : array of bool, shape output_shape, optional
        Pixels to mark 255.

    Returns
    -------
    RefineResult
    """
    scores, cls = scores_with_background(
        cams, classes, background=background, method=bg_method, alpha=alpha, threshold=threshold
    )
    shape = tuple(output_shape) if output_shape is not None else scores.shape[1:]
    walked = random_walk(scores, affinity, beta=beta, t=t, output_shape=shape)
    return RefineResult(walked, cls, labels_from_scores(walked, cls, void=void))


def _pair_sq_dist(shape, radius: int, device) -> torch.Tensor:
    """Squared grid distance of every pair, in :func:`pair_indices` order."""
    ind_from, ind_to = pair_indices(shape, radius)
    w = int(shape[1])
    dy = ind_to // w - ind_from // w
    dx = ind_to % w - ind_from % w
    return torch.from_numpy((dy * dy + dx * dx).astype(np.float32)).to(device)
