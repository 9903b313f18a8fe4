"""The napari-wsss command, run as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from skimage.io import imsave

from napari_wsss.cli import build_parser
from napari_wsss.models import Classifier
from napari_wsss.store import Project
from trainer import save_classifier


def _run(*args, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=600, **kw)


def test_help_lists_every_subcommand():
    out = _run(sys.executable, "-m", "napari_wsss.cli", "--help").stdout
    for cmd in ("ingest", "prelabel", "train", "evaluate", "export", "models", "demo", "open"):
        assert cmd in out


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    images = tmp_path / "images"
    images.mkdir()
    rows = ["id,red,blue"]
    for i in range(6):
        imsave(images / f"im{i}.png", rng.integers(0, 255, (48, 40, 3), dtype=np.uint8), check_contrast=False)
        rows.append(f"im{i},{i % 2},1")
    (images / "broken.png").write_bytes(b"not a png")
    rows.append("broken,1,0")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def _with_classifier(path):
    project = Project.create(path, ["red", "blue"], background=True)
    torch.manual_seed(0)
    model = Classifier("mobilenet_v3_small", 3, weights=None)
    save_classifier(project, model)
    return project


def test_prelabel_under_torchrun_does_every_image_exactly_once(folder):
    _with_classifier(folder / "p.zarr")
    report = folder / "report.json"
    res = _run(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
               "-m", "napari_wsss.cli", "prelabel", str(folder / "images"), "--labels",
               str(folder / "labels.csv"), "--project", str(folder / "p.zarr"), "--quiet",
               "--scales", "1", "--no-flip", "--refine", "crf", "--report", str(report))
    # The broken image is reported by name and the run exits non-zero, the rest is done.
    assert res.returncode == 1, res.stderr
    assert "broken.png" in res.stdout + res.stderr
    rep = json.loads(report.read_text())
    by_rank = rep["done_by_rank"]
    assert set(by_rank) == {"0", "1"} and all(by_rank.values())
    done = by_rank["0"] + by_rank["1"]
    assert sorted(done) == [f"im{i}" for i in range(6)]  # disjoint and complete
    project = Project.open(folder / "p.zarr", "r")
    for i in range(6):
        assert project.status(f"im{i}").status == "prelabelled"
        assert project.status(f"im{i}").model_version == "classifier-0001"
        assert set(project.mask_stages(f"im{i}")) == {"cam", "crf"}

    # A second run skips everything already done.
    res = _run(sys.executable, "-m", "napari_wsss.cli", "prelabel", "--project", str(folder / "p.zarr"),
               "--quiet", "--scales", "1", "--no-flip", "--refine", "crf", "--report", str(report))
    assert res.returncode == 0, res.stderr
    assert sorted(json.loads(report.read_text())["skipped"]) == [f"im{i}" for i in range(6)]


def test_prelabel_without_a_model_says_how_to_train(folder):
    res = _run(sys.executable, "-m", "napari_wsss.cli", "prelabel", str(folder / "images"), "--labels",
               str(folder / "labels.csv"), "--project", str(folder / "q.zarr"), "--background")
    assert res.returncode == 2
    assert "has no classifier yet" in res.stderr and "napari-wsss train" in res.stderr


def test_pipeline_options_reach_the_config():
    from napari_wsss.cli import _pipeline_config

    args = build_parser().parse_args(["prelabel", "--project", "x.zarr", "--method", "gradcam",
                                      "--refine", "crf", "--scales", "1,2", "--no-flip",
                                      "--threshold", "0.4"])
    cfg = _pipeline_config(args)
    assert (cfg.method, cfg.refine, cfg.scales, cfg.flip, cfg.cam_threshold) == (
        "gradcam", ("crf",), (1.0, 2.0), False, 0.4)
    assert cfg.refine_max_side == 1024  # the default working resolution
    for value, want in (("2048", 2048), ("0", None)):
        args = build_parser().parse_args(["prelabel", "--project", "x.zarr", "--refine-max-side", value])
        assert _pipeline_config(args).refine_max_side == want


def _save_segmentation_net(project, stage, config):
    from napari_wsss.models import build_segmenter

    net = build_segmenter("mobilenet_v2", len(project.classes), weights=None)
    return project.save_checkpoint(stage, dict(
        model=net.state_dict(), epoch=1, step=1, config=config, classes=list(project.classes),
        background=project.background, backbone="mobilenet_v2", stage=stage))


def test_prelabel_ids_and_checkpoint_say_what_they_use(folder, capsys):
    from napari_wsss.cli import main

    project = _with_classifier(folder / "p.zarr")
    own = project.latest_checkpoint("classifier")
    torch.manual_seed(1)
    other = Classifier("mobilenet_v3_small", 3, weights=None)
    other_version = save_classifier(project, other)
    other_file = folder / "other.pt"
    other_file.write_bytes(project.checkpoint_path(other_version).read_bytes())
    _save_segmentation_net(project, "segmenter", {})
    _save_segmentation_net(project, "explainer", {"explainer": {"classifier_checkpoint": str(own)}})
    assert main(["ingest", str(folder / "images"), "--labels", str(folder / "labels.csv"),
                 "--project", str(folder / "p.zarr"), "--allow-failures"]) == 0  # the folder holds a broken file
    base = ["prelabel", "--project", str(folder / "p.zarr"), "--quiet", "--scales", "1", "--no-flip", "--refine", "crf,segmenter"]
    (folder / "ids.txt").write_text("im1\n\nim3\n")
    assert main([*base, "--ids", "im0", "--ids-file", str(folder / "ids.txt"),
                 "--checkpoint", str(other_file)]) == 0
    err = capsys.readouterr().err
    assert "--checkpoint: classifier other; keeps the project's segmenter-0001; drops the project's " \
           f"explainer (explainer-0001 explains classifier classifier-0001, not {other_file})" in err
    p = Project.open(folder / "p.zarr", "r")
    done = [i for i in p.image_ids() if p.status(i).status == "prelabelled"]
    assert sorted(done) == ["im0", "im1", "im3"]  # only the ids asked for
    assert {p.status(i).model_version for i in done} == {"other"}
    assert "segmenter" in p.mask_stages("im0")

    assert main([*base, "--ids", "im0,nope,gone"]) == 2
    assert "--ids: 2 id(s) not in project" in capsys.readouterr().err
