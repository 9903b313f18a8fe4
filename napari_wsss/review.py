"""Review order: which image the annotator should look at next.

Each image gets an *uncertainty score* from the proposals already stored in the project: the
share of its pixels on which the refinement stages disagree (CAM, dense CRF and random walk by
default; see :func:`disagreement`). Where the three stages agree the proposal is likely right;
where they disagree a correction changes most. :func:`review_order` lists the unreviewed images
most uncertain first (``order="uncertainty"``) or in file order (``order="file"``).

Qt-free: the panel's "next unreviewed" calls :func:`review_order`; ``bench/effort.py`` measures
whether correcting images in this order beats a random order at the same budget.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .conventions import IGNORE

__all__ = ["ORDERS", "REVIEW_STAGES", "UNREVIEWED", "disagreement", "image_uncertainty", "review_order"]

#: Orders :func:`review_order` knows.
ORDERS = ("uncertainty", "file")
#: Stages whose disagreement is the uncertainty score.
REVIEW_STAGES = ("cam", "crf", "rw")
#: Statuses of images still to review.
UNREVIEWED = ("new", "prelabelled")


def disagreement(masks: Sequence[np.ndarray]) -> float:
    """Share of pixels where the masks do not all agree, in ``[0, 1]``.

    Parameters
    ----------
    masks : sequence of ndarray, shape (H, W)
        Two or more masks of one image (class indices, 255 = void). A pixel counts when at
        least two masks give it a class; it disagrees when those classes are not all equal.

    Returns
    -------
    float
        0 when fewer than two masks are given or no pixel has two classes.
    """
    arrs = [np.asarray(m) for m in masks]
    if len(arrs) < 2:
        return 0.0
    shape = arrs[0].shape
    for a in arrs[1:]:
        if a.shape != shape:
            raise ValueError(f"masks differ in shape: {shape} vs {a.shape}")
    stack = np.stack(arrs).astype(np.int16)
    valid = stack != IGNORE
    counted = valid.sum(0) >= 2
    if not counted.any():
        return 0.0
    lo = np.where(valid, stack, 256).min(0)
    hi = np.where(valid, stack, -1).max(0)
    return float(np.count_nonzero((lo != hi) & counted) / np.count_nonzero(counted))


def image_uncertainty(masks: Mapping[str, np.ndarray], stages: Sequence[str] = REVIEW_STAGES) -> float | None:
    """Uncertainty of one image from its stage masks; ``None`` with fewer than two of ``stages``."""
    present = [masks[s] for s in stages if s in masks and masks[s] is not None]
    return disagreement(present) if len(present) >= 2 else None


def review_order(
    project,
    *,
    order: str = "uncertainty",
    stages: Sequence[str] = REVIEW_STAGES,
    ids: Sequence[str] | None = None,
    unreviewed_only: bool = True,
    cache: dict | None = None,
) -> list[str]:
    """Image ids in the order to review them.

    Parameters
    ----------
    project : napari_wsss.store.Project
    order : {"uncertainty", "file"}
        ``"uncertainty"``: highest :func:`image_uncertainty` first (images without two stage
        masks yet come after, in file order; ties keep file order). ``"file"``: project order.
    stages : sequence of str
        Stage masks compared.
    ids : sequence of str, optional
        Restrict to these images (default: all of the project's).
    unreviewed_only : bool
        Only images whose status is ``new`` or ``prelabelled``.
    cache : dict, optional
        Image id -> uncertainty (``None``: fewer than two stage masks), reused where present
        and filled where computed (the panel keeps one, dropping an image's entry when its
        proposals change, so each "next unreviewed" does not re-read every image's masks).

    Returns
    -------
    list of str
    """
    if order not in ORDERS:
        raise ValueError(f"unknown review order {order!r}; valid: {', '.join(ORDERS)}")
    candidates = list(project.image_ids() if ids is None else ids)
    if unreviewed_only:
        candidates = [i for i in candidates if project.status(i).status in UNREVIEWED]
    if order == "file":
        return candidates
    scored, unscored = [], []
    cache = {} if cache is None else cache
    for pos, image_id in enumerate(candidates):
        if image_id not in cache:
            cache[image_id] = image_uncertainty({s: project.read_mask(image_id, s) for s in stages}, stages)
        score = cache[image_id]
        (unscored if score is None else scored).append((-(score or 0.0), pos, image_id))
    return [i for _, _, i in sorted(scored)] + [i for _, _, i in unscored]
