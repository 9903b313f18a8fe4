"""Working-resolution <-> full-resolution resampling for big images, in bounded memory.

Refinement (dense CRF, random walk) runs at a *working resolution*; its class scores are
brought back to the full image by an edge-aware upsampler guided by the full-resolution
image, so mask boundaries follow the image's edges instead of the blocky / blurry boundary
of plain bilinear upsampling.

The upsampler is the *fast guided filter* (He & Sun, "Fast Guided Filter", arXiv 1505.00996,
2015) with a colour guide (He, Sun & Tang, "Guided Image Filtering", TPAMI 2013, Eqs. 19-21):
at the scores' resolution each class score ``p`` is modelled in every ``(2r+1)^2`` window as
a linear function of the colour guide, ``p ~ a . I + b`` (``a`` from the window's colour
covariance regularised by ``eps``, ``b`` the rest), the window-averaged ``a, b`` are
upsampled bilinearly, and the full-resolution output is ``a . I_full + b``: where a score
edge sits on a colour edge, the output steps exactly at the full-resolution colour edge.

Every full-resolution step runs in tiles (``tile x tile`` pixels at a time), so memory beyond
the input and output arrays is ``O(tile^2 K)``: :func:`upsample_labels` of a 144 Mpx image
never holds a full-size float array.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ._utils import check_classes, check_scores, image_to_uint8_rgb

__all__ = ["Guide", "area_downsample", "edge_aware_upsample", "upsample_labels", "working_shape"]

#: Default box radius (in score pixels) and regulariser (colours in [0, 1]) of the guided
#: filter: ``bench/pipeline.py --edges`` (two CCP photos at 3000 x 2000, CRF at long side
#: 1024) gave boundary F-score 0.589 against the full-resolution CRF with radius 4, 0.578
#: with 2, 0.568 with 1 (eps 1e-3; eps 1e-4 / 1e-2 at radius 2: 0.573 / 0.576).
RADIUS = 4
EPS = 1e-3
#: Side of the full-resolution tiles.
TILE = 1024


def working_shape(h: int, w: int, max_side: int | None) -> tuple[int, int]:
    """``(h, w)`` shrunk so its long side is at most ``max_side`` (unchanged if it already
    is, or if ``max_side`` is ``None``); rounded as the pipeline's inference size is."""
    if not max_side or max(h, w) <= max_side:
        return int(h), int(w)
    scale = max_side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def area_downsample(image: np.ndarray, shape: tuple[int, int], *, band: int = 256) -> np.ndarray:
    """Area-average an image to ``shape`` as uint8 RGB, in bounded memory.

    The same pixel bins as ``F.interpolate(mode="area")`` (adaptive average pooling), done
    separably over bands of ``band`` columns, so only ``H x band`` floats are held at once
    (not the full image as floats).

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        Any dtype :func:`napari_wsss.models.to_rgb_float` takes (converted to uint8 RGB first;
        uint8 RGB is not copied).
    shape : (h, w)
        Output size, at most the image's.

    Returns
    -------
    ndarray, shape (h, w, 3), uint8
    """
    rgb = image_to_uint8_rgb(image)
    return np.clip(np.rint(_area_float(rgb, shape, band)), 0, 255).astype(np.uint8)


def _area_float(rgb: np.ndarray, shape: tuple[int, int], band: int = 256) -> np.ndarray:
    """:func:`area_downsample` of uint8 RGB without the final rounding: ``(h, w, 3)`` float32."""
    big_h, big_w = rgb.shape[:2]
    h, w = int(shape[0]), int(shape[1])
    if h > big_h or w > big_w or h < 1 or w < 1:
        raise ValueError(f"area_downsample: cannot shrink {(big_h, big_w)} to {(h, w)}")
    rows = np.empty((h, big_w, 3), np.float32)
    for x0 in range(0, big_w, band):
        x1 = min(big_w, x0 + band)
        cols = torch.from_numpy(np.ascontiguousarray(rgb[:, x0:x1])).reshape(big_h, -1).T.float()
        pooled = F.adaptive_avg_pool1d(cols[None], h)[0]  # (bw * 3, h)
        rows[:, x0:x1] = pooled.T.reshape(h, x1 - x0, 3).numpy()
    t = torch.from_numpy(rows).permute(0, 2, 1).reshape(1, h * 3, big_w)
    return F.adaptive_avg_pool1d(t, w)[0].reshape(h, 3, w).permute(0, 2, 1).contiguous().numpy()


def _box(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over the ``(2r+1)^2`` window of each pixel, clipped at the borders: ``(C, h, w)``.

    Separable (the clipped window is a rectangle: its mean is the mean of row means), each
    pass a sum of ``2r + 1`` shifted slices over the count of in-image pixels; the same
    values as ``avg_pool2d(..., count_include_pad=False)``, faster on CPU."""
    for dim in (2, 1):
        n = x.shape[dim]
        padded = F.pad(x, (r, r) if dim == 2 else (0, 0, r, r))
        total = padded.narrow(dim, 0, n).clone()
        for k in range(1, 2 * r + 1):
            total += padded.narrow(dim, k, n)
        i = torch.arange(n)
        count = ((i + r).clamp(max=n - 1) - (i - r).clamp(min=0) + 1).to(x.dtype)
        x = total / count.view([-1 if d == dim else 1 for d in range(3)])
    return x


class Guide:
    """A full-resolution image prepared to guide the upsampling of ``(K, *shape)`` scores.

    The colour statistics of the guided filter depend only on the image, so several score
    stacks of one image (the CRF's, the random walk's) share one ``Guide``: pass it as the
    ``image`` of :func:`edge_aware_upsample` / :func:`upsample_labels`.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        The full-resolution image (converted to uint8 RGB; uint8 RGB is not copied).
    shape : (h, w)
        Size of the scores to upsample, at most the image's.
    radius, eps
        See :func:`edge_aware_upsample`.
    low : ndarray, shape (h, w[, C]), optional
        The image already area-averaged to ``shape`` (e.g. the pipeline's working image);
        computed from ``image`` when not given.
    """

    def __init__(self, image, shape, *, radius: int = RADIUS, eps: float = EPS, low=None):
        if eps <= 0:
            raise ValueError(f"eps must be positive, got {eps}")
        self.rgb = image_to_uint8_rgb(image)
        self.big = self.rgb.shape[:2]
        self.shape = (int(shape[0]), int(shape[1]))
        if self.shape[0] > self.big[0] or self.shape[1] > self.big[1]:
            raise ValueError(f"scores {self.shape} are larger than the image {self.big}: nothing to upsample")
        if low is None:
            low = _area_float(self.rgb, self.shape)
        else:
            low = image_to_uint8_rgb(low).astype(np.float32)
            if low.shape[:2] != self.shape:
                raise ValueError(f"low-resolution guide {low.shape[:2]} != score shape {self.shape}")
        # He et al. 2013, Eq. 19-21; the window radius is clipped so the window fits.
        self.r = max(0, min(int(radius), (min(self.shape) - 1) // 2))
        self.eps = float(eps)
        g = torch.from_numpy(low / 255.0).permute(2, 0, 1).contiguous()
        h, w = self.shape
        self.g = g
        self.mean_i = _box(g, self.r)  # (3, h, w)
        var_i = _box((g[:, None] * g[None]).reshape(9, h, w), self.r).reshape(3, 3, h, w)
        var_i -= self.mean_i[:, None] * self.mean_i[None]
        self.inv = torch.linalg.inv(var_i.permute(2, 3, 0, 1) + self.eps * torch.eye(3))  # (h, w, 3, 3)

    def coefficients(self, scores: np.ndarray) -> torch.Tensor:
        """Window-averaged coefficients ``(K, 4, h, w)`` of ``(K, h, w)`` scores: ``a`` (3
        colours) then ``b``, one class at a time (temporaries of a few ``(4, h, w)``)."""
        if tuple(scores.shape[1:]) != self.shape:
            raise ValueError(f"scores {tuple(scores.shape[1:])} != the guide's score shape {self.shape}")
        g, r = self.g, self.r
        coef = torch.empty((scores.shape[0], 4, *self.shape), dtype=torch.float32)
        for k, score in enumerate(scores):
            p = torch.from_numpy(np.ascontiguousarray(score, dtype=np.float32))[None]  # (1, h, w)
            stats = _box(torch.cat([p, g * p]), r)  # mean_p, corr_ip (3)
            cov_ip = stats[1:] - self.mean_i * stats[:1]
            a = torch.einsum("hwij,jhw->ihw", self.inv, cov_ip)
            b = stats[0] - (a * self.mean_i).sum(0)
            coef[k] = _box(torch.cat([a, b[None]]), r)
        return coef


def _bilinear_tile(src: torch.Tensor, big: tuple[int, int], ys: slice, xs: slice) -> torch.Tensor:
    """The tile ``ys, xs`` of ``src`` ``(C, h, w)`` bilinearly resized to ``big``: ``(C, ty, tx)``.

    ``grid_sample`` at the pixel centres ``F.interpolate(align_corners=False)`` samples
    (``border`` padding is its clamping); each pixel's position is computed from its own
    index, so the value does not depend on the tiling."""
    gy = (2.0 * (torch.arange(ys.start, ys.stop, dtype=torch.float64) + 0.5) / big[0] - 1.0).float()
    gx = (2.0 * (torch.arange(xs.start, xs.stop, dtype=torch.float64) + 0.5) / big[1] - 1.0).float()
    grid = torch.stack([gx[None].expand(len(gy), -1), gy[:, None].expand(-1, len(gx))], -1)[None]
    return F.grid_sample(src[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0]


def _tiles(h: int, w: int, tile: int):
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            yield slice(y0, min(h, y0 + tile)), slice(x0, min(w, x0 + tile))


def _prepare(scores, image, shape, radius, eps):
    """Checked scores and what :func:`_tile_scores` needs: ``(coef (K, 4, h, w) or None,
    low-res scores tensor, full uint8 RGB or None, (H, W))``."""
    sc = check_scores(scores)
    if image is None:
        if shape is None:
            raise ValueError("give the full-resolution image (edge-aware) or an output shape (bilinear)")
        return None, torch.from_numpy(sc), None, (int(shape[0]), int(shape[1]))
    guide = image if isinstance(image, Guide) else Guide(image, sc.shape[1:], radius=radius, eps=eps)
    if shape is not None and tuple(shape) != guide.big:
        raise ValueError(f"output shape {tuple(shape)} != image shape {guide.big}")
    return guide.coefficients(sc), None, guide.rgb, guide.big


def _tile_scores(coef, low, rgb, big, ys: slice, xs: slice) -> torch.Tensor:
    """Upsampled scores ``(K, ty, tx)`` float32 of one full-resolution tile."""
    if coef is None:
        return _bilinear_tile(low, big, ys, xs)
    k = coef.shape[0]
    part = _bilinear_tile(coef.reshape(-1, *coef.shape[2:]), big, ys, xs).reshape(k, 4, ys.stop - ys.start,
                                                                                   xs.stop - xs.start)
    guide = torch.from_numpy(np.ascontiguousarray(rgb[ys, xs])).permute(2, 0, 1).float() / 255.0
    out = part[:, 3].clone()
    for c in range(3):
        out.addcmul_(part[:, c], guide[c])
    return out


def _argmax0(scores: torch.Tensor) -> torch.Tensor:
    """``scores.argmax(0)`` (first slice on ties) by K - 1 comparisons: much faster than a
    reduction over the leading dimension."""
    best, idx = scores[0].clone(), torch.zeros(scores.shape[1:], dtype=torch.long)
    for k in range(1, scores.shape[0]):
        better = scores[k] > best
        idx.masked_fill_(better, k)
        torch.maximum(best, scores[k], out=best)
    return idx


def edge_aware_upsample(
    scores,
    image: np.ndarray,
    *,
    radius: int = RADIUS,
    eps: float = EPS,
    tile: int = TILE,
) -> np.ndarray:
    """Upsample per-class scores to the image's size along the image's edges.

    Parameters
    ----------
    scores : array, shape (K, h, w)
        Class scores (probabilities, CAMs, ...) at a working resolution covering the whole
        image (the pixel grids aligned as ``F.interpolate(align_corners=False)`` aligns them).
    image : ndarray, shape (H, W) or (H, W, C), H >= h, W >= w; or Guide
        The full-resolution image, the guide (converted to uint8 RGB; area-averaged to the
        scores' grid for the low-resolution fit), or a :class:`Guide` made from it (its
        ``radius`` and ``eps`` are used).
    radius : int
        Window radius of the guided filter, in score pixels (clipped to the score size).
    eps : float
        Regulariser (colours scaled to ``[0, 1]``): smaller follows weaker colour edges,
        larger tends to plain bilinear upsampling.
    tile : int
        Side of the full-resolution tiles computed at once (memory ``~ 20 K tile^2`` bytes).

    Returns
    -------
    ndarray, shape (K, H, W), float32
        The upsampled scores. They are a local linear function of the colours, so they
        may overshoot the input range slightly near edges (not renormalised); the arg-max
        over ``K`` is the edge-aware label map (:func:`upsample_labels` gives it without the
        full-size float array).
    """
    coef, low, rgb, big = _prepare(scores, image, None, radius, eps)
    k = coef.shape[0]
    out = np.empty((k, *big), np.float32)
    for ys, xs in _tiles(*big, int(tile)):
        out[:, ys, xs] = _tile_scores(coef, low, rgb, big, ys, xs).numpy()
    return out


def upsample_labels(
    scores,
    classes,
    image: np.ndarray | None = None,
    *,
    shape: tuple[int, int] | None = None,
    radius: int = RADIUS,
    eps: float = EPS,
    tile: int = TILE,
) -> np.ndarray:
    """Full-resolution label map of working-resolution scores, tile by tile.

    The arg-max over classes of :func:`edge_aware_upsample` when ``image`` is given, of the
    bilinearly upsampled scores (``F.interpolate(align_corners=False)``) to ``shape``
    otherwise. Ties go to the first slice, as in
    :func:`~napari_wsss.refine.background.labels_from_scores`.

    Parameters
    ----------
    scores : array, shape (K, h, w)
    classes : sequence of int, length K
        Project class index of each slice.
    image : ndarray, shape (H, W[, C]), or Guide, optional
        The guide of the edge-aware upsampling.
    shape : (H, W), optional
        Output size without a guide (bilinear); must match the image when both are given.
    radius, eps, tile
        See :func:`edge_aware_upsample`.

    Returns
    -------
    ndarray, shape (H, W), uint8
        Project class indices.
    """
    coef, low, rgb, big = _prepare(scores, image, shape, radius, eps)
    k = coef.shape[0] if coef is not None else low.shape[0]
    lut = torch.from_numpy(check_classes(classes, k).astype(np.uint8))
    out = np.empty(big, np.uint8)
    for ys, xs in _tiles(*big, int(tile)):
        out[ys, xs] = lut[_argmax0(_tile_scores(coef, low, rgb, big, ys, xs))].numpy()
    return out
