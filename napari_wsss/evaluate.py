"""Evaluate a project's proposals and corrections against ground-truth masks.

Ground truth is a folder of ``<id>.png`` masks (uint8 class indices, ``255`` = void; the
layout of ``msrc_v2/masks`` and of :func:`napari_wsss.export.export_project` output).
Every stored mask stage (``cam``, ``crf``, ``rw``, ``segmenter``, ``explainer``) and the
corrected masks (corrections filled from proposals, as exported) are scored with
:mod:`napari_wsss.metrics` over all evaluated images (one confusion matrix per stage).

The stored CAMs themselves (``cams/<method>``) are scored as priors, upsampled
(bilinear) to the ground-truth size:

* **background projects**: a sweep over background thresholds ``t`` as in IRN and P-NOC
  (``argmax`` over ``[t, cam_1, ..., cam_K]``): a pixel is background when no CAM of the
  image's labels exceeds ``t`` (ties go to background), else the arg-max label. The best
  ``t`` (highest mIoU) is reported with its scores.
* **projects without background** (MSRC-v2): every pixel goes to the arg-max CAM among
  the image's labels; there is no background threshold, so the sweep is reported as n/a.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from napari_wsss.conventions import IGNORE, PROPOSAL_STAGES
from napari_wsss.export import FALLBACK_ORDER, _progress, fill_corrections, mask_relpath, select_ids
from napari_wsss.maskio import read_mask_file
from napari_wsss.metrics import SegmentationScores, confusion_matrix, segmentation_scores
from napari_wsss.store import Project

__all__ = [
    "EVAL_STAGES",
    "DEFAULT_THRESHOLDS",
    "GT_EXTENSIONS",
    "StageResult",
    "CamResult",
    "EvaluationReport",
    "evaluate_project",
    "cam_threshold_sweep",
]

#: Stages :func:`evaluate_project` can score: mask stages, ``corrected``, ``cams`` (CAM priors).
EVAL_STAGES = (*PROPOSAL_STAGES, "corrected", "cams")
#: Background thresholds swept for CAM priors: 0.05, 0.10, ..., 0.95.
DEFAULT_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))
#: Ground-truth file extensions tried, in order, for ``gt_dir/<id><ext>``.
GT_EXTENSIONS = (".png", ".tif", ".tiff")

NO_BACKGROUND_NOTE = (
    "n/a: the project has no background class, so every pixel goes to the arg-max CAM "
    "among the image's labels and there is no background threshold to sweep"
)


@dataclass
class StageResult:
    """Scores of one mask stage over the images that have it (and ground truth)."""

    stage: str
    n_images: int
    confusion: np.ndarray  # (C, C + 1), see napari_wsss.metrics.confusion_matrix
    scores: SegmentationScores


@dataclass
class CamResult:
    """Scores of the stored CAMs of one method, used as a segmentation prior.

    Attributes
    ----------
    thresholds, miou : tuple of float or None
        The background-threshold sweep (mIoU per threshold); ``None`` without background.
    best_threshold : float or None
        Threshold with the highest mIoU (first one on ties); ``None`` without background.
    scores : SegmentationScores
        At ``best_threshold``, or of the arg-max without background.
    note : str or None
        Why there is no sweep.
    """

    method: str
    n_images: int
    scores: SegmentationScores
    thresholds: tuple | None = None
    miou: tuple | None = None
    best_threshold: float | None = None
    note: str | None = None


def _pct(v) -> str:
    return "-" if v is None or np.isnan(v) else f"{100 * v:.1f}"


def _f(v):
    return None if v is None or np.isnan(v) else float(v)


@dataclass
class EvaluationReport:
    """Result of :func:`evaluate_project`; ``as_table()`` (markdown), ``as_dict()`` (JSON)."""

    classes: list
    background: int | None
    gt_dir: Path
    evaluated: list = field(default_factory=list)
    missing_gt: list = field(default_factory=list)
    stages: dict = field(default_factory=dict)
    cams: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    def _rows(self):
        for name, r in self.stages.items():
            yield name, name, r
        for method, r in self.cams.items():
            how = (f"best background threshold {r.best_threshold:g}" if r.best_threshold is not None
                   else "arg-max over the image's labels")
            yield f"cams/{method}", f"CAMs {method} ({how})", r

    def as_table(self) -> str:
        """Markdown: summary per stage, per-class IoU, CAM threshold sweeps, notes."""
        out = [f"Evaluated {len(self.evaluated)} image(s) against {self.gt_dir}"
               + (f"; {len(self.missing_gt)} without ground truth" if self.missing_gt else "") + ".", ""]
        rows = list(self._rows())
        out += ["| stage | images | mIoU % | pixel acc. % | mean F1 % |", "|---|---:|---:|---:|---:|"]
        for _, label, r in rows:
            s = r.scores
            out.append(f"| {label} | {r.n_images} | {_pct(s.miou)} | {_pct(s.pixel_accuracy)} "
                       f"| {_pct(s.mean_f1)} |")
        if rows:
            out += ["", "Per-class IoU %:", "",
                    "| class | " + " | ".join(key for key, _, _ in rows) + " |",
                    "|---|" + "---:|" * len(rows)]
            for c, name in enumerate(self.classes):
                out.append(f"| {name} | " + " | ".join(_pct(r.scores.iou[c]) for _, _, r in rows) + " |")
        for method, r in self.cams.items():
            out.append("")
            if r.thresholds is None:
                out.append(f"Background threshold sweep, CAMs {method}: {r.note}.")
                continue
            out += [f"Background threshold sweep, CAMs {method} (mIoU %):", "",
                    "| threshold | mIoU % |", "|---:|---:|"]
            out += [f"| {t:g}{' (best)' if t == r.best_threshold else ''} | {_pct(m)} |"
                    for t, m in zip(r.thresholds, r.miou)]
        if self.missing_gt:
            out += ["", "No ground truth for: " + ", ".join(self.missing_gt)]
        out += [""] + [f"Note: {n}" for n in self.notes] if self.notes else []
        return "\n".join(out).rstrip() + "\n"

    def as_dict(self) -> dict:
        """JSON-able: fractions in ``[0, 1]``, ``None`` for undefined (NaN) values."""
        stages = {}
        for key, _, r in self._rows():
            d = {"images": r.n_images, **r.scores.as_dict(self.classes)}
            if isinstance(r, CamResult):
                d["best_threshold"] = r.best_threshold
                d["sweep"] = (None if r.thresholds is None else
                              [{"threshold": t, "mIoU": _f(m)} for t, m in zip(r.thresholds, r.miou)])
                d["note"] = r.note
            stages[key] = d
        return {
            "gt_dir": str(self.gt_dir),
            "classes": list(self.classes),
            "background": self.background,
            "images": len(self.evaluated),
            "missing_gt": list(self.missing_gt),
            "stages": stages,
            "notes": list(self.notes),
        }


def cam_threshold_sweep(cams, cam_classes, gt, *, background: int, num_classes: int,
                        thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> np.ndarray:
    """Confusion matrices of thresholded CAMs for every background threshold at once.

    Parameters
    ----------
    cams : ndarray, shape (K, H, W)
        Normalised CAMs of the image's labels at ground-truth size (``K`` may be 0).
    cam_classes : ndarray, shape (K,)
        Class index of each CAM.
    gt : ndarray, shape (H, W), uint8
        Ground truth, ``255`` = void.
    background : int
        The background class index.
    num_classes : int
    thresholds : sequence of float
        Sorted ascending.

    Returns
    -------
    ndarray, shape (T, num_classes, num_classes + 1), int64
        ``conf[i]`` is :func:`napari_wsss.metrics.confusion_matrix` of the mask that is
        ``background`` where ``max_k cams[k] <= thresholds[i]`` and the arg-max class
        elsewhere (the prediction of ``argmax([t, cam_1, ..., cam_K])``; compared in
        float32 as that padded array is).
    """
    thr = np.asarray(thresholds, dtype=np.float32)
    c = num_classes
    valid = gt != IGNORE
    target = gt[valid].astype(np.int64)
    if cams.shape[0]:
        best = np.asarray(cams, dtype=np.float32)[:, valid]
        top = best.max(axis=0)
        fg = np.asarray(cam_classes, dtype=np.int64)[best.argmax(axis=0)]
    else:
        top = np.zeros(target.shape, np.float32)
        fg = np.full(target.shape, background, np.int64)
    # Bin j = number of thresholds below the pixel's top score: foreground for t_i, i < j.
    j = np.searchsorted(thr, top, side="left")
    counts = np.bincount((j * c + target) * c + fg, minlength=(len(thr) + 1) * c * c)
    counts = counts.reshape(len(thr) + 1, c, c)
    fg_conf = np.cumsum(counts[::-1], axis=0)[::-1][1:]  # sum over j > i
    bg_rows = np.cumsum(counts.sum(axis=2), axis=0)[:-1]  # sum over j <= i, by true class
    conf = np.zeros((len(thr), c, c + 1), dtype=np.int64)
    conf[:, :, :c] = fg_conf
    conf[:, :, background] += bg_rows
    return conf


def _check_thresholds(thresholds) -> tuple:
    thr = np.asarray(thresholds, dtype=np.float64).ravel()
    if thr.size == 0 or not np.all(np.isfinite(thr)) or thr.min() < 0 or thr.max() > 1:
        raise ValueError(f"thresholds must be a non-empty list of numbers in [0, 1], got {thresholds!r}")
    return tuple(float(t) for t in np.unique(thr))


def _check_stages(stages) -> tuple:
    if stages is None:
        return EVAL_STAGES
    stages = (stages,) if isinstance(stages, str) else tuple(stages)
    bad = [s for s in stages if s not in EVAL_STAGES]
    if bad:
        raise ValueError(f"unknown stage(s) {bad}; valid: {', '.join(EVAL_STAGES)}")
    return stages


def _find_gt(gt_dir: Path, image_id: str) -> Path | None:
    rel = mask_relpath(image_id)  # the id itself unless it would leave gt_dir
    for ext in GT_EXTENSIONS:
        path = gt_dir / (rel + ext)
        if path.is_file():
            return path
    return None


def _read_gt(path: Path, shape, image_id, num_classes) -> np.ndarray:
    gt = read_mask_file(path)
    if gt.shape != tuple(shape):
        raise ValueError(f"{path}: ground truth of shape {gt.shape} does not match image "
                         f"{image_id!r} of shape {tuple(shape)}")
    bad = (gt >= num_classes) & (gt != IGNORE)
    if bad.any():
        raise ValueError(f"{path}: ground truth holds class {int(gt[bad].max())} but the project "
                         f"has {num_classes} classes (0..{num_classes - 1}, 255 = void)")
    return gt


def _upsampled_cams(cams: np.ndarray, shape) -> np.ndarray:
    import torch

    from napari_wsss.cams import upsample

    with torch.inference_mode():
        return upsample(torch.from_numpy(np.ascontiguousarray(cams, np.float32)), shape).numpy()


class _CamAccumulator:
    def __init__(self, method, background, num_classes, thresholds):
        self.method, self.background, self.c, self.thresholds = method, background, num_classes, thresholds
        shape = (len(thresholds),) if background is not None else ()
        self.conf = np.zeros((*shape, num_classes, num_classes + 1), np.int64)
        self.n = 0

    def add(self, cams, classes, gt):
        cams = _upsampled_cams(cams, gt.shape)
        if self.background is not None:
            self.conf += cam_threshold_sweep(cams, classes, gt, background=self.background,
                                             num_classes=self.c, thresholds=self.thresholds)
        else:
            pred = (classes.astype(np.uint8)[cams.argmax(axis=0)] if cams.shape[0]
                    else np.full(gt.shape, IGNORE, np.uint8))
            self.conf += confusion_matrix(pred, gt, self.c)
        self.n += 1

    def result(self) -> CamResult:
        if self.background is None:
            return CamResult(self.method, self.n, segmentation_scores(self.conf), note=NO_BACKGROUND_NOTE)
        all_scores = [segmentation_scores(conf) for conf in self.conf]
        miou = tuple(s.miou for s in all_scores)
        best = int(np.nanargmax(miou)) if not np.all(np.isnan(miou)) else 0
        return CamResult(self.method, self.n, all_scores[best], thresholds=self.thresholds,
                         miou=miou, best_threshold=self.thresholds[best])


def evaluate_project(
    project,
    gt_dir,
    *,
    stages: Sequence[str] | None = None,
    ids: Sequence[str] | None = None,
    cam_methods: Sequence[str] | None = None,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    fallback: Sequence[str] = FALLBACK_ORDER,
    progress: bool = False,
) -> EvaluationReport:
    """Score every stage stored in a project against ground-truth masks.

    Parameters
    ----------
    project : Project or path
        The project (a path is opened read-only).
    gt_dir : str or Path
        Folder with ``<id>.png`` (or ``.tif``): ``(H, W)`` uint8 class indices of the
        project's classes, ``255`` = void, the size of the stored image.
    stages : sequence of str, optional
        Any of :data:`EVAL_STAGES`; default all. ``"corrected"`` scores the corrections
        filled per pixel from ``fallback`` (what the export writes) on images with
        corrections and a status other than ``"skipped"``; ``"cams"`` scores the stored
        CAMs of ``cam_methods``.
    ids : sequence of str, optional
        Images to evaluate (default all).
    cam_methods : sequence of str, optional
        CAM methods to score (default: every method stored for some image).
    thresholds : sequence of float
        Background thresholds of the CAM sweep (background projects only).
    fallback : sequence of str
        Proposal order that fills unlabeled pixels of ``"corrected"``.
    progress : bool
        Show a progress bar (tqdm).

    Returns
    -------
    EvaluationReport
        One confusion matrix per stage summed over the images that have that stage.

    Warns
    -----
    UserWarning
        Naming the images without a ground-truth file; the others are evaluated.

    Raises
    ------
    ValueError
        Naming the file when a ground-truth mask has another shape than its image, holds
        colours or classes the project does not have.
    """
    project = project if isinstance(project, Project) else Project.open(project, mode="r")
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise FileNotFoundError(f"ground-truth folder {gt_dir} does not exist")
    explicit = stages is not None
    stages = _check_stages(stages)
    thresholds = _check_thresholds(thresholds)
    if isinstance(cam_methods, str):
        cam_methods = [cam_methods]
    ids = select_ids(project, ids)
    report = EvaluationReport(classes=list(project.classes), background=project.background, gt_dir=gt_dir)
    todo = _ground_truth_files(gt_dir, ids, report)
    scores = _Scores(project, stages, thresholds)
    for image_id, path in _progress(todo, progress, "evaluate"):
        gt = _read_gt(path, project.image_shape(image_id), image_id, len(project.classes))
        scores.add(project, project.load(image_id), gt, fallback=fallback, cam_methods=cam_methods)
        report.evaluated.append(image_id)
    scores.report_to(report, explicit=explicit, cam_methods=cam_methods)
    return report


def _ground_truth_files(gt_dir: Path, ids: list[str], report: EvaluationReport) -> list[tuple[str, Path]]:
    """``(image id, ground-truth file)`` of the images that have one; records (and warns
    about) the others; error when none has one."""
    gt_files = {i: _find_gt(gt_dir, i) for i in ids}
    report.missing_gt = [i for i, p in gt_files.items() if p is None]
    if ids and len(report.missing_gt) == len(ids):
        raise FileNotFoundError(f"{gt_dir}: no ground-truth mask for any of the {len(ids)} image(s) "
                                f"(expected <id>.png, e.g. {gt_dir / (mask_relpath(ids[0]) + '.png')})")
    if report.missing_gt:
        shown = ", ".join(report.missing_gt[:20]) + (
            f" (+{len(report.missing_gt) - 20} more)" if len(report.missing_gt) > 20 else "")
        warnings.warn(f"{gt_dir}: no ground truth for {len(report.missing_gt)} image(s): {shown}; "
                      f"evaluating the other {len(ids) - len(report.missing_gt)}", stacklevel=3)
    return [(i, p) for i, p in gt_files.items() if p is not None]


def _stage_mask(rec, stage: str, fallback) -> np.ndarray | None:
    """The mask ``stage`` scores on one image, None where the image has none."""
    if stage == "corrected":
        if rec.status.status == "skipped" or not (rec.corrections != IGNORE).any():
            return None
        return fill_corrections(rec.corrections, rec.masks, fallback=fallback)[0]
    return rec.masks.get(stage)


class _Scores:
    """Confusion matrices per stage and CAM sweeps per method, summed image by image."""

    def __init__(self, project, stages, thresholds):
        c = len(project.classes)
        self.num_classes, self.background, self.thresholds = c, project.background, thresholds
        self.with_cams = "cams" in stages
        self.conf = {s: np.zeros((c, c + 1), np.int64) for s in stages if s != "cams"}
        self.counts = dict.fromkeys(self.conf, 0)
        self.cams: dict[str, _CamAccumulator] = {}

    def add(self, project, rec, gt: np.ndarray, *, fallback, cam_methods) -> None:
        for stage in self.conf:
            mask = _stage_mask(rec, stage, fallback)
            if mask is not None:
                self.conf[stage] += confusion_matrix(mask, gt, self.num_classes)
                self.counts[stage] += 1
        if not self.with_cams:
            return
        for method in rec.cam_methods if cam_methods is None else cam_methods:
            got = project.read_cams(rec.image_id, method) if method in rec.cam_methods else None
            if got is not None:
                acc = self.cams.setdefault(method, _CamAccumulator(method, self.background, self.num_classes,
                                                                   self.thresholds))
                acc.add(got[0], got[1], gt)

    def report_to(self, report: EvaluationReport, *, explicit: bool, cam_methods) -> None:
        for stage, n in self.counts.items():
            if n:
                report.stages[stage] = StageResult(stage, n, self.conf[stage], segmentation_scores(self.conf[stage]))
            elif explicit:
                report.notes.append(f"stage {stage!r}: none of the {len(report.evaluated)} evaluated "
                                    "image(s) has it")
        for method in self.cams if cam_methods is None else cam_methods:
            if method in self.cams:
                report.cams[method] = self.cams[method].result()
            else:
                report.notes.append(f"CAMs {method!r}: none of the evaluated image(s) has them")
