"""Create or update a project from a folder of images and their image-level labels.

Two layouts are understood:

* **CSV**: ``images_dir`` holds the images (sub-folders allowed) and ``labels_csv`` names them
  in an ``id`` column (the path relative to ``images_dir`` without extension, e.g. the file
  stem) or a ``filename`` column (relative path with extension), followed either by one 0/1
  column per class or by a ``labels`` column with ``;``-separated class names.
* **Folder per class**: ``images_dir/<class>/<file>``; the id is the file stem, and an image
  found in several class folders gets all of those labels.

Problems with single images or rows (unknown class names, duplicated ids, labels for missing
images, images without labels, unreadable files) are collected in the report and the batch
continues; problems with the whole input (missing CSV, no id column, class lists that do not
match the project) raise before anything is written. Existing images are never modified.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .io import DEFAULT_MAX_PIXELS, is_image_file, read_image
from .store import Project, image_sha1

__all__ = ["ingest_folder", "IngestReport", "Issue", "BACKGROUND_NAMES"]

#: Class names that mean "background" in common datasets (CCP calls it ``null``): a labels
#: table with one of these is never silently turned into a foreground class.
BACKGROUND_NAMES = ("background", "null")


@dataclass(frozen=True)
class Issue:
    """One problem found while ingesting; ``where`` is the file (or CSV line) concerned."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class IngestReport:
    """What ``ingest_folder`` did.

    Attributes
    ----------
    project : Project
    added : list of str
        Ids of images added by this run.
    unchanged : list of str
        Ids already in the project with the same pixels (left as they were).
    changed : list of str
        Ids already in the project whose file now has different pixels (reported in
        ``warnings``, NOT replaced).
    errors, warnings : list of Issue
    """

    project: Project
    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    background_note: str = ""
    labels: object = None  # napari_wsss.informativeness.LabelReport of the whole project

    @property
    def ok(self) -> bool:
        return not self.errors

    def __str__(self) -> str:
        lines = [
            f"{self.project.path}: {len(self.added)} added, {len(self.unchanged)} unchanged, "
            f"{len(self.changed)} changed on disk (not replaced), {len(self.errors)} errors, "
            f"{len(self.warnings)} warnings"
        ]
        if self.background_note:
            lines.append(self.background_note)
        if self.labels is not None and str(self.labels):
            lines.append(str(self.labels))
        lines += [f"ERROR {e}" for e in self.errors] + [f"warning {w}" for w in self.warnings]
        return "\n".join(lines)


def ingest_folder(project_or_path, images_dir, labels_csv=None, *, classes=None,
                  background: bool = False, background_class: str | None = None,
                  update_labels: bool = False, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> IngestReport:
    """Add the images of a folder, with their image-level labels, to a project.

    Parameters
    ----------
    project_or_path : Project or str or Path
        An open project, the path of an existing project, or a path where a new one is
        created (its classes come from ``classes``, else the CSV header / class folders).
    images_dir : str or Path
        Folder of images (``.png .jpg .jpeg .tif .tiff .bmp``).
    labels_csv : str or Path, optional
        Labels table; without it ``images_dir`` must hold one sub-folder per class.
    classes : sequence of str, optional
        Class names of a new project (checked against the labels of an existing one).
    background : bool
        Whether a new project has a background class. A class column (or folder) named
        as in :data:`BACKGROUND_NAMES` is then taken as the background; without
        ``background`` such a column is an error, never a silent foreground class.
    background_class : str, optional
        The name of the labels table's background class (e.g. ``"null"``); implies
        ``background``. It becomes class 0 (``'background'``) of the project, so the class
        indices of the other columns keep their order. ``report.background_note`` says which
        class is background.
    update_labels : bool
        Replace the labels of images already in the project when the input differs
        (default: keep them and warn).
    max_pixels : int or None
        Images with more pixels are reported as errors, not decoded
        (``napari_wsss.io.read_image``; default Pillow's decompression-bomb limit).

    Returns
    -------
    IngestReport
    """
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise FileNotFoundError(f"images folder {images_dir} does not exist")
    errors, warnings = [], []
    if labels_csv is not None:
        names, rows = _read_csv(Path(labels_csv), images_dir, errors, warnings)
    else:
        names, rows = _read_class_folders(images_dir, warnings)
    source = labels_csv or images_dir
    names, rows, column, project = _background_column(project_or_path, classes, names, rows, background,
                                                      background_class, source)
    report = IngestReport(project, errors=errors, warnings=warnings,
                          background_note=_background_note(project, column, source))
    unknown = [n for n in names if n not in project.classes]
    if unknown:
        report.errors.append(Issue(str(source), f"unknown classes {unknown}; valid: "
                                                f"{', '.join(project.classes)}"))
    for image_id, (files, labels, where) in rows.items():
        _ingest_one(report, image_id, files, labels, where, update_labels, max_pixels)
    from .informativeness import label_report

    report.labels = label_report(project)
    return report


# -- labels tables -------------------------------------------------------------------------
def _index_images(images_dir: Path) -> dict[str, list[Path]]:
    """Relative path without extension -> image files (several if extensions differ)."""
    by_id = defaultdict(list)
    for path in sorted(images_dir.rglob("*")):
        if is_image_file(path) and not any(p.startswith(".") for p in path.relative_to(images_dir).parts):
            by_id[path.relative_to(images_dir).with_suffix("").as_posix()].append(path)
    return by_id


def _read_csv(csv_path: Path, images_dir: Path, errors: list, warnings: list):
    if not csv_path.is_file():
        raise FileNotFoundError(f"labels CSV {csv_path} does not exist")
    table = list(csv.reader(io.StringIO(_decode_csv(csv_path, warnings), newline="")))
    if not table or not table[0]:
        raise ValueError(f"{csv_path}: empty labels CSV")
    header = [h.strip() for h in table[0]]
    key = header[0].lower()
    if key not in ("id", "filename"):
        sep = next((s for s in (";", "\t") if len(header) == 1 and s in header[0]), None)
        hint = (f"; the file looks {sep!r}-separated: save it with ',' between columns (LibreOffice / "
                "Excel: CSV with field delimiter ',')" if sep else "")
        raise ValueError(f"{csv_path}: the first column must be 'id' or 'filename', got {header[0]!r}{hint}")
    if "labels" in (h.lower() for h in header[1:]):
        col, names = [h.lower() for h in header].index("labels"), None
    else:
        col, names = None, header[1:]
        if not names:
            raise ValueError(f"{csv_path}: no class columns and no 'labels' column after {header[0]!r}")
    found, seen = {}, defaultdict(list)
    on_disk = _index_images(images_dir)
    for line, row in enumerate(table[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"{csv_path}:{line}"
        if len(row) != len(header):
            errors.append(Issue(where, f"{len(row)} cells but the header has {len(header)}; row skipped"))
            continue
        ref = row[0].strip()
        image_id = Path(ref).with_suffix("").as_posix() if key == "filename" else ref
        seen[image_id].append(line)
        if col is not None:
            labels = [c.strip() for c in row[col].split(";") if c.strip()]
        else:
            bad = [(n, v) for n, v in zip(names, row[1:]) if v.strip() not in ("0", "1")]
            if bad:
                errors.append(Issue(where, f"class columns must be 0 or 1, got {bad[:3]}; row skipped"))
                continue
            labels = [n for n, v in zip(names, row[1:]) if v.strip() == "1"]
        if key == "filename":
            files = [images_dir / ref] if (images_dir / ref).is_file() else []
        else:
            files = on_disk.get(image_id, [])
        found[image_id] = (files, labels, where)
    for image_id, lines in seen.items():
        if len(lines) > 1:
            errors.append(Issue(f"{csv_path}", f"id {image_id!r} appears on lines {lines}; none of them used"))
            found.pop(image_id, None)
    for image_id in sorted(set(on_disk) - set(found) - set(seen)):
        warnings.append(Issue(str(on_disk[image_id][0]), f"no labels in {csv_path}; not added"))
    if names is None:  # 'labels' column: classes in order of first appearance
        names = list(dict.fromkeys(lab for _, labels, _ in found.values() for lab in labels))
    return names, found


def _decode_csv(csv_path: Path, warnings: list) -> str:
    """The CSV's text: UTF-8 (BOM allowed); else Windows-1252 / Latin-1 with a warning."""
    raw = csv_path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        first = err
    if b"\x00" in raw:
        raise ValueError(f"{csv_path}: not a text CSV (NUL bytes; UTF-16?): save it as CSV in UTF-8")
    for encoding in ("cp1252", "latin-1"):  # latin-1 decodes any byte
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        line = raw[: first.start].count(b"\n") + 1
        warnings.append(Issue(f"{csv_path}:{line}", f"not UTF-8 (byte 0x{raw[first.start]:02x}); read as "
                                                    f"{encoding}: check the names, or re-save the file as UTF-8"))
        return text
    raise AssertionError("latin-1 decodes every byte string")  # pragma: no cover


def _read_class_folders(images_dir: Path, warnings: list):
    folders = sorted(d for d in images_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not folders:
        raise ValueError(
            f"{images_dir} has no class sub-folders: pass a labels CSV or use the layout "
            "images_dir/<class>/<image>"
        )
    found = {}
    for path in sorted(images_dir.iterdir()):
        if is_image_file(path):
            warnings.append(Issue(str(path), "no labels (not inside a class folder); not added"))
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if not is_image_file(path):
                continue
            files, labels, _ = found.setdefault(path.stem, ([], [], str(path)))
            files.append(path)
            labels.append(folder.name)
    return [d.name for d in folders], found


# -- the project ---------------------------------------------------------------------------
def _background_column(project_or_path, classes, names, rows, background, background_class, source):
    """Find the labels table's background class, open / create the project, and rename that
    class to the project's background name in ``names`` and ``rows``.

    Returns ``(names, rows, column, project)``; ``column`` is the table's background name or None.
    """
    if background_class is not None:
        if background_class not in names:
            raise ValueError(f"{source}: no class {background_class!r} to use as background "
                             f"(--background-class); classes: {', '.join(names)}")
        column = background_class
    else:
        found = [n for n in names if n.strip().lower() in BACKGROUND_NAMES]
        if len(found) > 1:
            raise ValueError(f"{source}: classes {found} all look like background: pass "
                             "--background-class NAME (background_class=NAME) to say which")
        column = found[0] if found else None
    existing = isinstance(project_or_path, Project) or Path(project_or_path).exists()
    if existing:
        project = _open_or_create(project_or_path, classes, names, background, source)
        if project.background is None:
            if background_class is not None:
                raise ValueError(f"project {project.path} has no background class; "
                                 f"--background-class {background_class} cannot apply")
            return names, rows, None, project  # an existing foreground class of that name
    else:
        if column is not None and not (background or background_class is not None):
            raise ValueError(
                f"{source} lists a class {column!r}, the usual name of background: pass "
                f"--background-class {column} (background_class={column!r}) to make it the "
                "background class (class 0), or rename it if it is an object class")
        fg = [n for n in names if n != column]
        project = _open_or_create(project_or_path, classes, fg, background or column is not None, source)
    if column is None:
        return names, rows, None, project
    bg_name = project.classes[project.background]
    names = [bg_name if n == column else n for n in names]
    rows = {i: (files, [bg_name if lab == column else lab for lab in labels], where)
            for i, (files, labels, where) in rows.items()}
    return names, rows, column, project


def _background_note(project: Project, column: str | None, source) -> str:
    if project.background is None:
        return ("no background class: every pixel belongs to one of its image's labels "
                "(pass --background-class NAME for a dataset with background)")
    name = project.classes[project.background]
    if column is None:
        return (f"background: class {project.background} {name!r} (no background column in {source}; "
                "pixels with low CAM scores become background)")
    return f"background: {source}'s class {column!r} is the project's class {project.background} {name!r}"


def _open_or_create(project_or_path, classes, names, background, source) -> Project:
    if isinstance(project_or_path, Project):
        project = project_or_path
    elif Path(project_or_path).exists():
        project = Project.open(project_or_path)
    else:
        new = list(classes) if classes is not None else [n for n in names if n != "background"]
        if classes is None and "background" in names and not background:
            raise ValueError(f"{source} lists a 'background' class: pass background=True")
        return Project.create(project_or_path, new, background=background)
    if classes is not None:
        expected = [c for c in project.classes if c != "background" or project.background is None]
        if list(classes) != expected:
            raise ValueError(f"classes {list(classes)} differ from the project's {project.classes}")
    return project


def _ingest_one(report: IngestReport, image_id, files, labels, where, update_labels,
                max_pixels=DEFAULT_MAX_PIXELS) -> None:
    project = report.project
    if not files:
        report.warnings.append(Issue(where, f"labels for {image_id!r} but no image file found; skipped"))
        return
    unknown = sorted(set(labels) - set(project.classes))
    if unknown:
        report.errors.append(Issue(where, f"unknown class names {unknown} for {image_id!r}; valid: "
                                          f"{', '.join(project.classes)}; image not added"))
        return
    read = _read_files(report, image_id, files, max_pixels)
    if read is None:
        return
    path, image = read
    known = sorted({project.classes.index(lab) for lab in labels} - {project.background})
    if not known and project.background is None:
        report.warnings.append(Issue(str(path), "no image-level labels (all 0 / empty)"))
    if image_id in project:
        _check_existing(report, image_id, path, image, known, where, update_labels)
        return
    try:
        project.add_image(image_id, image, known, source=str(path))
    except (ValueError, TypeError) as err:
        report.errors.append(Issue(str(path), f"not added: {err}"))
        return
    report.added.append(image_id)


def _read_files(report: IngestReport, image_id, files, max_pixels=DEFAULT_MAX_PIXELS):
    """Read the file(s) of one id; several files (class folders) must hold the same pixels."""
    images = []
    for path in files:
        try:
            images.append((path, read_image(path, max_pixels=max_pixels)))
        except MemoryError:
            report.errors.append(Issue(str(path), "not enough memory to read it, not added"))
            return None
        except (OSError, ValueError) as err:
            problem = getattr(err, "problem", None) or str(err)
            report.errors.append(Issue(str(path), f"unreadable, not added ({problem})"))
            return None
    path, image = images[0]
    for other, img in images[1:]:
        if img.shape != image.shape or image_sha1(img) != image_sha1(image):
            report.errors.append(
                Issue(str(other), f"{image_id!r} is also {path} with different pixels; not added")
            )
            return None
    return path, image


def _check_existing(report: IngestReport, image_id, path, image, labels, where, update_labels):
    """Report (never overwrite) a changed file; keep or update differing labels."""
    project = report.project
    info = project.image_info(image_id)
    if info["sha1"] != image_sha1(image):
        report.changed.append(image_id)
        report.warnings.append(Issue(str(path), f"pixels differ from the stored image {image_id!r} "
                                                f"(added from {info['source']}); the stored image is kept"))
    else:
        report.unchanged.append(image_id)
    if labels == list(info["labels"]):
        return
    old = [project.classes[i] for i in info["labels"]]
    new = [project.classes[i] for i in labels]
    if update_labels:
        project.set_image_labels(image_id, labels)
        report.warnings.append(Issue(where, f"labels of {image_id!r} updated from {old} to {new}"))
    else:
        report.warnings.append(Issue(where, f"labels of {image_id!r} in the project are {old}, the "
                                            f"input says {new}; kept (pass update_labels=True to replace)"))
