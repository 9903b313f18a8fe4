"""Refinement of CAMs into pixel masks: dense CRF, AffinityNet random walk, background handling.

Big images refine at a working resolution and :func:`upsample_labels` /
:func:`edge_aware_upsample` bring the scores back to full size along the image's edges.

Every stage takes the CAMs of one image's labels ``(K, H, W)`` with their class indices and
returns a :class:`RefineResult` (scores, class indices, ``(H, W)`` uint8 mask, 255 = void).
"""

from .affinity_labels import AffinityTargets, confident_labels, downsample_labels, pair_targets
from .background import BACKGROUND_METHODS, RefineResult, labels_from_scores, scores_with_background
from .crf import NO_BACKGROUND_CRF, crf_refine, default_crf, dense_crf
from .graph import AffinityGraph, pair_indices, pair_offsets, pairwise
from .random_walk import build_affinity, colour_affinity, feature_affinity, random_walk, random_walk_refine
from .upsample import Guide, area_downsample, edge_aware_upsample, upsample_labels, working_shape
from .seeded import SeededRefiner, seeded_crf, seeded_random_walk, seeded_refine

__all__ = [
    "NO_BACKGROUND_CRF",
    "default_crf",
    "AffinityGraph",
    "AffinityTargets",
    "area_downsample",
    "BACKGROUND_METHODS",
    "Guide",
    "RefineResult",
    "SeededRefiner",
    "build_affinity",
    "colour_affinity",
    "confident_labels",
    "crf_refine",
    "dense_crf",
    "edge_aware_upsample",
    "downsample_labels",
    "feature_affinity",
    "labels_from_scores",
    "pair_indices",
    "pair_offsets",
    "pair_targets",
    "pairwise",
    "random_walk",
    "random_walk_refine",
    "scores_with_background",
    "upsample_labels",
    "working_shape",
    "seeded_crf",
    "seeded_random_walk",
    "seeded_refine",
]
