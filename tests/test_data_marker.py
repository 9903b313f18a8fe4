"""The real-data marker of tests/conftest.py: deselected with a hint without WSSS_DATA, run with it."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")
TESTS = '''
import pytest

@pytest.mark.data
def test_reads_data(wsss_data):
    assert (wsss_data / "msrc_v2" / "classes.txt").read_text() == "cat dog"

def test_plain():
    pass
'''


@pytest.fixture
def suite(tmp_path):
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_x.py").write_text(TESTS)
    data = tmp_path / "datasets"
    (data / "msrc_v2").mkdir(parents=True)
    (data / "msrc_v2" / "classes.txt").write_text("cat dog")
    return tmp_path, data


def _pytest(folder, **env):
    base = {k: v for k, v in os.environ.items() if k != "WSSS_DATA"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xvfb",
                           str(folder)],
                          capture_output=True, text=True, cwd=folder, env={**base, **env}, timeout=300)


def test_without_wsss_data_the_data_tests_are_deselected_with_a_hint(suite):
    folder, _ = suite
    proc = _pytest(folder)
    assert proc.returncode == 0, proc.stdout
    assert "1 passed, 1 deselected" in proc.stdout
    assert "1 real-data tests deselected: set WSSS_DATA=/path/to/datasets to run them" in proc.stdout


def test_with_wsss_data_they_run_and_a_wrong_one_fails(suite):
    folder, data = suite
    proc = _pytest(folder, WSSS_DATA=str(data))
    assert proc.returncode == 0 and "2 passed" in proc.stdout, proc.stdout
    assert "deselected" not in proc.stdout
    proc = _pytest(folder, WSSS_DATA=str(folder / "nowhere"))
    assert proc.returncode == 1 and "is not a directory" in proc.stdout, proc.stdout
