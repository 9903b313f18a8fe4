import argparse
import json

from trainer.cli import _without_nproc, add_arguments, build_config, run
from trainer.config import save_config

from conftest import synthetic_source, tiny_config, to_project


def _parse(argv):
    return add_arguments(argparse.ArgumentParser()).parse_args(argv)


def test_flags_override_set_which_overrides_the_file(tmp_path):
    cfg = tiny_config(classifier__epochs=3)
    save_config(cfg, tmp_path / "c.yaml")
    args = _parse(["proj", "--config", str(tmp_path / "c.yaml"), "--set", "classifier.epochs=4",
                   "--set", "classifier.kur=true"])
    got = build_config(args)
    assert got.classifier.epochs == 4 and got.classifier.kur and got.classifier.crop_size == 64
    args = _parse(["proj", "--config", str(tmp_path / "c.yaml"), "--set", "classifier.epochs=4",
                   "--epochs", "5", "--device", "cpu", "--amp", "--resume", "--batch-size", "2"])
    got = build_config(args)
    assert got.classifier.epochs == got.segmenter.epochs == 5
    assert got.segmenter.batch_size == 2 and got.amp and got.resume and got.device == "cpu"


def test_nproc_flag_is_stripped_before_relaunch():
    argv = ["p", "--nproc-per-node", "2", "--stage", "all", "--nproc-per-node=3", "--epochs", "1"]
    assert _without_nproc(argv) == ["p", "--stage", "all", "--epochs", "1"]


def test_run_trains_a_project_with_loader_workers(tmp_path, capsys):
    project = to_project(synthetic_source(4), tmp_path / "proj")
    cfg = tiny_config(classifier__epochs=1, num_workers=1)
    save_config(cfg, tmp_path / "c.yaml")
    argv = [str(project.path), "--config", str(tmp_path / "c.yaml"), "--set", "classifier.val_fraction=0.5"]
    assert run(_parse(argv)) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert [x["event"] for x in lines] == ["start", "step", "eval", "checkpoint", "models", "done"]
    assert lines[0]["images"] == 2 and lines[2]["images"] == 2 and 0 <= lines[2]["mAP"] <= 1
    assert lines[-1]["version"] == "classifier-0001" == project.checkpoints("classifier")[-1]
    assert (project.path / "runs").is_dir()
