"""Export a project's masks: indexed PNG, palette TIFF or OME-Zarr labels.

Every format holds class indices ``0..C-1`` with ``255`` = void (OME-Zarr keeps the same
values and names them in its ``image-label`` metadata). Next to the masks the export
writes ``classes.txt`` (one class name per line, in index order), ``classes.json``
(names, colours, void value, background index) and ``export.json`` (what each image's
pixels came from).

The ``"corrected"`` source is the annotator's corrections where they painted, and, per
pixel, the best available proposal elsewhere (by default ``segmenter``, then ``rw``,
``crf``, ``cam``): :func:`fill_corrections`. Pixels the annotator painted "ignore"
(stored as 254) are written as void and never filled from a proposal.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from napari_wsss.atomic import atomic_write_text
from napari_wsss.colors import class_colors, voc_palette
from napari_wsss.conventions import IGNORE, PROPOSAL_STAGES, STAGES
from napari_wsss.maskio import write_mask_file, write_ome_zarr
from napari_wsss.store import Project, split_corrections

__all__ = [
    "EXPORT_FORMATS",
    "ExportFormat",
    "EXPORT_SOURCES",
    "FALLBACK_ORDER",
    "ExportReport",
    "export_project",
    "fill_corrections",
    "mask_relpath",
    "classes_metadata",
]



@dataclass(frozen=True)
class ExportFormat:
    """One output format of :func:`export_project` (a registry entry of `EXPORT_FORMATS`).

    Attributes
    ----------
    name : str
        What ``format=`` / ``--format`` / the panel's list take.
    suffix : str
        Appended to the mask's relative path (:func:`mask_relpath`).
    description : str
        One line for help texts and tooltips.
    write : callable
        ``write(path, mask, *, image, image_id, source, classes, background)`` writes one
        image's mask (``(H, W)`` uint8, 255 = void) atomically.
    """

    name: str
    suffix: str
    description: str
    write: Callable[..., object]


def _write_indexed(path, mask, *, image, image_id, source, classes, background):
    write_mask_file(path, mask, n_classes=len(classes), background=background)


def _write_ome(path, mask, *, image, image_id, source, classes, background):
    write_ome_zarr(path, image, mask, name=source, classes=classes, background=background, image_id=image_id)


#: Output formats of :func:`export_project` by name (a new format is one entry here).
EXPORT_FORMATS: dict[str, ExportFormat] = {f.name: f for f in (
    ExportFormat("png", ".png", "indexed PNG with the class palette", _write_indexed),
    ExportFormat("tif", ".tif", "palette TIFF (uint8, the same values)", _write_indexed),
    ExportFormat("ome-zarr", ".ome.zarr", "OME-Zarr: the image with labels/<source>, class names and "
                 "colours in image-label", _write_ome),
)}
#: Mask sources: the filled corrections or any stored proposal stage.
EXPORT_SOURCES = ("corrected", *PROPOSAL_STAGES)
#: Default order in which proposals fill pixels the annotator left unlabeled.
FALLBACK_ORDER = tuple(reversed([name for name, stage in STAGES.items() if stage.fallback]))

_BAD_PART = re.compile(r'[\\:*?"<>|\x00-\x1f]')
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def fill_corrections(corrections, proposals: dict, *, fallback: Sequence[str] = FALLBACK_ORDER):
    """Corrections, with unlabeled pixels filled per pixel from proposals in ``fallback`` order.

    Parameters
    ----------
    corrections : ndarray, shape (H, W), uint8
        The annotator's labels as stored: class indices, ``254`` = painted "ignore"
        (written as ``255`` void, never filled), ``255`` = unlabeled.
    proposals : dict of str -> ndarray (H, W) uint8
        Proposal masks by stage (``255`` = void); stages absent from it are passed over.
    fallback : sequence of str
        Stages to try, best first. A pixel still unlabeled takes the value of the first
        stage whose mask is not void there. ``()`` exports the corrections alone.

    Returns
    -------
    mask : ndarray, shape (H, W), uint8
    pixels : dict of str -> int
        Pixel counts: ``"corrections"`` (a class painted by the annotator), ``"ignored"``
        (painted "ignore"; only when there are any), one entry per stage in ``fallback``
        that is present (pixels it filled, possibly 0), and ``"void"`` (left unlabeled
        by everyone). They sum to ``H * W``; the output is void on ``"ignored"`` and
        ``"void"`` pixels.
    """
    mask, painted = split_corrections(corrections)
    todo = ~painted
    ignored = int((painted & (mask == IGNORE)).sum())
    pixels = {"corrections": int(painted.sum()) - ignored}
    if ignored:
        pixels["ignored"] = ignored
    for stage in fallback:
        prop = proposals.get(stage)
        if prop is None:
            continue
        prop = np.asarray(prop)
        if prop.shape != mask.shape:
            raise ValueError(f"{stage} mask has shape {prop.shape}, corrections {mask.shape}")
        take = todo & (prop != IGNORE)
        mask[take] = prop[take]
        todo &= ~take
        pixels[stage] = int(take.sum())
    pixels["void"] = int(todo.sum())
    return mask, pixels


def mask_relpath(image_id: str) -> str:
    """Relative path (POSIX, no extension) of an image's mask file in an export.

    The id itself (``a/b`` -> ``a/b.png``, the layout of segmentation datasets and of the
    ground truth :func:`napari_wsss.evaluate.evaluate_project` reads) when every part is
    a usable file name; otherwise its safe characters plus 10 hex digits of its SHA-1,
    so that no id escapes the export folder.
    """
    parts = image_id.split("/")
    if all(p not in ("", ".", "..") and not _BAD_PART.search(p) and p == p.strip()
           and not p.endswith(".") for p in parts):
        return image_id
    digest = hashlib.sha1(image_id.encode("utf-8")).hexdigest()[:10]
    safe = _UNSAFE.sub("_", image_id).strip("._")[:80]
    return f"{safe or 'id'}.{digest}"


def classes_metadata(classes: Sequence[str], background: int | None) -> dict:
    """The ``classes.json`` content: names, RGB colours, void value and colour, background."""
    colors = class_colors(len(classes), background=background)
    return {
        "classes": [{"index": i, "name": n, "color": colors[i].tolist()} for i, n in enumerate(classes)],
        "void": IGNORE,
        "void_color": voc_palette(256)[IGNORE].tolist(),
        "background": background,
    }


@dataclass
class ExportReport:
    """What :func:`export_project` wrote.

    Attributes
    ----------
    out_dir : Path
    source, format : str
    files : dict of str -> Path
        Image id -> written file (or ``.ome.zarr`` directory), in project order.
    pixels : dict of str -> dict of str -> int
        Image id -> where its pixels came from (see :func:`fill_corrections`); for a
        proposal source ``{stage: labelled pixels, "void": void pixels}``.
    missing : dict of str -> str
        Images with nothing to export, and why.
    skipped : list of str
        Images with status ``"skipped"``, left out.
    metadata : Path
        ``export.json``.
    """

    out_dir: Path
    source: str
    format: str
    files: dict = field(default_factory=dict)
    pixels: dict = field(default_factory=dict)
    missing: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)
    metadata: Path | None = None

    def totals(self) -> dict:
        """Pixel counts summed over the exported images, by origin."""
        out: dict[str, int] = {}
        for counts in self.pixels.values():
            for k, v in counts.items():
                out[k] = out.get(k, 0) + v
        return out

    def __str__(self) -> str:
        lines = [f"exported {len(self.files)} mask(s) (source {self.source!r}, format "
                 f"{self.format!r}) to {self.out_dir}"]
        totals = self.totals()
        if totals:
            all_px = sum(totals.values()) or 1
            lines.append("pixels: " + ", ".join(
                f"{k} {v} ({100 * v / all_px:.1f}%)" for k, v in totals.items()))
        if self.skipped:
            lines.append(f"left out {len(self.skipped)} skipped image(s): {', '.join(self.skipped)}")
        if self.missing:
            lines.append(f"{len(self.missing)} image(s) had nothing to export:")
            lines += [f"  {image_id}: {why}" for image_id, why in self.missing.items()]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {
            "out_dir": str(self.out_dir),
            "source": self.source,
            "format": self.format,
            "files": {k: str(v) for k, v in self.files.items()},
            "pixels": self.pixels,
            "totals": self.totals(),
            "missing": dict(self.missing),
            "skipped": list(self.skipped),
            "metadata": None if self.metadata is None else str(self.metadata),
        }


def _check_options(project, source, format, fallback, ids):
    if source not in EXPORT_SOURCES:
        raise ValueError(f"unknown export source {source!r}; valid: {', '.join(EXPORT_SOURCES)}")
    if format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {format!r}; valid: {', '.join(EXPORT_FORMATS)}")
    fallback = tuple(fallback)
    bad = [s for s in fallback if s not in PROPOSAL_STAGES]
    if bad:
        raise ValueError(f"unknown fallback stage(s) {bad}; valid: {', '.join(PROPOSAL_STAGES)}")
    if len(set(fallback)) != len(fallback):
        raise ValueError(f"fallback lists a stage twice: {list(fallback)}")
    return fallback, select_ids(project, ids)


def select_ids(project, ids) -> list[str]:
    """``ids`` as a list (all of the project's by default); unknown ids raise KeyError naming them."""
    if ids is None:
        return project.image_ids()
    ids = [ids] if isinstance(ids, str) else list(ids)
    unknown = [i for i in ids if i not in project]
    if unknown:
        raise KeyError(f"image id(s) not in project {project.path}: {unknown}")
    return ids


def _open(project) -> Project:
    return project if isinstance(project, Project) else Project.open(project, mode="r")


def _relpaths(ids: Sequence[str]) -> dict[str, str]:
    """Unique relative paths, also on case-insensitive file systems."""
    out, seen = {}, set()
    for image_id in ids:
        rel = mask_relpath(image_id)
        if rel.lower() in seen:
            digest = hashlib.sha1(image_id.encode("utf-8")).hexdigest()[:10]
            rel = f"{rel}.{digest}"
        seen.add(rel.lower())
        out[image_id] = rel
    return out


def _image_mask(rec, source, fallback):
    """``(mask, pixels, why_missing)`` for one :class:`ImageRecord`."""
    stages = ", ".join(rec.masks) or "none"
    if source != "corrected":
        mask = rec.masks.get(source)
        if mask is None:
            return None, None, f"no {source!r} mask (stored stages: {stages})"
        void = int((mask == IGNORE).sum())
        return mask, {source: int(mask.size - void), "void": void}, None
    painted = bool((rec.corrections != IGNORE).any())
    if not painted and not any(s in rec.masks for s in fallback):
        return None, None, (f"no corrections and no proposal among {', '.join(fallback) or '(none)'} "
                            f"(stored stages: {stages})")
    mask, pixels = fill_corrections(rec.corrections, rec.masks, fallback=fallback)
    return mask, pixels, None


def export_project(
    project,
    out_dir,
    *,
    source: str = "corrected",
    format: str = "png",
    ids: Sequence[str] | None = None,
    fallback: Sequence[str] = FALLBACK_ORDER,
    include_skipped: bool = False,
    progress: bool = False,
) -> ExportReport:
    """Write one mask per image, plus ``classes.txt``, ``classes.json`` and ``export.json``.

    Parameters
    ----------
    project : Project or path
        The project (a path is opened read-only).
    out_dir : str or Path
        Output folder (created). Masks go to ``out_dir/<id>.png`` (``.tif``,
        ``.ome.zarr``), see :func:`mask_relpath`; existing files of the same name are
        replaced, each atomically.
    source : str
        ``"corrected"`` (corrections, gaps filled from ``fallback``) or a proposal stage
        (``"cam"``, ``"crf"``, ``"rw"``, ``"segmenter"``, ``"explainer"``).
    format : str
        An `EXPORT_FORMATS` name: ``"png"`` indexed PNG with the class palette; ``"tif"``
        palette TIFF (uint8, same values); ``"ome-zarr"`` an OME-Zarr image (the project
        image) with ``labels/<source>``: same values, class names in
        ``image-label.properties`` and colours in ``image-label.colors``.
    ids : sequence of str, optional
        Images to export (default: all, in project order).
    fallback : sequence of str
        Stages that fill unlabeled pixels of ``"corrected"``, best first.
    include_skipped : bool
        Export images whose status is ``"skipped"`` too (left out by default).
    progress : bool or callable
        Show a progress bar (tqdm); or ``progress(done, total)``, called before each
        image (``done`` images finished) and once at the end. An exception raised by it
        stops the export: the mask files written so far stay, ``export.json`` and the
        class files are not written.

    Returns
    -------
    ExportReport
        Also lists images with nothing to export (no corrections and no proposal, or no
        mask of ``source``); the others are exported regardless.
    """
    project = _open(project)
    fallback, ids = _check_options(project, source, format, fallback, ids)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = ExportReport(out_dir=out_dir, source=source, format=format)
    relpaths = _relpaths(ids)
    entries = {}
    for image_id in _progress(ids, progress):
        rec = project.load(image_id)
        if rec.status.status == "skipped" and not include_skipped:
            report.skipped.append(image_id)
            continue
        entry = _export_image(project, rec, out_dir / (relpaths[image_id] + EXPORT_FORMATS[format].suffix),
                              source=source, format=format, fallback=fallback, report=report)
        if entry is not None:
            entries[image_id] = entry
    _write_classes(out_dir, project.classes, project.background)
    report.metadata = _write_metadata(project, out_dir, report, entries, fallback=fallback,
                                      include_skipped=include_skipped)
    return report


def _export_image(project, rec, path: Path, *, source, format, fallback, report: ExportReport) -> dict | None:
    """Write one image's mask to ``path``; its ``export.json`` entry (None: nothing to write,
    the reason recorded in ``report.missing``)."""
    mask, pixels, why = _image_mask(rec, source, fallback)
    if mask is None:
        report.missing[rec.image_id] = why
        return None
    EXPORT_FORMATS[format].write(path, mask, image=rec.image, image_id=rec.image_id, source=source,
                                 classes=project.classes, background=project.background)
    report.files[rec.image_id] = path
    report.pixels[rec.image_id] = pixels
    return {
        "file": path.relative_to(report.out_dir).as_posix(),
        "status": rec.status.status,
        "pixels": pixels,
        "model_versions": _model_versions(project, rec.image_id, pixels),
    }


def _write_metadata(project, out_dir: Path, report: ExportReport, entries: dict, *, fallback,
                    include_skipped: bool) -> Path:
    """``export.json``: what was exported from where, per image and in total."""
    return _write_json(out_dir / "export.json", {
        "napari_wsss_export": 1,
        "project": str(project.path),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": report.source,
        "format": report.format,
        "fallback": list(fallback) if report.source == "corrected" else [],
        "include_skipped": include_skipped,
        **classes_metadata(project.classes, project.background),
        "images": entries,
        "totals": report.totals(),
        "missing": dict(report.missing),
        "skipped": list(report.skipped),
    })


def _progress(items, show, desc: str = "export"):
    """``items``, wrapped in a tqdm bar when ``show`` is true, or reporting to ``show(done,
    total)`` when it is callable (also used by ``evaluate``)."""
    if callable(show):
        return _report_progress(items, show)
    if not show:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="img", dynamic_ncols=True)


def _report_progress(items, report):
    items = list(items)
    for done, item in enumerate(items):
        report(done, len(items))
        yield item
    report(len(items), len(items))


def _model_versions(project, image_id, pixels) -> dict:
    out = {}
    for stage, n in pixels.items():
        if stage in PROPOSAL_STAGES and n:
            info = project.array_info(image_id, f"mask/{stage}")
            out[stage] = None if info is None else info.model_version
    return out


def _write_json(path: Path, data) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _write_classes(out_dir: Path, classes, background) -> None:
    atomic_write_text(out_dir / "classes.txt", "".join(f"{c}\n" for c in classes))
    _write_json(out_dir / "classes.json", classes_metadata(classes, background))
