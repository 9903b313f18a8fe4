"""Conventions every module shares: mask values, the class limit, stage names, layer values.

Defined once here (the bottom layer: numpy only) and imported everywhere else.

Mask values
    Class indices ``0..C-1`` (``C <= MAX_CLASSES``), `IGNORE` ``255`` = unlabeled / void in
    every mask, loss and export. Corrections alone also hold `IGNORE_PAINTED` ``254``: a
    pixel the annotator painted "ignore" (never filled from a proposal; every consumer reads
    it as `IGNORE`).
napari Labels layers
    ``0`` means "not painted", so class ``c`` is layer value ``c + 1``, `IGNORE` is ``0`` and
    `IGNORE_PAINTED` is `IGNORE_LAYER` ``255``: ``v = (c + 1) mod 256`` both ways
    (`class_to_layer`, `layer_to_class`), so at most 254 classes and both kinds of ignore fit
    in uint8.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = [
    "IGNORE",
    "IGNORE_PAINTED",
    "IGNORE_LAYER",
    "MAX_CLASSES",
    "ProposalStage",
    "STAGES",
    "PROPOSAL_STAGES",
    "REFINE_STAGES",
    "TRAINING_STAGES",
    "CAM_THRESHOLD",
    "class_to_layer",
    "layer_to_class",
]

#: Value of unlabeled / ignored / void pixels in every mask, loss and export.
IGNORE = 255
#: Corrections only: a pixel the annotator painted "ignore" (don't care). Unlike `IGNORE`
#: (nobody looked at it) it is never filled from a proposal; consumers read it as `IGNORE`.
IGNORE_PAINTED = 254
#: Most classes a project can have: indices ``0..253`` (254 and 255 are reserved).
MAX_CLASSES = IGNORE_PAINTED
#: napari Labels layer value of the "ignore" brush; stored as `IGNORE_PAINTED`.
IGNORE_LAYER = (IGNORE_PAINTED + 1) % 256



@dataclass(frozen=True)
class ProposalStage:
    """One proposal stage: a registry entry read by the pipeline, the store, the panel, the
    CLI and the exporter (a new stage is one function plus one entry in `STAGES`).

    Attributes
    ----------
    name : str
        Mask stage name in the project (``masks/<name>``) and in ``PipelineConfig.refine``.
    title : str
        Shown in the napari panel (layer names, review choices).
    function : str
        ``"module:attribute"`` of ``fn(pipeline, work) -> (H, W) uint8 mask`` (imported when
        the pipeline runs it; see ``napari_wsss.proposal_stages``).
    model : str or None
        The trained model it needs (a checkpoint stage and ``Pipeline`` attribute); the
        pipeline skips the stage while the project has none.
    options : str or None
        The ``PipelineConfig`` field holding its options (``crf``, ``rw``), if any.
    fallback : bool
        Whether export fills unlabelled pixels from it (later stages first).
    """

    name: str
    title: str
    function: str
    model: str | None = None
    options: str | None = None
    fallback: bool = True

    def load(self) -> Callable:
        module, _, attr = self.function.partition(":")
        return getattr(importlib.import_module(module), attr)


#: The proposal stages, in the order the pipeline computes them (each may use the previous ones).
STAGES: dict[str, ProposalStage] = {s.name: s for s in (
    ProposalStage("cam", "prior (CAM)", "napari_wsss.proposal_stages:cam"),
    ProposalStage("crf", "CRF", "napari_wsss.proposal_stages:crf", options="crf"),
    ProposalStage("rw", "random walk", "napari_wsss.proposal_stages:random_walk", options="rw"),
    ProposalStage("segmenter", "segmenter", "napari_wsss.proposal_stages:segmenter", model="segmenter"),
    ProposalStage("explainer", "explainer", "napari_wsss.proposal_stages:explainer", model="explainer",
                  fallback=False),
)}
#: Their names: the mask stages a project stores.
PROPOSAL_STAGES = tuple(STAGES)
#: The proposal stages after ``cam`` (``PipelineConfig.refine``).
REFINE_STAGES = PROPOSAL_STAGES[1:]
#: Model stages, in the order ``train ... --stage all`` trains them (the explainer needs only
#: the classifier); each has checkpoints in a project.
TRAINING_STAGES = ("classifier", "explainer", "affinity", "segmenter")

#: Background projects: pixels whose largest normalised CAM is below this are background.
CAM_THRESHOLD = 0.25


def class_to_layer(mask: np.ndarray) -> np.ndarray:
    """Mask of stored values -> napari Labels layer values.

    Parameters
    ----------
    mask : ndarray, shape (H, W), uint8
        Class indices ``0..253``, ``254`` = painted "ignore" (corrections only), ``255`` =
        unlabeled / void.

    Returns
    -------
    ndarray, shape (H, W), uint8
        ``c + 1`` for class ``c``, `IGNORE_LAYER` for ``254``, ``0`` for ``255``.
    """
    mask = np.asarray(mask)
    if mask.dtype != np.uint8:
        raise TypeError(f"class_to_layer: expected a uint8 mask, got {mask.dtype}")
    return mask + np.uint8(1)  # uint8 wraps IGNORE (255) -> 0


def layer_to_class(data: np.ndarray) -> np.ndarray:
    """napari Labels layer values -> stored mask values (inverse of `class_to_layer`).

    Parameters
    ----------
    data : ndarray, shape (H, W), integer
        ``0`` = not painted, `IGNORE_LAYER` = painted "ignore", other ``v`` = class ``v - 1``.

    Returns
    -------
    ndarray, shape (H, W), uint8
        Class indices, ``254`` where "ignore" was painted, ``255`` where nothing was.
    """
    data = np.asarray(data)
    if not np.issubdtype(data.dtype, np.integer):
        raise TypeError(f"layer_to_class: expected integer layer data, got {data.dtype}")
    if data.size and (data.min() < 0 or data.max() > IGNORE_LAYER):
        raise ValueError(
            f"layer_to_class: layer values must be in 0..255, got {data.min()}..{data.max()}"
        )
    return data.astype(np.uint8) - np.uint8(1)  # uint8 wraps 0 -> 255
