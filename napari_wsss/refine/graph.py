"""Pixel pairs within a radius and the sparse affinity graph the random walk runs on.

AffinityNet (Ahn & Kwak, CVPR 2018, Sec. 3.2 / 3.3) only relates pixels closer than a
radius ``gamma`` (``radius``, 5 at feature resolution in the paper and its code) and
treats the affinity as symmetric. We therefore enumerate each unordered pair once, by
"half-disc" offsets ``(dy, dx)`` with ``dy > 0``, or ``dy == 0`` and ``dx > 0``, and
``dy^2 + dx^2 < radius^2`` -- the same offsets as the released code
(``psa/tool/pyutils.py`` ``get_indices_of_pairs``). Unlike that code we do not crop the
source pixels to an inner window: every in-bounds pair is kept, so pixels near the image
border have all their neighbours too.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["pair_offsets", "pair_indices", "pairwise", "AffinityGraph"]


def pair_offsets(radius: int) -> list[tuple[int, int]]:
    """Half-disc offsets ``(dy, dx)``: one of each ``±d`` pair with ``0 < |d|^2 < radius^2``.

    For ``radius = 5`` there are 34 offsets (68 neighbours per pixel).
    """
    r = int(radius)
    if r != radius or r < 2:
        raise ValueError(f"radius must be an integer >= 2, got {radius!r}")
    offsets = [(0, dx) for dx in range(1, r)]
    offsets += [(dy, dx) for dy in range(1, r) for dx in range(-r + 1, r) if dy * dy + dx * dx < r * r]
    return offsets


def pair_indices(shape: tuple[int, int], radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices ``(i, j)`` of every unordered pixel pair closer than ``radius``.

    Parameters
    ----------
    shape : (h, w)
        Grid size (the feature map, for AffinityNet).
    radius : int

    Returns
    -------
    ind_from, ind_to : ndarray, shape (P,), int64
        Row-major flat indices into an ``(h, w)`` grid, grouped by offset in the order of
        :func:`pair_offsets`; ``ind_to = ind_from + dy * w + dx``.
    """
    h, w = int(shape[0]), int(shape[1])
    if h < 1 or w < 1:
        raise ValueError(f"shape must be positive, got {shape}")
    grid = np.arange(h * w, dtype=np.int64).reshape(h, w)
    froms, tos = [], []
    for dy, dx in pair_offsets(radius):
        x0, x1 = max(0, -dx), min(w, w - dx)
        if dy >= h or x0 >= x1:
            continue
        src = grid[: h - dy, x0:x1]
        froms.append(src.reshape(-1))
        tos.append((src + dy * w + dx).reshape(-1))
    if not froms:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(froms), np.concatenate(tos)


def pairwise(fmap: torch.Tensor, radius: int, fn) -> torch.Tensor:
    """Apply ``fn(a, b)`` to every pair of :func:`pair_indices` without gathering indices.

    Parameters
    ----------
    fmap : Tensor, shape (B, C, h, w)
    radius : int
    fn : callable
        ``fn(a, b) -> (B, n, m)`` for the aligned ``(B, C, n, m)`` windows ``a`` (source
        pixels) and ``b`` (source shifted by one offset). Differentiable if ``fn`` is.

    Returns
    -------
    Tensor, shape (B, P)
        Values in the order of :func:`pair_indices` ``((h, w), radius)``.
    """
    if fmap.ndim != 4:
        raise ValueError(f"expected a (B, C, h, w) feature map, got shape {tuple(fmap.shape)}")
    h, w = fmap.shape[-2:]
    out = []
    for dy, dx in pair_offsets(radius):
        x0, x1 = max(0, -dx), min(w, w - dx)
        if dy >= h or x0 >= x1:
            continue
        a = fmap[:, :, : h - dy, x0:x1]
        b = fmap[:, :, dy:, x0 + dx : x1 + dx]
        out.append(fn(a, b).flatten(1))
    if not out:
        return fmap.new_zeros((fmap.shape[0], 0))
    return torch.cat(out, dim=1)


@dataclass
class AffinityGraph:
    """Symmetric affinities between pixel pairs of an ``(h, w)`` grid.

    Attributes
    ----------
    shape : (h, w)
    radius : int
    ind_from, ind_to : Tensor, shape (P,), int64
        Each unordered pair once (see :func:`pair_indices`).
    weights : Tensor, shape (P,), float
        Affinity ``W_ij`` in ``[0, 1]``. The self-affinity ``W_ii`` is 1 (as in the paper's
        code, where ``exp(-0) = 1``) and is not stored.
    """

    shape: tuple[int, int]
    radius: int
    ind_from: torch.Tensor
    ind_to: torch.Tensor
    weights: torch.Tensor

    def __post_init__(self):
        n = self.ind_from.numel()
        if self.ind_to.numel() != n or self.weights.numel() != n:
            raise ValueError(
                f"AffinityGraph: ind_from, ind_to, weights differ in length "
                f"({n}, {self.ind_to.numel()}, {self.weights.numel()})"
            )
        w = self.weights
        if n and (not torch.isfinite(w).all() or w.min() < 0):
            raise ValueError("AffinityGraph: weights must be finite and non-negative")

    @classmethod
    def from_pair_weights(cls, shape, radius, weights, *, device=None) -> "AffinityGraph":
        """Graph from weights ordered as :func:`pair_indices` ``(shape, radius)``."""
        ind_from, ind_to = pair_indices(shape, radius)
        weights = torch.as_tensor(weights)
        device = weights.device if device is None else torch.device(device)
        return cls(
            (int(shape[0]), int(shape[1])),
            int(radius),
            torch.from_numpy(ind_from).to(device),
            torch.from_numpy(ind_to).to(device),
            weights.reshape(-1).to(device),
        )

    @property
    def num_nodes(self) -> int:
        return self.shape[0] * self.shape[1]

    def transition(self, beta: float = 8.0, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Sparse transition matrix ``T = D^-1 W^beta`` (CSR, ``(N, N)``).

        ``W^beta`` is the element-wise power (including the unit diagonal) and ``D`` the
        diagonal matrix of its row sums, so every row of ``T`` sums to 1.
        """
        if beta <= 0:
            raise ValueError(f"beta must be positive, got {beta}")
        n = self.num_nodes
        dev = self.weights.device
        wb = self.weights.to(dtype).pow(beta)
        diag = torch.arange(n, device=dev)
        rows = torch.cat([self.ind_from, self.ind_to, diag])
        cols = torch.cat([self.ind_to, self.ind_from, diag])
        vals = torch.cat([wb, wb, torch.ones(n, dtype=dtype, device=dev)])
        degree = torch.zeros(n, dtype=dtype, device=dev).index_add_(0, rows, vals)
        vals = vals / degree[rows]
        coo = torch.sparse_coo_tensor(
            torch.stack([rows, cols]), vals, (n, n), check_invariants=False
        ).coalesce()
        with warnings.catch_warnings():  # "sparse CSR support is in beta state"
            warnings.simplefilter("ignore", UserWarning)
            return coo.to_sparse_csr()
