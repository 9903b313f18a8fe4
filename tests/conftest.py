"""Suite-wide settings.

Torch's intra-op thread pool spins when the machine's cores are busy (the suite starts
``torchrun`` workers and trainer subprocesses next to itself): with 2 threads on a loaded
2-core machine a MobileNetV2 forward took 140x longer than with 1. Tests therefore run torch
single-threaded, and so do the processes they start (through the environment).

Real-data tests are marked ``@pytest.mark.data`` and take the ``wsss_data`` fixture: the
directory named by the ``WSSS_DATA`` environment variable, which holds the shared datasets
(``msrc_v2/``, ``ccp/``, ``drosophila_vnc_sstem/``). Without ``WSSS_DATA`` they are deselected
(a fresh clone has no datasets) and the terminal summary says how to run them; ``.ci/run`` sets
it, so CI runs them. A ``WSSS_DATA`` that is set but wrong fails those tests instead of
hiding them.
"""

import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

DATA_ENV = "WSSS_DATA"
_deselected: list = []


def pytest_configure(config):
    config.addinivalue_line(
        "markers", f"data: needs the shared datasets (directory in ${DATA_ENV}); deselected without it"
    )


def pytest_collection_modifyitems(config, items):
    if os.environ.get(DATA_ENV):
        return
    keep = [item for item in items if item.get_closest_marker("data") is None]
    _deselected[:] = [item for item in items if item.get_closest_marker("data") is not None]
    if _deselected:
        config.hook.pytest_deselected(items=list(_deselected))
        items[:] = keep


def pytest_terminal_summary(terminalreporter):
    if _deselected:
        terminalreporter.write_line(
            f"{len(_deselected)} real-data tests deselected: set {DATA_ENV}=/path/to/datasets to run them"
        )


@pytest.fixture(scope="session")
def wsss_data() -> Path:
    """The shared datasets directory (``$WSSS_DATA``); fails if it is set but not a directory."""
    value = os.environ.get(DATA_ENV)
    if not value:  # only reachable when a data test is requested explicitly by node id
        pytest.fail(f"this test needs the shared datasets: set {DATA_ENV}=/path/to/datasets")
    path = Path(value).expanduser()
    if not path.is_dir():
        pytest.fail(f"{DATA_ENV}={value} is not a directory (it should hold msrc_v2/, ccp/, ...)")
    return path
