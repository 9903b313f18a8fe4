"""`PipelineConfig`: the typed, validated options of the proposal pipeline.

Built the same way by the CLI, the napari panel and the benchmarks:
``PipelineConfig.from_dict({...})`` (or the constructor); an unknown or ill-typed option
fails here, before any image is read, with a message naming the valid ones.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .conventions import CAM_THRESHOLD, REFINE_STAGES

__all__ = ["EXPLAINER", "CRFOptions", "RWOptions", "PipelineConfig"]

#: ``PipelineConfig.method`` that takes the class maps from the trained Explainer.
EXPLAINER = "explainer"


class _Options(Mapping):
    """Options of one stage: a dataclass that also reads as the mapping of its set fields
    (``None`` = the stage's own default), so ``{**options}`` gives keyword arguments."""

    what: ClassVar[str] = "options"

    def _set(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None}

    def __getitem__(self, key):
        return self._set()[key]

    def __iter__(self):
        return iter(self._set())

    def __len__(self) -> int:
        return len(self._set())

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            kind = int if "int" in str(f.type) else float
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
                    (kind is int and float(value) != int(value)):
                raise ValueError(f"{self.what} option {f.name!r} must be {'an integer' if kind is int else 'a number'}, "
                                 f"got {value!r}")
            setattr(self, f.name, kind(value))

    @classmethod
    def from_dict(cls, options: Mapping[str, Any]):
        """The options of a plain mapping; unknown keys fail naming the valid ones."""
        if isinstance(options, cls):
            return options
        if not isinstance(options, Mapping):
            raise ValueError(f"{cls.what} options must be a mapping, got {type(options).__name__}")
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ValueError(f"unknown {cls.what} option(s) {unknown}; valid: {', '.join(valid)}")
        return cls(**options)


@dataclass(eq=False)
class CRFOptions(_Options):
    """Dense-CRF options over the project kind's defaults (``None`` keeps the default).

    The keyword arguments of :func:`napari_wsss.refine.crf.dense_crf` (and ``min_prob``
    of :func:`~napari_wsss.refine.crf.crf_refine`). Defaults: the literature's kernels for
    background projects, :data:`~napari_wsss.refine.crf.NO_BACKGROUND_CRF` for projects
    without (:func:`~napari_wsss.refine.crf.default_crf`).
    """

    what: ClassVar[str] = "crf"
    n_iter: int | None = None
    gaussian_sxy: float | None = None
    gaussian_compat: float | None = None
    bilateral_sxy: float | None = None
    bilateral_srgb: float | None = None
    bilateral_compat: float | None = None
    clip: float | None = None
    min_prob: float | None = None

    def __eq__(self, other):
        return isinstance(other, Mapping) and dict(self) == dict(other)


@dataclass(eq=False)
class RWOptions(_Options):
    """Random-walk options: neighbourhood ``radius``, affinity exponent ``beta``, number of
    steps ``t``, and ``stride`` (grid stride of the colour affinity used when no
    AffinityNet is trained)."""

    what: ClassVar[str] = "rw"
    radius: int = 5
    beta: float = 8.0
    t: int = 64
    stride: int = 4

    def __eq__(self, other):
        return isinstance(other, Mapping) and dict(self) == dict(other)


@dataclass
class PipelineConfig:
    """Options of the proposal pipeline.

    Attributes
    ----------
    method : str
        A :data:`napari_wsss.cams.METHODS` name, or ``"explainer"``: the trained
        Explainer's per-class sigmoid masks (one forward pass, no TTA, not normalised)
        are the class maps that CRF and random walk refine.
    scales, flip, merge
        Test-time augmentation (:func:`napari_wsss.cams.compute_tta`); ``scales=(1.0,)``
        and ``flip=False`` is a single pass; ``merge`` is ``"sum"``, ``"mean"`` or ``"max"``.
    refine : tuple of str
        Refinement stages to run after ``cam``: any of ``"crf"``, ``"rw"``,
        ``"segmenter"``, ``"explainer"`` (the last two only when the project has that
        model trained).
    cam_threshold : float
        Background projects: pixels whose largest normalised CAM is below this are
        background (the ``cam`` stage), and the background score of CRF and random walk.
    crf : CRFOptions
        Dense-CRF kernel parameters and ``n_iter`` over the defaults: the literature's for
        background projects, :data:`~napari_wsss.refine.crf.NO_BACKGROUND_CRF` (chosen on
        training images, ``bench/quality.py --tune-crf``) for projects without. A plain
        dict is converted (and checked).
    rw : RWOptions
        ``radius``, ``beta``, ``t`` and ``stride`` of the random walk (a dict is converted).
    rw_input : {"auto", "cam", "crf"}
        What the random walk propagates: the CAM scores (as Ahn & Kwak do) or the CRF's
        probabilities (when the CRF ran). ``"auto"``: CAMs without background
        (``bench/quality.py --tune-rw 60``, 60 MSRC-v2 training images, trained AffinityNet:
        CAM input 60.1 mIoU, CRF input 58.3, the CRF alone 58.8), the CRF with background,
        whose threshold background score is flat (shapes sample, `napari-wsss demo`: CRF
        input ~67, CAM input ~34).
    max_side : int or None
        Inference resizes the image so its long side is at most this (masks come back
        at full size).
    min_side : int or None
        Inference enlarges smaller images so their short side is at least this (match
        the classifier's training scale: a 128 px image trained at 224 px crops).
    explainer_threshold : float
        Background projects: pixels where no label's Explainer mask exceeds this are
        background in the ``explainer`` stage (the masks are sigmoids: 0.5).
    """

    method: str = "cam"
    scales: tuple[float, ...] = (1.0, 0.5, 1.5, 2.0)
    flip: bool = True
    merge: str = "sum"
    refine: tuple[str, ...] = REFINE_STAGES
    cam_threshold: float = CAM_THRESHOLD
    crf: CRFOptions = field(default_factory=CRFOptions)
    rw: RWOptions = field(default_factory=RWOptions)
    rw_input: str = "auto"
    max_side: int | None = 512
    min_side: int | None = None
    explainer_threshold: float = 0.5

    def __post_init__(self):
        from .cams import METHODS

        if self.method not in METHODS and self.method != EXPLAINER:
            raise ValueError(f"unknown CAM method {self.method!r}; valid: {', '.join((*METHODS, EXPLAINER))}")
        if isinstance(self.refine, str):
            raise ValueError(f"refine must be a sequence of stage names, got the string {self.refine!r}")
        bad = [s for s in self.refine if s not in REFINE_STAGES]
        if bad:
            raise ValueError(f"unknown refinement stage(s) {bad}; valid: {', '.join(REFINE_STAGES)}")
        if self.rw_input not in ("auto", "crf", "cam"):
            raise ValueError(f"rw_input must be 'auto', 'crf' or 'cam', got {self.rw_input!r}")
        if self.merge not in ("sum", "mean", "max"):
            raise ValueError(f"merge must be 'sum', 'mean' or 'max', got {self.merge!r}")
        self.scales = tuple(float(s) for s in self.scales)
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"scales must be positive numbers, got {self.scales}")
        self.refine = tuple(self.refine)
        self.crf = CRFOptions.from_dict(self.crf)
        self.rw = RWOptions.from_dict(self.rw)
        for name in ("cam_threshold", "explainer_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
        for name in ("max_side", "min_side"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")

    @classmethod
    def from_dict(cls, options: Mapping[str, Any]) -> "PipelineConfig":
        """A config from plain values (``crf`` / ``rw`` as dicts, lists for tuples);
        unknown keys fail naming the valid ones."""
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ValueError(f"unknown pipeline option(s) {unknown}; valid: {', '.join(valid)}")
        return cls(**options)

    def to_dict(self) -> dict:
        """Plain values (``from_dict(config.to_dict()) == config``)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out.update(crf=dict(self.crf), rw=dict(self.rw), scales=list(self.scales), refine=list(self.refine))
        return out

    def replace(self, **changes) -> "PipelineConfig":
        return dataclasses.replace(self, **changes)
