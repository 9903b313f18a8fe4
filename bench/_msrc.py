"""MSRC-v2 for benchmarks: a fixed seeded train/test split, per-split projects, ground truth.

Shared by ``bench/quality.py``, ``bench/loop.py --quality`` and ``bench/xai.py``. The data is
``msrc_v2/`` under ``--data DIR`` / ``$WSSS_DATA`` (``use_data``) and never leaves it; projects and
checkpoints go to a work directory.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from napari_wsss.ingest import ingest_folder
from napari_wsss.maskio import read_mask_file
from napari_wsss.store import Project

__all__ = ["use_data", "msrc_root", "all_ids", "split_ids", "split_project", "read_gt"]

_ROOT: list[Path] = []


def use_data(data: str | None) -> Path:
    """Set the MSRC-v2 folder from ``--data`` / ``$WSSS_DATA`` (exits with a message if absent)."""
    from _data import dataset_dir

    _ROOT[:] = [dataset_dir(data, "msrc_v2")]
    return _ROOT[0]


def msrc_root() -> Path:
    """The MSRC-v2 folder chosen by :func:`use_data`."""
    if not _ROOT:
        raise RuntimeError("call _msrc.use_data(args.data) first")
    return _ROOT[0]


def all_ids(root=None) -> list[str]:
    """Ids of the labels table, sorted."""
    with open(Path(root or msrc_root()) / "image_labels.csv", newline="", encoding="utf-8-sig") as f:
        return sorted(row[0] for row in list(csv.reader(f))[1:] if row)


def split_ids(*, test_fraction: float = 0.3, seed: int = 0, subset: int | None = None,
              root=None) -> tuple[list[str], list[str]]:
    """Fixed seeded split ``(train_ids, test_ids)``.

    Parameters
    ----------
    test_fraction : float
        Share of the images held out (rounded to the nearest image).
    seed : int
        Seed of the permutation (``numpy.random.default_rng``).
    subset : int, optional
        Use only the first ``subset`` images of the permutation (quick runs); the split
        fraction applies to those.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    ids = all_ids(root)
    order = np.random.default_rng(seed).permutation(len(ids))
    if subset is not None:
        order = order[:subset]
    n_test = int(round(len(order) * test_fraction))
    test = sorted(ids[i] for i in order[:n_test])
    train = sorted(ids[i] for i in order[n_test:])
    return train, test


def split_project(path, ids, *, root=None) -> Project:
    """A project (created, or reused when it exists) holding the images ``ids`` with labels."""
    root = root or msrc_root()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = path.with_suffix(".csv")
    wanted = set(ids)
    with open(Path(root) / "image_labels.csv", newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    with open(table, "w", newline="") as f:
        csv.writer(f).writerows([rows[0]] + [r for r in rows[1:] if r and r[0] in wanted])
    report = ingest_folder(path, Path(root) / "images", table, background=False)
    if not report.ok:
        raise RuntimeError(f"ingesting {path} failed:\n{report}")
    project = report.project
    missing = wanted - set(project.image_ids())
    if missing:
        raise RuntimeError(f"{path}: {len(missing)} image(s) missing after ingest, e.g. {sorted(missing)[:3]}")
    return project


def read_gt(image_id: str, *, root=None) -> np.ndarray:
    """Ground-truth mask ``(H, W)`` uint8 of an image (class indices, 255 = void)."""
    return np.asarray(read_mask_file(Path(root or msrc_root()) / "masks" / f"{image_id}.png"))
