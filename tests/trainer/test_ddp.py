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
    assert ddp.checkpoints("classifier") == ["classifier-0001", "classifier-0002"]

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
