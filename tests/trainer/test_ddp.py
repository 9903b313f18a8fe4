"""A real ``torchrun --nproc_per_node=2`` (gloo) run equals the single-process run."""

import io
import json
import os
import subprocess
import sys

import pytest
import torch

from trainer import train
from trainer.config import save_config

from conftest import synthetic_source, tiny_config, to_project


def test_torchrun_two_processes_match_single_process(tmp_path):
    # 8 images, global batch 4 -> 2 images per process; frozen BN (the classifier
    # default) and per-image-mean losses make the two runs the same optimisation.
    src = synthetic_source(8, background=True, corrections=3)
    cfg = tiny_config(augment=True, classifier__epochs=2, classifier__scheduler="poly",
                      classifier__puzzle_pieces=4)
    assert cfg.classifier.freeze_bn
    save_config(cfg, tmp_path / "cfg.yaml")
    single = to_project(src, tmp_path / "single")
    ddp = to_project(src, tmp_path / "ddp")

    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           "-m", "trainer", str(ddp.path), "--stage", "classifier", "--config", str(tmp_path / "cfg.yaml")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    steps = [x for x in lines if x["event"] == "step"]
    assert [x["step"] for x in steps] == [1, 2, 3, 4]  # rank 0 only: no duplicates
    assert next(x for x in lines if x["event"] == "start")["world_size"] == 2
    assert ddp.checkpoints("classifier") == ["classifier-0001"]  # one run: one version

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref = train(single.path, "classifier", cfg, stream=io.StringIO())["classifier"]
    finally:
        torch.set_num_threads(threads)
    assert [x["loss"] for x in steps] == pytest.approx(ref.losses, abs=1e-4)
    a = torch.load(single.latest_checkpoint("classifier"), weights_only=True)["model"]
    b = torch.load(ddp.latest_checkpoint("classifier"), weights_only=True)["model"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)


def _torchrun(project, stage, cfg_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           "-m", "trainer", str(project.path), "--stage", stage, "--config", str(cfg_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]


def test_torchrun_affinity_matches_single_process(tmp_path):
    # 4 images, global batch 4 -> 2 per process, augmentation on. The two halves of a batch
    # have different pair counts: only normalising by the global counts (batch_share) makes
    # the DDP loss the single-process one.
    from test_affinity_stage import aff_config, cam_project

    cfg = aff_config(affinity__epochs=2, affinity__batch_size=4, affinity__scheduler="poly",
                     affinity__scale_range=(0.8, 1.2), affinity__hflip=True, affinity__color_jitter=0.2)
    save_config(cfg, tmp_path / "cfg.yaml")
    single, _ = cam_project(tmp_path / "single", n=4)
    ddp, _ = cam_project(tmp_path / "ddp", n=4)

    lines = _torchrun(ddp, "affinity", tmp_path / "cfg.yaml")
    steps = [x for x in lines if x["event"] == "step"]
    assert [x["step"] for x in steps] == [1, 2]
    assert ddp.checkpoints("affinity") == ["affinity-0001"]  # one run: one version

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref = train(single.path, "affinity", cfg, stream=io.StringIO())["affinity"]
    finally:
        torch.set_num_threads(threads)
    assert ref.losses[1] < ref.losses[0]  # it learnt something
    assert [x["loss"] for x in steps] == pytest.approx(ref.losses, abs=1e-5)
    a = torch.load(single.latest_checkpoint("affinity"), weights_only=True)["model"]
    b = torch.load(ddp.latest_checkpoint("affinity"), weights_only=True)["model"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6, msg=key)

