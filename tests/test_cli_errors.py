"""Bad input through the real ``napari-wsss`` command: one line naming the file, never a traceback.

Each case runs ``napari_wsss.cli.main([...])`` (stdout / stderr captured) or, where a read-only
place is needed, a real process with the folder mounted read-only (a private mount namespace
through ``unshare``; ``chmod`` when not root).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_wsss.cli import main
from napari_wsss.io import DEFAULT_MAX_PIXELS
from napari_wsss.store import Project


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header announces ``width x height`` pixels (a decompression bomb's header)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


@pytest.fixture
def bad_folder(tmp_path):
    """Good images around every kind of bad file, in CSV order: good ones come after bad ones."""
    rng = np.random.default_rng(0)
    images = tmp_path / "imgs"
    images.mkdir()
    good = {}
    for name in ("a", "c", "z"):
        good[name] = rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)
        Image.fromarray(good[name]).save(images / f"{name}.png")
    _png_header_only(images / "b_bomb.png", 20000, 10000)  # 200 Mpx > Pillow's 179 Mpx
    (images / "d_empty.png").write_bytes(b"")
    raw = (images / "a.png").read_bytes()
    (images / "e_trunc.png").write_bytes(raw[: len(raw) // 2])
    (images / "f_text.jpg").write_text("not a jpeg")
    rows = ["a,1,0", "b_bomb,1,0", "c,0,1", "d_empty,1,0", "e_trunc,0,1", "f_text,1,1", "z,1,1"]
    (tmp_path / "labels.csv").write_text("id,cat,dog\n" + "\n".join(rows) + "\n")
    return tmp_path, good


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_ingest_goes_past_bad_files_and_exits_nonzero(bad_folder, capsys):
    root, good = bad_folder
    code, out, err = _cli(capsys, "ingest", root / "imgs", "--labels", root / "labels.csv",
                          "--project", root / "p.zarr")
    assert code == 1
    assert "4 file(s) or row(s) failed" in _one_error_line(err)
    errors = {ln.split(":")[0].split("/")[-1]: ln for ln in out.splitlines() if ln.startswith("ERROR")}
    assert sorted(errors) == ["b_bomb.png", "d_empty.png", "e_trunc.png", "f_text.jpg"]
    assert f"more than the limit of {DEFAULT_MAX_PIXELS:,}" in errors["b_bomb.png"]
    assert "--max-pixels" in errors["b_bomb.png"]
    assert "truncated" in errors["e_trunc.png"] and "empty file" in errors["d_empty.png"]
    p = Project.open(root / "p.zarr", "r")
    assert p.image_ids() == ["a", "c", "z"]  # the images after the bomb were ingested too
    for name, img in good.items():
        assert np.array_equal(p.image(name), img)
    # the same input again with --allow-failures: nothing new, exit 0
    code, out, err = _cli(capsys, "ingest", root / "imgs", "--labels", root / "labels.csv",
                          "--project", root / "p.zarr", "--allow-failures")
    assert code == 0 and err == "" and "4 errors" in out


def test_max_pixels_is_the_readers_limit(bad_folder, capsys):
    root, _ = bad_folder
    code, out, _ = _cli(capsys, "ingest", root / "imgs", "--labels", root / "labels.csv",
                        "--project", root / "small.zarr", "--max-pixels", 100)
    assert code == 1
    assert "imgs/a.png: unreadable, not added (120 pixels, more than the limit of 100" in out
    assert Project.open(root / "small.zarr", "r").image_ids() == []
    # no limit: the bomb's header passes and its (missing) pixel data is what fails
    code, out, _ = _cli(capsys, "ingest", root / "imgs", "--labels", root / "labels.csv",
                        "--project", root / "nolimit.zarr", "--max-pixels", 0)
    bomb = next(ln for ln in out.splitlines() if "b_bomb.png" in ln)
    assert "truncated or corrupt image" in bomb and "limit" not in bomb


def test_latin1_csv_is_read_with_a_warning(bad_folder, capsys):
    root, _ = bad_folder
    (root / "latin.csv").write_bytes("id,café,dog\na,1,0\nc,0,1\n".encode("latin-1"))
    code, out, err = _cli(capsys, "ingest", root / "imgs", "--labels", root / "latin.csv",
                          "--project", root / "l.zarr")
    assert code == 0 and err == ""
    assert f"{root / 'latin.csv'}:1: not UTF-8 (byte 0xe9); read as cp1252" in out
    p = Project.open(root / "l.zarr", "r")
    assert p.classes == ["café", "dog"] and p.image_labels("a").tolist() == [0]


def test_semicolon_csv_gets_a_hint(bad_folder, capsys):
    root, _ = bad_folder
    (root / "semi.csv").write_text("id;cat;dog\na;1;0\n")
    code, out, err = _cli(capsys, "ingest", root / "imgs", "--labels", root / "semi.csv",
                          "--project", root / "s.zarr")
    line = _one_error_line(err)
    assert code == 2 and str(root / "semi.csv") in line and "looks ';'-separated" in line
    assert not (root / "s.zarr").exists()


def test_export_out_is_a_file(bad_folder, capsys):
    root, _ = bad_folder
    _cli(capsys, "ingest", root / "imgs", "--labels", root / "labels.csv", "--project", root / "p.zarr")
    (root / "afile").write_text("keep me")
    code, _, err = _cli(capsys, "export", root / "p.zarr", "--source", "corrected", "--out", root / "afile")
    line = _one_error_line(err)
    assert code == 2 and f"--out {root / 'afile'} is a file" in line
    assert (root / "afile").read_text() == "keep me"


# -- read-only places: real processes --------------------------------------------------------
_RO_SCRIPT = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" || exit 99; exec "$@"'


def _can_make_read_only() -> bool:
    """Whether this machine can show a process a read-only folder: chmod without root; as root
    a read-only bind mount in a user + mount namespace (``unshare -rm``), probed once."""
    if os.geteuid() != 0:
        return True
    if shutil.which("unshare") is None:
        return False
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(["unshare", "-rm", "sh", "-c", _RO_SCRIPT, tmp, "true"],
                              capture_output=True, text=True, timeout=60)
    return proc.returncode == 0


needs_read_only = pytest.mark.skipif(not _can_make_read_only(),
                                     reason="root without a working `unshare -rm`: no read-only folder")


def _run_readonly(readonly: Path, *argv):
    """Run the CLI in a process that sees ``readonly`` read-only (EROFS, or EACCES without root)."""
    cmd = [sys.executable, "-m", "napari_wsss.cli", *map(str, argv)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [readonly, *readonly.rglob("*")]}
        for p in modes:
            p.chmod(modes[p] & ~0o222)
        try:
            return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", _RO_SCRIPT, str(readonly), *cmd],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 99, f"the read-only mount failed: {proc.stderr.strip()[:200]}"
    return proc


def _assert_one_line(proc, *expected):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    line = _one_error_line(proc.stderr)
    for text in expected:
        assert text in line, line
    return line


@pytest.fixture
def ro_project(bad_folder, capsys):
    root, _ = bad_folder
    _cli(capsys, "ingest", root / "imgs", "--labels", root / "labels.csv", "--project", root / "ro" / "p.zarr")
    return root, root / "ro" / "p.zarr"


@needs_read_only
def test_export_to_a_read_only_place(ro_project):
    root, project = ro_project
    (root / "ro" / "out").mkdir()
    proc = _run_readonly(root / "ro", "export", project, "--out", root / "ro" / "out" / "masks")
    _assert_one_line(proc, "napari-wsss export: error:", str(root / "ro" / "out" / "masks"))
    assert not (root / "ro" / "out" / "masks").exists()


@needs_read_only
def test_ingest_and_train_on_a_read_only_project(ro_project):
    root, project = ro_project
    before = sorted(p.name for p in project.rglob("*"))
    proc = _run_readonly(root / "ro", "ingest", root / "imgs", "--labels", root / "labels.csv",
                         "--project", project)
    _assert_one_line(proc, f"napari-wsss ingest: error: {project} is not writable", "copy the project")
    proc = _run_readonly(root / "ro", "train", project, "--stage", "classifier")
    _assert_one_line(proc, f"napari-wsss train: error: {project} is not writable")
    assert sorted(p.name for p in project.rglob("*")) == before
