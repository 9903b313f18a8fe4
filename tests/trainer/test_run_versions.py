"""A run becomes the model in use only when it ends normally; old runs are pruned to the
project's keep setting (real project, real training runs)."""

import io
import json

import pytest

from trainer.run import train

from conftest import synthetic_source, tiny_config, to_project


def _train(project, **kw):
    out = io.StringIO()
    result = train(project.path, "classifier", tiny_config(**{"classifier__epochs": 1, **kw}), stream=out)
    events = [json.loads(x) for x in out.getvalue().splitlines()]
    return result["classifier"], [e for e in events if e["event"] == "models"]


def test_stopped_run_is_kept_but_not_used_and_old_runs_are_pruned(tmp_path):
    project = to_project(synthetic_source(4), tmp_path / "proj")
    assert project.keep_checkpoints == 3  # the default
    first, [ev] = _train(project)
    assert not first.stopped and project.model_in_use("classifier") == first.version
    assert ev == {"event": "models", "stage": "classifier", "version": first.version,
                  "in_use": first.version, "stopped": False, "pruned": []}

    # two epochs planned, stopped after one step: saved, but the first run stays in use
    stopped, [ev] = _train(project, classifier__epochs=2, max_steps=1)
    assert stopped.stopped and stopped.version != first.version
    assert project.checkpoints("classifier") == [first.version, stopped.version]
    assert project.model_in_use("classifier") == first.version
    assert ev["in_use"] == first.version and ev["stopped"] is True
    assert project.checkpoint_info(stopped.version)["last"]["step"] == 1

    # the annotator chooses the stopped run's model explicitly
    project.set_model_in_use("classifier", stopped.version)
    assert project.latest_checkpoint("classifier").parent.name == stopped.version
    project.set_model_in_use("classifier", first.version)

    # keep 1: after each finished run only the newest run and the one in use stay
    project.set_keep_checkpoints(1)
    third, [ev] = _train(project)
    assert project.model_in_use("classifier") == third.version
    assert ev["pruned"] == [first.version, stopped.version]
    assert project.checkpoints("classifier") == [third.version]
    project.set_keep_checkpoints(2)
    fourth, _ = _train(project, classifier__epochs=2, max_steps=1)
    fifth, [ev] = _train(project)
    assert ev["pruned"] == [third.version]
    assert project.checkpoints("classifier") == [fourth.version, fifth.version]
    assert project.model_in_use("classifier") == fifth.version


def test_resume_continues_the_stopped_run_and_then_uses_it(tmp_path):
    project = to_project(synthetic_source(4), tmp_path / "proj")
    first, _ = _train(project)
    stopped, _ = _train(project, classifier__epochs=2, max_steps=1)
    assert project.model_in_use("classifier") == first.version
    resumed, [ev] = _train(project, classifier__epochs=2, resume=True)
    assert resumed.version == stopped.version and not resumed.stopped
    assert project.model_in_use("classifier") == stopped.version == ev["in_use"]


def test_keep_setting_is_checked(tmp_path):
    project = to_project(synthetic_source(2), tmp_path / "proj")
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="keep must be an integer"):
            project.set_keep_checkpoints(bad)
    project.set_keep_checkpoints(5)
    assert project.keep_checkpoints == 5


def test_resuming_a_run_killed_after_its_last_epoch_makes_it_the_model_in_use(tmp_path):
    """A run killed between its last save and its end (Stop, SIGTERM) is complete but not in
    use; ``--resume`` has nothing left to train and ends it normally."""
    project = to_project(synthetic_source(4), tmp_path / "proj")
    first, _ = _train(project)
    state = project.load_checkpoint("classifier")  # as the killed run saved its last epoch
    killed = project.save_checkpoint("classifier", state, use=False)
    assert project.model_in_use("classifier") == first.version
    resumed, [ev] = _train(project, resume=True)
    assert resumed.version == killed and not resumed.stopped and resumed.losses == []
    assert project.model_in_use("classifier") == killed == ev["in_use"]
