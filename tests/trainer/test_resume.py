"""An interrupted run resumed from its checkpoint continues exactly like an uninterrupted one."""

import io

import pytest
import torch

from trainer import DirectoryCheckpoints, fit

from conftest import synthetic_source, tiny_config


def _fit(src, stage, cfg, root):
    return fit(src, stage, cfg, checkpoints=DirectoryCheckpoints(root), log_dir=root / "log",
               stream=io.StringIO())


def _weights(root, stage):
    path = DirectoryCheckpoints(root).latest_checkpoint(stage)
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize("stage", ["classifier", "segmenter"])
def test_resume_mid_epoch_is_exact(tmp_path, stage):
    # augmentation on, poly schedule, momentum: every piece of state matters
    kw = {f"{stage}__epochs": 2, f"{stage}__scheduler": "poly"}
    if stage == "classifier":
        src = synthetic_source(8, masks=True, corrections=2)
    else:  # 2 steps per epoch of small crops; the decoder's dropout uses the RNG
        src = synthetic_source(4, size=32, masks=True, corrections=2)
        kw.update(segmenter__batch_size=2, segmenter__crop_size=32)
    full = _fit(src, stage, tiny_config(augment=True, **kw), tmp_path / "full")
    assert len(full.losses) == 4

    cut = _fit(src, stage, tiny_config(augment=True, max_steps=3, **kw), tmp_path / "cut")
    assert cut.stopped and cut.step == 3 and cut.losses == full.losses[:3]
    state = _weights(tmp_path / "cut", stage)
    assert (state["epoch"], state["step"], state["batch_in_epoch"]) == (1, 3, 1)

    rest = _fit(src, stage, tiny_config(augment=True, resume=True, **kw), tmp_path / "cut")
    assert rest.losses == full.losses[3:]
    assert not rest.stopped and rest.epoch == 2 and rest.step == 4
    a, b = _weights(tmp_path / "full", stage), _weights(tmp_path / "cut", stage)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 4
