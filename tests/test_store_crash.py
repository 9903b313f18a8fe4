"""Atomicity of the project store with real processes: SIGKILL, concurrent reader and writers.

Every array a writer stores is derived from a version counter ``v`` (its values and, for
CAMs, its shape), and its ``model_version`` attribute names ``v``; a torn or mixed array
would break that correspondence.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from napari_wsss.store import Project

pytestmark = pytest.mark.slow

N_CLASSES = 200
SHAPE = (24, 20)

WRITER = r"""
import sys
import numpy as np
from napari_wsss.store import Project

path, v, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
p = Project.open(path)
print("ready", flush=True)
sys.stdin.readline()  # wait for "go": the test pre-starts writers while checking
while True:
    v += 1
    if mode == "add" or v % 4 == 1:
        p.add_image(f"n{v}", np.full((24, 20), v % 250, np.uint8), [v % 200])
    for image_id in p.image_ids():
        p.write_mask(image_id, "crf", np.full((24, 20), v % 200, np.uint8), model_version=f"v{v}")
        k, h = 1 + v % 3, 4 + v % 5
        p.write_cams(image_id, "gradcam", np.full((k, h, 3), v, np.float32), list(range(1, k + 1)),
                     model_version=f"v{v}")
        p.write_corrections(image_id, np.full((24, 20), v % 200, np.uint8))
        p.set_status(image_id, "prelabelled", model_version=f"v{v}")
        if mode == "once":
            break
    if mode == "once":
        print("done", v, flush=True)
        break
"""


def _spawn(path, version, mode="loop"):
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(version), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _go(proc):
    line = proc.stdout.readline()
    assert line.strip() == "ready", proc.stderr.read()
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return proc


def _start(path, version, mode="loop"):
    return _go(_spawn(path, version, mode))


def _version(model_version):
    assert model_version.startswith("v"), model_version
    return int(model_version[1:])


def _check_project(path, max_version):
    """Every array is exactly one version <= max_version; returns the highest seen."""
    p = Project.open(path, mode="r")
    seen = 0
    for image_id in p.image_ids():
        if image_id.startswith("n"):
            v = int(image_id[1:])
            img = p.image(image_id)
            assert img.shape == SHAPE and (img == v % 250).all(), image_id
            assert p.image_labels(image_id).tolist() == [v % 200]
        else:
            assert np.array_equal(p.image(image_id), np.arange(480, dtype=np.uint16).reshape(SHAPE))
        if p.mask_stages(image_id):
            mask = p.read_mask(image_id, "crf")
            v = _version(p.array_info(image_id, "mask/crf").model_version)
            assert mask.shape == SHAPE and (mask == v % 200).all(), (image_id, v, np.unique(mask))
            assert 0 < v <= max_version
            seen = max(seen, v)
        if p.cam_methods(image_id):
            cams, classes = p.read_cams(image_id, "gradcam")
            v = _version(p.array_info(image_id, "cam/gradcam").model_version)
            k, h = 1 + v % 3, 4 + v % 5
            assert cams.shape == (k, h, 3) and (cams == v).all() and classes.tolist() == list(range(1, k + 1))
            assert 0 < v <= max_version
        corr = p.read_corrections(image_id)
        assert corr.shape == SHAPE and len(np.unique(corr)) == 1
        st = p.status(image_id)
        if st.model_version is not None:
            assert st.status == "prelabelled" and 0 < _version(st.model_version) <= max_version
    return seen


def _new_project(tmp_path):
    p = Project.create(tmp_path / "p.zarr", [f"c{i}" for i in range(N_CLASSES)])
    for i in range(2):
        p.add_image(f"base{i}", np.arange(480, dtype=np.uint16).reshape(SHAPE), [i])
    return p


def test_sigkill_at_random_points_leaves_old_or_new_arrays(tmp_path):
    p = _new_project(tmp_path)
    rng = np.random.default_rng(1)
    version, kills, step = 0, 0, 100000
    starts = [step * (r + 1) for r in range(24)]  # versions only grow across restarts
    waiting = _spawn(p.path, starts[0])
    for round_, start in enumerate(starts):
        proc = _go(waiting)
        if round_ + 1 < len(starts):  # its imports overlap this round
            waiting = _spawn(p.path, starts[round_ + 1])
        time.sleep(rng.uniform(0.02, 0.2))
        assert proc.poll() is None, proc.stderr.read()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += proc.returncode == -signal.SIGKILL
        version = max(version, _check_project(p.path, start + step))
        if round_ % 8 == 7:
            # a writer started after the crash works on the same project
            proc = _start(p.path, start + step // 2, "once")  # while the next one waits
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0 and out.startswith("done"), err
    assert kills == 24
    n_images = len(p.image_ids())
    assert n_images > 2  # the writers did add images before being killed
    removed = p.gc()
    assert removed > 0  # some kills landed between writing a new array and the swap/delete
    _check_project(p.path, 10**9)
    for key_dir in (p.path / "images").iterdir():
        if key_dir.is_dir():  # after gc only referenced arrays remain
            arrays = {d.name for d in key_dir.iterdir() if d.is_dir()}
            live = set(p._nodes.read_group(f"images/{key_dir.name}")["arrays"].values())
            assert arrays == live
    assert len(Project.open(p.path, mode="r").image_ids()) == n_images


def test_concurrent_reader_never_sees_a_torn_array(tmp_path):
    p = _new_project(tmp_path)
    proc = _start(p.path, 0)
    reader = Project.open(p.path, mode="r")
    reads, versions = 0, set()
    t_end = time.monotonic() + 3.0
    try:
        while time.monotonic() < t_end:
            rec = reader.load("base0")
            for m in rec.masks.values():
                assert m.shape == SHAPE and len(np.unique(m)) == 1
            got = reader.read_cams("base1", "gradcam")
            if got is not None:
                cams, classes = got
                v = int(cams.flat[0])
                k, h = 1 + v % 3, 4 + v % 5  # shape follows the value: no mixed versions
                assert cams.shape == (k, h, 3) and (cams == v).all(), (cams.shape, v)
                assert classes.tolist() == list(range(1, k + 1))
                versions.add(v)
            corr = reader.read_corrections("base1")
            assert len(np.unique(corr)) == 1
            reads += 1
    finally:
        proc.kill()
        proc.wait()
    assert reads > 50 and len(versions) > 5  # the reader really overlapped many writes


def test_two_writer_processes_lose_nothing(tmp_path):
    p = _new_project(tmp_path)
    procs = [_start(p.path, start, "add") for start in (1000, 2000)]
    time.sleep(1.5)
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
    p = Project.open(p.path, mode="r")
    ids = p.image_ids()
    mine = [[i for i in ids if i.startswith(f"n{s // 1000}")] for s in (1000, 2000)]
    assert all(len(m) >= 2 for m in mine)  # both writers added images
    for group in mine:  # each writer's images are consecutive versions: none was lost
        vs = sorted(int(i[1:]) for i in group)
        assert vs == list(range(vs[0], vs[0] + len(vs)))
    _check_project(p.path, 10**9)


# The reading recipe of docs/store.md ("Reading with plain zarr"), verbatim inside the loop.
PLAIN_READER = r"""
import json, sys, time
import numpy as np
import zarr

path, seconds = sys.argv[1], float(sys.argv[2])
reads = fill = errors = 0
values, first_error = set(), None
t_end = time.monotonic() + seconds
while time.monotonic() < t_end:
    try:
        root = zarr.open(path, mode="r")
        classes = root.attrs["napari_wsss"]["classes"]
        for image_id, key in root["images"].attrs["napari_wsss"]["index"]:
            g = root["images"][key]
            ptr = g.attrs["napari_wsss"]["arrays"]
            image = g[ptr["image"]][:]
            crf = g[ptr["mask/crf"]][:] if "mask/crf" in ptr else None
            reads += 1
            if crf is not None:
                if crf.shape != image.shape[:2] or (crf == 255).any() or len(np.unique(crf)) != 1:
                    fill += 1
                else:
                    values.add(int(crf.flat[0]))
    except Exception as err:  # KeyError, FileNotFoundError, ... : the recipe failed
        errors += 1
        first_error = first_error or repr(err)
print(json.dumps(dict(reads=reads, fill=fill, errors=errors, values=len(values), first_error=first_error)))
"""


def test_plain_zarr_reader_process_never_sees_deleted_or_fill_arrays(tmp_path):
    """A separate process following docs/store.md's plain-zarr recipe against a live writer.

    The writer replaces every image's crf mask, CAMs and corrections in a loop (masks hold
    ``v % 200``, never the fill value 255). Before superseded arrays were kept for
    ``Project.RETIRE_SECONDS``, a pointer read just before a swap named a deleted array: zarr
    returned the fill value (all 255) or raised KeyError.
    """
    import json

    p = _new_project(tmp_path)
    writer = _start(p.path, 0)
    try:
        reader = subprocess.run([sys.executable, "-c", PLAIN_READER, str(p.path), "4"],
                                capture_output=True, text=True, timeout=120)
        assert writer.poll() is None, writer.stderr.read()  # the writer ran during the whole read
    finally:
        writer.kill()
        writer.wait()
    assert reader.returncode == 0, reader.stderr[-2000:]
    got = json.loads(reader.stdout)
    assert got["errors"] == 0 and got["fill"] == 0, got
    assert got["reads"] > 50 and got["values"] > 5, got  # it really overlapped many writes
