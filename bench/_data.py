"""Where the benchmarks find the shared datasets: ``--data DIR``, default ``$WSSS_DATA``.

``DIR`` holds ``msrc_v2/``, ``ccp/``, ``drosophila_vnc_sstem/`` (the same setting the real-data
tests use, see ``tests/conftest.py``). No machine path is built in.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

__all__ = ["DATA_ENV", "add_data_argument", "dataset_dir", "work_dir"]

DATA_ENV = "WSSS_DATA"


def add_data_argument(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """``--data DIR``; without it ``$WSSS_DATA``; ``required=False``: the bench can run without data."""
    parser.add_argument(
        "--data", default=os.environ.get(DATA_ENV) or None, metavar="DIR",
        help=f"directory holding the shared datasets (msrc_v2/, ccp/, ...); default ${DATA_ENV}"
             + ("" if required else "; without it synthetic data"),
    )


def dataset_dir(data: str | None, name: str, *, required: bool = True) -> Path | None:
    """``data/name``; exits with one line when it is needed but missing (``None`` if optional)."""
    if not data:
        if not required:
            return None
        raise SystemExit(f"this benchmark needs the {name} dataset: pass --data DIR or set {DATA_ENV}=DIR "
                         f"(DIR holds {name}/)")
    path = Path(data).expanduser() / name
    if not path.is_dir():
        raise SystemExit(f"{path} does not exist: --data / {DATA_ENV} must name the folder holding {name}/")
    return path


def work_dir(name: str) -> str:
    """Default scratch folder of a benchmark (projects, checkpoints, caches): ``name`` in the
    system's temporary directory."""
    return os.path.join(tempfile.gettempdir(), name)
