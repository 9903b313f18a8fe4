"""Stroke-seeded refinement of one image: the annotator's strokes as hard constraints.

A *seed map* ``(H, W)`` uint8 holds the annotator's strokes as stored in the corrections:
class indices ``0..253``, ``254`` = painted "ignore" (void: not a seed for any class),
``255`` = not painted. Two refinements take the seeds as hard constraints and the CAM prior
for the unpainted pixels:

* :func:`seeded_random_walk` -- Grady's random walker with priors (L. Grady, "Multilabel
  Random Walker Image Segmentation Using Prior Models", CVPR 2005, Eq. 11; the prior-free walk
  is Grady, PAMI 2006). On the 4-connected image graph with weights
  ``w_ij = exp(-beta |I_i - I_j|^2 / mean_e |I_e|^2)`` (colour differences normalised by their
  mean over the image's edges, so ``beta`` does not depend on the contrast) and Laplacian
  ``L = D - W``, the class probabilities ``X`` of the unseeded pixels ``U`` solve, for every
  class at once,

  ``(L_UU + gamma I) X_U = -L_UM X_M + gamma P_U``,

  with ``X_M`` the one-hot seeds and ``P`` the prior probabilities (the scores normalised per
  pixel). ``gamma`` weighs the prior against the edges: ``gamma -> 0`` is the plain random
  walker (the seeds decide everything reachable), a large ``gamma`` returns the prior. Inside a
  uniform region a stroke's influence decays over about ``1 / sqrt(gamma)`` grid pixels (the
  screened Laplace equation): the default ``1e-3`` reaches ~30 pixels of the working grid (a
  fifth of its 160 px long side), so one stroke fills a typical object and the prior decides
  far from any stroke. Each row of ``X`` sums to 1. The matrix is sparse, symmetric positive definite; it is factorised once
  (SuperLU) and solved for all classes.
* :func:`seeded_crf` -- the dense CRF (:func:`~napari_wsss.refine.crf.dense_crf`) with the unary
  clamped at the seeds (a one-hot score there, so the unary is ``-log(clip)`` for every other
  class) and the seeds' marginals set one-hot after inference.

:func:`seeded_refine` does the pipeline's background handling, adds stroke classes that are not
among the image's labels, runs either refinement at a *working resolution* (long side
``work_side``) and brings the probabilities back to image size with the pipeline's edge-aware
upsampler (:func:`~napari_wsss.refine.upsample.edge_aware_upsample`, the tiled fast guided
filter with the image as colour guide; its :class:`~napari_wsss.refine.upsample.Guide` is built
once per image). Seeds are then
imposed at full resolution, so every painted pixel keeps its class exactly.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sla

from ..conventions import CAM_THRESHOLD, IGNORE, IGNORE_PAINTED
from ._utils import check_scores, resize_scores
from .background import RefineResult, scores_with_background
from .crf import default_crf, dense_crf
from .upsample import Guide, area_downsample, edge_aware_upsample

__all__ = [
    "NOT_PAINTED",
    "SeededRefiner",
    "PAINTED_IGNORE",
    "SEEDED_METHODS",
    "edge_weights",
    "seed_indices",
    "seeded_crf",
    "seeded_random_walk",
    "seeded_refine",
]

#: Seed-map value of a pixel the annotator did not paint.
NOT_PAINTED = IGNORE
#: Seed-map value of a pixel painted with the "ignore" brush (void, not a seed).
PAINTED_IGNORE = IGNORE_PAINTED
SEEDED_METHODS = ("rw", "crf")


def edge_weights(image: np.ndarray, *, beta: float = 4.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges of the 4-connected pixel graph and their weights.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        Any numeric image; colours are compared as float.
    beta : float
        ``w = exp(-beta d / mean(d))`` with ``d = |I_i - I_j|^2`` (summed over channels).

    Returns
    -------
    i, j : ndarray, shape (E,), int64
        Row-major flat indices: the horizontal edges ``(y, x)-(y, x+1)`` first, then the
        vertical ``(y, x)-(y+1, x)``.
    w : ndarray, shape (E,), float64
        Weights in ``(0, 1]`` (at least 1e-6, so the graph stays connected).
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3:
        raise ValueError(f"image: expected shape (H, W) or (H, W, C), got {np.asarray(image).shape}")
    h, w = img.shape[:2]
    idx = np.arange(h * w, dtype=np.int64).reshape(h, w)
    dh = ((img[:, 1:] - img[:, :-1]) ** 2).sum(-1).reshape(-1)
    dv = ((img[1:] - img[:-1]) ** 2).sum(-1).reshape(-1)
    d = np.concatenate([dh, dv])
    i = np.concatenate([idx[:, :-1].reshape(-1), idx[:-1].reshape(-1)])
    j = np.concatenate([idx[:, 1:].reshape(-1), idx[1:].reshape(-1)])
    scale = float(d.mean()) if d.size and d.mean() > 0 else 1.0
    return i, j, np.maximum(np.exp(-beta * d / scale), 1e-6)


def seeded_random_walk(
    image: np.ndarray,
    prior,
    seeds: np.ndarray,
    *,
    gamma: float = 1e-3,
    beta: float = 4.0,
) -> np.ndarray:
    """Random walker with hard seeds and a prior (Grady 2005), solved exactly.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        Edge weights come from this (see :func:`edge_weights`).
    prior : array, shape (K, H, W)
        Non-negative class scores; normalised per pixel to probabilities (uniform where a
        pixel's scores are all zero).
    seeds : ndarray, shape (H, W), int
        Slice index ``0..K-1`` of a seed pixel, ``-1`` elsewhere.
    gamma : float
        Prior weight (> 0).
    beta : float
        Edge sharpness.

    Returns
    -------
    ndarray, shape (K, H, W), float64
        Class probabilities (sum 1 per pixel); exactly one-hot at the seeds.
    """
    p = _probabilities(prior)
    k, h, w = p.shape
    seeds = np.asarray(seeds)
    if seeds.shape != (h, w):
        raise ValueError(f"seeds: expected shape {(h, w)}, got {seeds.shape}")
    if seeds.size and (seeds.min() < -1 or seeds.max() >= k):
        raise ValueError(f"seeds: slice indices must be in -1..{k - 1}, got {seeds.min()}..{seeds.max()}")
    if gamma <= 0:
        raise ValueError(f"gamma must be positive, got {gamma}")
    n = h * w
    i, j, wt = edge_weights(image, beta=beta)
    if np.asarray(image).shape[:2] != (h, w):
        raise ValueError(f"image shape {np.asarray(image).shape[:2]} != prior shape {(h, w)}")
    lap = sp.coo_matrix((np.r_[-wt, -wt], (np.r_[i, j], np.r_[j, i])), shape=(n, n)).tocsr()
    lap = lap + sp.diags(-np.asarray(lap.sum(axis=1)).reshape(-1))
    flat = seeds.reshape(-1)
    marked = flat >= 0
    out = p.reshape(k, n).T.copy()  # (n, K)
    out[marked] = np.eye(k)[flat[marked]]
    free = np.flatnonzero(~marked)
    if free.size:
        seeded = np.flatnonzero(marked)
        a = (lap[free][:, free] + gamma * sp.identity(free.size)).tocsc()
        rhs = gamma * out[free]
        if seeded.size:
            rhs -= lap[free][:, seeded] @ out[seeded]
        lu = sla.splu(a, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                      options={"SymmetricMode": True})
        out[free] = lu.solve(rhs)
    return out.T.reshape(k, h, w)


def seeded_crf(image: np.ndarray, scores, seeds: np.ndarray, *, clip: float = 1e-8, **crf_kwargs) -> np.ndarray:
    """Dense CRF with the unary clamped at the seeds.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
    scores : array, shape (K, H, W)
        Non-negative class scores (as :func:`~napari_wsss.refine.crf.dense_crf` takes).
    seeds : ndarray, shape (H, W), int
        Slice index of a seed pixel, ``-1`` elsewhere.
    clip : float
        Score of the other classes at a seed (unary ``-log(clip)``), and the lower clip of all
        scores.
    **crf_kwargs
        Kernels of :func:`~napari_wsss.refine.crf.dense_crf`.

    Returns
    -------
    ndarray, shape (K, H, W), float32
        Marginals, one-hot at the seeds.
    """
    sc = check_scores(scores).copy()
    k = sc.shape[0]
    seeds = np.asarray(seeds)
    if seeds.shape != sc.shape[1:]:
        raise ValueError(f"seeds: expected shape {sc.shape[1:]}, got {seeds.shape}")
    marked = seeds >= 0
    onehot = np.eye(k, dtype=np.float32)[:, seeds[marked]]
    sc[:, marked] = onehot
    q = dense_crf(image, sc, clip=clip, **crf_kwargs)
    q[:, marked] = onehot
    return q


def seed_indices(seed_map: np.ndarray, classes) -> np.ndarray:
    """Seed map (class indices, 254 / 255 not seeds) -> slice indices into ``classes``, -1 elsewhere."""
    cls = np.asarray(classes, dtype=np.int64)
    lut = np.full(256, -1, np.int64)
    lut[cls] = np.arange(cls.size)
    lut[PAINTED_IGNORE] = lut[NOT_PAINTED] = -1
    out = lut[np.asarray(seed_map, dtype=np.uint8)]
    painted = np.asarray(seed_map) < PAINTED_IGNORE
    if np.any(out[painted] < 0):
        missing = sorted(set(np.unique(np.asarray(seed_map)[painted]).tolist()) - set(cls.tolist()))
        raise ValueError(f"seed map: classes {missing} are not among the score classes {cls.tolist()}")
    return out


class SeededRefiner:
    """Stroke-seeded refinement of one image, with the per-image work done once.

    Construction resizes the image and the prior to the working resolution; each call with a
    seed map (the strokes so far) then builds the walk, solves and upsamples, which is what the
    panel runs after every pen-up. ``SeededRefiner(...)(seed_map)`` is :func:`seeded_refine`;
    see there for the parameters.
    """

    def __init__(
        self,
        image: np.ndarray,
        cams,
        labels,
        *,
        background: int | None = None,
        bg_method: str = "threshold",
        threshold: float = CAM_THRESHOLD,
        alpha: float = 16.0,
        prior=None,
        method: str = "rw",
        work_side: int | None = 160,
        gamma: float = 1e-3,
        beta: float = 4.0,
        crf: dict | None = None,
    ):
        if method not in SEEDED_METHODS:
            raise ValueError(f"unknown seeded method {method!r}; valid: {', '.join(SEEDED_METHODS)}")
        self.image = np.asarray(image)
        h, w = self.shape = self.image.shape[:2]
        scale = 1.0 if work_side is None else min(1.0, work_side / max(h, w))
        self.grid = (max(1, round(h * scale)), max(1, round(w * scale)))
        _, self.classes = scores_with_background(np.zeros((len(labels), 1, 1), np.float32), labels,
                                                 background=background, method=bg_method)
        if prior is None:
            cams = np.asarray(cams.detach().cpu() if hasattr(cams, "detach") else cams, dtype=np.float32)
            if cams.ndim != 3:
                raise ValueError(f"cams: expected an array of shape (K, H, W), got shape {cams.shape}")
            cams = (resize_scores(cams, self.grid, mode="area") if cams.shape[0]
                    else np.zeros((0, *self.grid), np.float32))
            scores, _ = scores_with_background(cams, labels, background=background, method=bg_method,
                                               alpha=alpha, threshold=threshold)
        else:
            scores = resize_scores(check_scores(prior, "prior"), self.grid, mode="area")
            if scores.shape[0] != self.classes.size:
                raise ValueError(f"prior: {scores.shape[0]} slices for classes {self.classes.tolist()}")
        self.scores = scores
        if self.grid == (h, w):
            self.small, self.guide = self.image, None
        else:
            self.small = area_downsample(self.image, self.grid)
            self.guide = Guide(self.image, self.grid, low=self.small)  # colour statistics, once
        self.method, self.gamma, self.beta = method, gamma, beta
        if method == "crf" and crf is None:
            crf = default_crf(background)
        self.crf = crf or {}
        # Working cell of every image row / column, and each cell's pixel count.
        self._rows = (np.arange(h) * self.grid[0]) // h
        self._cols = (np.arange(w) * self.grid[1]) // w
        self._cell_area = np.outer(np.bincount(self._rows), np.bincount(self._cols)).reshape(-1)

    def _small_seeds(self, seeds: np.ndarray, k: int) -> np.ndarray:
        """Full-size slice-index seeds -> working grid: a cell is a seed of the class painted on
        at least half of its pixels; a class covering no cell that much seeds its best-covered
        cell (a thin stroke still counts)."""
        if self.grid == self.shape:
            return seeds
        ys, xs = np.nonzero(seeds >= 0)
        cell = self._rows[ys] * self.grid[1] + self._cols[xs]
        n = self.grid[0] * self.grid[1]
        frac = np.bincount(seeds[ys, xs] * n + cell, minlength=k * n).reshape(k, n) / self._cell_area
        best = frac.argmax(0)
        out = np.where(frac[best, np.arange(n)] >= 0.5, best, -1)
        for c in np.unique(seeds[ys, xs]):
            if not np.any(out == c):
                out[int(frac[c].argmax())] = c
        return out.reshape(self.grid)

    def __call__(self, seed_map: np.ndarray) -> RefineResult:
        seed_map = np.asarray(seed_map)
        if seed_map.shape != self.shape:
            raise ValueError(f"seed map: expected shape {self.shape}, got {seed_map.shape}")
        cls, scores = self.classes, self.scores
        extra = sorted(set(np.unique(seed_map[seed_map < PAINTED_IGNORE]).tolist()) - set(cls.tolist()))
        if extra:
            scores = np.concatenate([scores, np.zeros((len(extra), *self.grid), np.float32)])
            cls = np.concatenate([cls, np.asarray(extra, np.int64)])
        seeds = seed_indices(seed_map, cls)
        k = cls.size
        small_seeds = self._small_seeds(seeds, k)
        if self.method == "rw":
            probs = seeded_random_walk(self.small, scores, small_seeds, gamma=self.gamma, beta=self.beta)
        else:
            probs = seeded_crf(self.small, scores, small_seeds, **self.crf)
        probs = probs.astype(np.float32)
        if self.guide is not None:
            # A local linear function of the colours: may overshoot [0, 1] near edges; clipped
            # and renormalised so the scores stay probabilities (the arg-max is unchanged
            # wherever a class is positive).
            probs = edge_aware_upsample(probs, self.guide)
            np.maximum(probs, 0.0, out=probs)
            probs /= np.maximum(probs.sum(0, keepdims=True), 1e-12)
        marked = seeds >= 0
        probs[:, marked] = np.eye(k, dtype=np.float32)[:, seeds[marked]]
        mask = cls.astype(np.uint8)[probs.argmax(0)]
        mask[seed_map == PAINTED_IGNORE] = 255
        return RefineResult(probs, cls, mask)


def seeded_refine(image: np.ndarray, cams, labels, seed_map: np.ndarray, **kwargs) -> RefineResult:
    """An image's CAMs + the annotator's strokes -> refined probabilities and mask.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
    cams : array, shape (K, h, w)
        Normalised CAMs of the image's labels (any resolution; area-resized to the working grid).
    labels : sequence of int, length K
        Class index of each CAM.
    seed_map : ndarray, shape (H, W), uint8
        The strokes: class indices ``0..253``, ``254`` painted ignore, ``255`` not painted.
        Stroke classes missing from ``labels`` get a zero prior.
    background, bg_method, threshold, alpha
        Background handling as in the pipeline
        (:func:`~napari_wsss.refine.background.scores_with_background`; the pipeline uses the
        ``"threshold"`` method with ``PipelineConfig.cam_threshold``, the default 0.25 here).
    prior : array, shape (K', H, W), optional
        Non-negative scores used instead of the ones made from ``cams`` (e.g. the CRF's
        probabilities), in the slice order ``scores_with_background`` gives for ``labels``.
    method : {"rw", "crf"}
        :func:`seeded_random_walk` or :func:`seeded_crf`.
    work_side : int or None
        Long side of the working resolution (``None``: the image's own); the result is brought
        to image size by :func:`~napari_wsss.refine.upsample.edge_aware_upsample`.
    gamma, beta
        Random-walk parameters (:func:`seeded_random_walk`).
    crf : dict, optional
        CRF kernels (default: the pipeline's for this project kind).

    Returns
    -------
    RefineResult
        ``scores`` (K'', H, W), ``classes``, ``mask`` (H, W) uint8: every stroke pixel has its
        class, painted-ignore pixels are 255.
    """
    return SeededRefiner(image, cams, labels, **kwargs)(seed_map)


def _probabilities(prior) -> np.ndarray:
    """Scores normalised per pixel (float64); uniform where a pixel's scores are all zero."""
    p = check_scores(prior, "prior").astype(np.float64)
    if p.min() < 0:
        raise ValueError("prior: scores must be non-negative")
    total = p.sum(0, keepdims=True)
    return np.where(total > 0, p / np.where(total > 0, total, 1.0), 1.0 / p.shape[0])
