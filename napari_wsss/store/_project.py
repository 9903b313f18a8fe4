"""The project: classes, image index, per-image labels/status and the public store API."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..conventions import IGNORE
from . import _checkpoints as ckpt
from ._files import TMP_SUFFIX, ProjectLock, make_key, read_json, utc_now
from ._nodes import NodeStore, consistent_read
from ._project_models import ProjectModels
from ._records import ImageRecord, Info, Status
from ._schema import SCHEMA_VERSION, ProjectError, ReadOnlyError, check_schema
from ._validate import (
    MASK_STAGES,
    STATUSES,
    check_cams,
    check_choice,
    check_classes,
    check_image,
    check_labels,
    check_mask,
    check_method,
)

__all__ = ["Project", "image_sha1"]

_IMAGES = "images"


def image_sha1(img: np.ndarray) -> str:
    """SHA-1 of an image's dtype, shape and pixels (as stored in ``image_info``)."""
    h = hashlib.sha1(f"{img.dtype.str}{img.shape}".encode())
    h.update(np.ascontiguousarray(img).data)
    return h.hexdigest()


def _remove_tmp(folder: Path) -> int:
    tmp = [f for f in folder.iterdir() if f.name.endswith(TMP_SUFFIX) and f.is_file()]
    for f in tmp:
        f.unlink(missing_ok=True)
    return len(tmp)


class Project(ProjectModels):
    """A zarr v3 annotation project (layout: ``docs/store.md``).

    Use :meth:`create` or :meth:`open`. Every array write is atomic: other processes (and
    a restart after a crash) see each array either before or after a write, never torn.
    """

    STATUSES = STATUSES
    MASK_STAGES = MASK_STAGES
    #: Seconds a superseded array stays on disk after the pointer swap (deleted by a later
    #: write to the same image after that, or by :meth:`gc` at any time).
    RETIRE_SECONDS = 60.0

    def __init__(self, path, *, _mode: str, _root: dict):
        self.path = Path(path)
        self.mode = _mode
        self.classes: list[str] = list(_root["classes"])
        self.background: int | None = _root["background"]
        self.foreground: list[int] = [i for i in range(len(self.classes)) if i != self.background]
        self.schema_version: int = _root["schema_version"]
        self._nodes = NodeStore(self.path, read_only=_mode == "r")
        self._lock = ProjectLock(self.path)
        self._index: dict[str, str] = {}
        self._index_stamp = None
        #: see :meth:`latest_checkpoint`
        self.checkpoint_fallback = False
        self.checkpoint_warnings: list[str] = []

    # -- opening ---------------------------------------------------------------------
    @classmethod
    def create(cls, path, classes: Sequence[str], *, background: bool = False) -> "Project":
        """Create an empty project directory (``FileExistsError`` if ``path`` exists).

        Parameters
        ----------
        path : str or Path
            New directory, conventionally ending in ``.zarr``.
        classes : sequence of str
            Foreground class names (with ``background=True``, ``'background'`` is added as
            class 0 unless already first).
        background : bool
            Whether the project has a background class.
        """
        path = Path(path)
        if path.exists():
            raise FileExistsError(f"{path} already exists; open it with Project.open({str(path)!r})")
        classes = check_classes(classes, background)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.creating")
        shutil.rmtree(tmp, ignore_errors=True)
        root = {
            "schema_version": SCHEMA_VERSION,
            "classes": classes,
            "background": 0 if background else None,
            "created": utc_now(),
        }
        nodes = NodeStore(tmp, read_only=False)
        nodes.write_group("", root)
        nodes.write_group(_IMAGES, {"index": []})
        nodes.write_group("models", {})
        try:
            os.rename(tmp, path)  # the project appears complete or not at all
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise FileExistsError(f"{path} already exists") from None
        return cls(path, _mode="r+", _root=root)

    @classmethod
    def open(cls, path, mode: str = "r+") -> "Project":
        """Open a project; ``mode="r"`` is read-only, ``"r+"`` read-write."""
        path = Path(path)
        check_choice(mode, ("r", "r+"), "mode")
        if not path.is_dir():
            raise FileNotFoundError(f"no project directory at {path}")
        try:
            meta = read_json(path / "zarr.json")
        except FileNotFoundError:
            raise ProjectError(f"{path} is not a zarr v3 group (no zarr.json)") from None
        root = meta.get("attributes", {}).get("napari_wsss")
        if meta.get("node_type") != "group" or not isinstance(root, dict):
            raise ProjectError(f"{path} is a zarr store but not a napari-wsss project")
        for step in check_schema(path, root.get("schema_version"), writable=mode == "r+"):
            with ProjectLock(path):
                step(path)
            root = read_json(path / "zarr.json")["attributes"]["napari_wsss"]
        return cls(path, _mode=mode, _root=root)

    def __reduce__(self):
        """Pickles as ``Project.open(path, mode)`` (e.g. for DataLoader worker processes)."""
        return (type(self).open, (str(self.path), self.mode))

    def __repr__(self) -> str:
        return f"Project({str(self.path)!r}, mode={self.mode!r}, {len(self)} images, classes={self.classes})"

    # -- index -----------------------------------------------------------------------
    def _refresh_index(self) -> dict[str, str]:
        file = self._nodes.group_file(_IMAGES)
        st = os.stat(file)
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp != self._index_stamp:
            entries = self._nodes.read_group(_IMAGES)["index"]
            self._index = {image_id: key for image_id, key in entries}
            self._index_stamp = stamp
        return self._index

    def _key(self, image_id: str) -> str:
        key = self._index.get(image_id)
        if key is None:
            key = self._refresh_index().get(image_id)
        if key is None:
            raise KeyError(f"no image {image_id!r} in project {self.path}")
        return key

    def image_ids(self) -> list[str]:
        """Image ids in insertion order."""
        return list(self._refresh_index())

    def __len__(self) -> int:
        return len(self._refresh_index())

    def __contains__(self, image_id) -> bool:
        return image_id in self._index or image_id in self._refresh_index()

    def _writable(self):
        if self.mode == "r":
            raise ReadOnlyError(
                f"project {self.path} is open read-only (mode='r'); "
                "use Project.open(path, mode='r+') to write"
            )
        return self._lock

    def _meta(self, image_id: str) -> dict:
        return self._nodes.read_group(f"{_IMAGES}/{self._key(image_id)}")

    def _set_meta(self, image_id: str, meta: dict) -> None:
        self._nodes.write_group(f"{_IMAGES}/{self._key(image_id)}", meta)

    # -- images & labels ---------------------------------------------------------------
    def add_image(self, image_id: str, image, labels, *, source=None) -> None:
        """Add a new image with its image-level labels.

        Parameters
        ----------
        image_id : str
            Any non-empty string (mapped to a safe zarr key, see ``docs/store.md``).
        image : ndarray, shape (H, W) or (H, W, C)
            Stored as given (dtype kept).
        labels : sequence of int or str
            Foreground class indices or names.
        source : str, optional
            Where the image came from (e.g. its file path).
        """
        if not isinstance(image_id, str) or not image_id:
            raise ValueError(f"image ids must be non-empty strings, got {image_id!r}")
        img = check_image(image)
        labs = check_labels(labels, self.classes, self.background)
        with self._writable():
            index = self._refresh_index()
            if image_id in index:
                raise ValueError(f"image {image_id!r} is already in project {self.path}")
            key = make_key(image_id, {k.lower() for k in index.values()})
            group = f"{_IMAGES}/{key}"
            shutil.rmtree(self.path / group, ignore_errors=True)  # leftover of a killed add
            now = utc_now()
            self._nodes.write_group(group, {})
            name = self._nodes.new_array(
                group, "image", img, fill_value=0, attrs={"kind": "image", "time": now}
            )
            meta = {
                "id": image_id,
                "labels": labs,
                "source": None if source is None else str(source),
                "sha1": image_sha1(img),
                "added": now,
                "status": {"status": "new", "time": now, "model_version": None},
                "arrays": {"image": name},
            }
            self._nodes.write_group(group, meta)
            entries = [[i, k] for i, k in index.items()] + [[image_id, key]]
            self._nodes.write_group(_IMAGES, {"index": entries})  # commit point
            self._refresh_index()

    def image(self, image_id: str) -> np.ndarray:
        """The stored image, ``(H, W[, C])``."""
        _, data = consistent_read(
            lambda: self._meta(image_id),
            lambda m: self._read(image_id, m["arrays"]["image"])[0],
        )
        return data

    def image_shape(self, image_id: str) -> tuple[int, int]:
        """``(H, W)`` of an image, from metadata only."""
        _, shape = consistent_read(
            lambda: self._meta(image_id),
            lambda m: self._nodes.array_meta(self._path(image_id, m["arrays"]["image"]))[0][:2],
        )
        return tuple(shape)

    def image_info(self, image_id: str) -> dict:
        """``id``, ``labels``, ``source``, ``sha1`` (of the pixels), ``added`` time."""
        meta = self._meta(image_id)
        return {k: meta[k] for k in ("id", "labels", "source", "sha1", "added")}

    def image_labels(self, image_id: str) -> np.ndarray:
        """Sorted foreground class indices, int64."""
        return np.asarray(self._meta(image_id)["labels"], dtype=np.int64)

    def set_image_labels(self, image_id: str, labels) -> None:
        """Replace the image-level labels (indices or class names)."""
        labs = check_labels(labels, self.classes, self.background)
        with self._writable():
            meta = self._meta(image_id)
            meta["labels"] = labs
            self._set_meta(image_id, meta)

    # -- status ------------------------------------------------------------------------
    def set_status(self, image_id: str, status: str, *, model_version: str | None = None) -> None:
        """Set the annotation status (one of :attr:`STATUSES`), stamped with the UTC time."""
        check_choice(status, STATUSES, "status")
        with self._writable():
            meta = self._meta(image_id)
            meta["status"] = {"status": status, "time": utc_now(), "model_version": model_version}
            self._set_meta(image_id, meta)

    def status(self, image_id: str) -> Status:
        """Status, time (ISO 8601 UTC) and model version of the last status change."""
        return Status(**self._meta(image_id)["status"])

    # -- arrays ------------------------------------------------------------------------
    def _path(self, image_id: str, name: str) -> str:
        return f"{_IMAGES}/{self._key(image_id)}/{name}"

    def _read(self, image_id: str, name: str):
        return self._nodes.read_array(self._path(image_id, name))

    def _write_slot(self, image_id, slot, prefix, data, *, fill_value, attrs) -> None:
        with self._writable():
            key = self._key(image_id)
            group = f"{_IMAGES}/{key}"
            attrs = {**attrs, "time": utc_now()}
            name = self._nodes.new_array(group, prefix, data, fill_value=fill_value, attrs=attrs)
            meta = self._nodes.read_group(group)
            old = meta["arrays"].get(slot)
            meta["arrays"][slot] = name
            # The superseded array stays readable for RETIRE_SECONDS: a plain zarr reader that
            # resolved the old pointer just before the swap still finds it (docs/store.md).
            now = time.time()
            retired = [[n, t] for n, t in meta.get("retired", []) if n not in meta["arrays"].values()]
            expired = [n for n, t in retired if now - t >= self.RETIRE_SECONDS]
            meta["retired"] = [[n, t] for n, t in retired if n not in expired]
            if old is not None:
                meta["retired"].append([old, now])
            self._nodes.write_group(group, meta)  # the atomic swap
            for n in expired:
                self._nodes.delete(f"{group}/{n}")

    def _read_slot(self, image_id: str, slot: str):
        _, out = consistent_read(
            lambda: self._meta(image_id),
            lambda m: None if slot not in m["arrays"] else self._read(image_id, m["arrays"][slot]),
        )
        return out

    def _slots(self, image_id: str, kind: str) -> list[str]:
        pre = f"{kind}/"
        return [s[len(pre):] for s in self._meta(image_id)["arrays"] if s.startswith(pre)]

    def write_cams(self, image_id: str, method: str, cams, classes, *, model_version: str) -> None:
        """Store CAMs ``(K, h, w)`` (float32) of ``method`` and the class of each slice."""
        check_method(method)
        data, idx = check_cams(cams, classes, len(self.classes))
        attrs = {"kind": "cams", "method": method, "classes": idx, "model_version": model_version}
        self._write_slot(image_id, f"cam/{method}", f"cam-{method}", data, fill_value=0.0, attrs=attrs)

    def read_cams(self, image_id: str, method: str) -> tuple[np.ndarray, np.ndarray] | None:
        """``(cams (K, h, w) float32, classes (K,) int64)`` or ``None`` if never written."""
        got = self._read_slot(image_id, f"cam/{check_method(method)}")
        if got is None:
            return None
        data, attrs = got
        return data, np.asarray(attrs["classes"], dtype=np.int64)

    def cam_methods(self, image_id: str) -> list[str]:
        """CAM methods stored for an image, in the order first written."""
        return self._slots(image_id, "cam")

    def write_mask(self, image_id: str, stage: str, mask, *, model_version: str) -> None:
        """Store the ``(H, W)`` uint8 pseudo-mask of a refinement ``stage``."""
        check_choice(stage, MASK_STAGES, "mask stage")
        data = check_mask(mask, self.image_shape(image_id), len(self.classes), f"{stage} mask")
        attrs = {"kind": "mask", "stage": stage, "model_version": model_version}
        self._write_slot(image_id, f"mask/{stage}", f"mask-{stage}", data, fill_value=IGNORE, attrs=attrs)

    def read_mask(self, image_id: str, stage: str) -> np.ndarray | None:
        """The ``(H, W)`` uint8 mask of ``stage`` or ``None``."""
        got = self._read_slot(image_id, f"mask/{check_choice(stage, MASK_STAGES, 'mask stage')}")
        return None if got is None else got[0]

    def mask_stages(self, image_id: str) -> list[str]:
        """Stages with a stored mask, in the order first written."""
        return self._slots(image_id, "mask")

    def array_info(self, image_id: str, slot: str) -> Info | None:
        """Provenance of a stored array: ``slot`` is ``image``, ``corrections``,
        ``cam/<method>`` or ``mask/<stage>``; ``None`` if absent."""
        meta = self._meta(image_id)
        name = meta["arrays"].get(slot)
        if name is None:
            return None
        shape, dtype, attrs = self._nodes.array_meta(self._path(image_id, name))
        return Info(slot, name, tuple(shape), str(dtype), attrs.get("time"), attrs.get("model_version"))

    def write_corrections(self, image_id: str, mask) -> None:
        """Store the annotator's sparse corrections, ``(H, W)`` uint8: class indices,
        254 (`IGNORE_PAINTED`) = painted "ignore", 255 = unlabeled."""
        data = check_mask(mask, self.image_shape(image_id), len(self.classes), "corrections",
                          painted_ignore=True)
        self._write_slot(image_id, "corrections", "corrections", data, fill_value=IGNORE,
                         attrs={"kind": "corrections"})

    def read_corrections(self, image_id: str) -> np.ndarray:
        """Corrections ``(H, W)`` uint8 (class indices, 254 = painted "ignore", 255 =
        unlabeled); all 255 when none were saved. `split_corrections` turns them into a
        mask with 255 for both kinds of ignore."""
        got = self._read_slot(image_id, "corrections")
        if got is None:
            return np.full(self.image_shape(image_id), IGNORE, dtype=np.uint8)
        return got[0]

    def load(self, image_id: str) -> ImageRecord:
        """Everything the annotation widget shows for one image, in one consistent read."""

        def read_all(meta):
            arrays = {slot: self._read(image_id, name)[0] for slot, name in meta["arrays"].items()
                      if not slot.startswith("cam/")}
            return arrays

        meta, arrays = consistent_read(lambda: self._meta(image_id), read_all)
        image = arrays.pop("image")
        corr = arrays.pop("corrections", None)
        if corr is None:
            corr = np.full(image.shape[:2], IGNORE, dtype=np.uint8)
        return ImageRecord(
            image_id=image_id,
            image=image,
            labels=np.asarray(meta["labels"], dtype=np.int64),
            masks={slot[len("mask/"):]: a for slot, a in arrays.items()},
            corrections=corr,
            status=Status(**meta["status"]),
            cam_methods=[s[4:] for s in meta["arrays"] if s.startswith("cam/")],
        )

    # -- pipeline defaults -------------------------------------------------------------
    def write_calibration(self, calibration: dict) -> None:
        """Store the pipeline defaults chosen from this project's data with their evidence
        (:func:`napari_wsss.calibrate.choose_defaults`; JSON-serialisable dict) in the
        ``calibration`` group, replacing earlier ones."""
        if not isinstance(calibration, dict):
            raise TypeError(f"a calibration must be a dict, got {type(calibration).__name__}")
        with self._writable():
            self._nodes.write_group("calibration", {**calibration, "time": utc_now()})

    def read_calibration(self) -> dict | None:
        """The stored pipeline defaults and their evidence, or ``None`` (never calibrated)."""
        try:
            return self._nodes.read_group("calibration")
        except FileNotFoundError:
            return None

    # -- maintenance -------------------------------------------------------------------
    def gc(self) -> int:
        """Delete what no pointer references; return the count.

        Removes superseded arrays (also those still inside their ``RETIRE_SECONDS`` grace
        period: a plain zarr reader reading at this moment may fail, retry it), arrays left
        by killed writers, image groups missing from the index (a killed ``add_image``),
        incomplete checkpoint versions and temporary files.
        """
        with self._writable():
            keys = set(self._refresh_index().values())
            removed = _remove_tmp(self.path) + _remove_tmp(self.path / _IMAGES)
            for entry in (self.path / _IMAGES).iterdir():
                if not entry.is_dir():
                    continue
                if entry.name not in keys:
                    shutil.rmtree(entry, ignore_errors=True)
                    removed += 1
                    continue
                meta = self._nodes.read_group(f"{_IMAGES}/{entry.name}")
                live = set(meta["arrays"].values())
                if meta.pop("retired", None):
                    self._nodes.write_group(f"{_IMAGES}/{entry.name}", meta)
                removed += _remove_tmp(entry)
                for sub in entry.iterdir():
                    if sub.is_dir() and sub.name not in live:
                        self._nodes.delete(f"{_IMAGES}/{entry.name}/{sub.name}")
                        removed += 1
            removed += ckpt.remove_incomplete(self.path)
            return removed
