"""RetrainRunner drives a real child process (a tiny script standing in for the trainer's
stdout protocol; the trainer itself is exercised in tests/trainer)."""

import sys

from napari_wsss._qt import AnnotationWidget
from napari_wsss._qt.retrain import RetrainRunner, format_progress, parse_progress, train_command

SCRIPT = r"""
import json, sys, time
for step in range(1, 4):
    print(json.dumps({"stage": "classifier", "epoch": 0, "step": step, "steps": 3,
                      "loss": 1.0 / step, "eta_s": 3 - step}), flush=True)
    time.sleep(0.05)
print("plain log line", flush=True)
print("warning on stderr", file=sys.stderr, flush=True)
sys.exit(%d)
"""


def test_parse_progress():
    assert parse_progress('{"stage": "rw", "step": 2}\n') == {"stage": "rw", "step": 2}
    assert parse_progress("loss 0.3") is None
    assert parse_progress("{broken") is None
    assert parse_progress("[1, 2]") is None
    p = {"stage": "classifier", "epoch": 1, "step": 5, "steps": 10, "loss": 0.25, "eta_s": 12.4}
    assert format_progress(p) == "classifier  epoch 1  step 5/10  loss 0.2500  eta 12 s"
    done = {"event": "done", "stage": "classifier", "epoch": 1, "step": 2, "version": "classifier-0001"}
    assert format_progress(done) == "classifier  done  epoch 1  classifier-0001"


def test_train_command_shape(tmp_path):
    cmd = train_command(tmp_path / "p.zarr", "segmenter")
    assert cmd == [sys.executable, "-m", "trainer", str(tmp_path / "p.zarr"), "--stage", "segmenter"]


def _run(qtbot, code):
    runner = RetrainRunner()
    progress, logs = [], []
    runner.progress.connect(progress.append)
    runner.log.connect(logs.append)
    with qtbot.waitSignal(runner.finished, timeout=20000) as blocker:
        runner.start([sys.executable, "-c", SCRIPT % code])
    return runner, progress, logs, blocker.args[0]


def test_runner_reads_json_lines(qtbot):
    runner, progress, logs, code = _run(qtbot, 0)
    assert code == 0
    assert [p["step"] for p in progress] == [1, 2, 3]
    assert progress[-1]["loss"] == 1.0 / 3
    assert runner.last_progress == progress[-1]
    assert "plain log line" in logs and "warning on stderr" in logs
    assert not runner.is_running()


def test_runner_reports_failure(qtbot):
    _, progress, _, code = _run(qtbot, 3)
    assert code == 3 and len(progress) == 3


def test_runner_cancel(qtbot):
    runner = RetrainRunner()
    with qtbot.waitSignal(runner.finished, timeout=20000) as blocker:
        runner.start([sys.executable, "-c", "import time; time.sleep(60)"])
        qtbot.wait(200)
        assert runner.is_running()
        runner.cancel()
    assert blocker.args[0] != 0
    assert not runner.is_running()


def test_widget_retrains_with_the_real_trainer(make_napari_viewer, qtbot, project):
    """Retrain runs ``python -m trainer`` in a child process; the panel shows its JSON-lines
    progress, and the next proposals use the model it wrote (before it there is none)."""
    from napari_wsss._qt import AnnotationWidget

    viewer = make_napari_viewer()
    widget = AnnotationWidget(viewer)
    widget.proposal_controls.tta.setChecked(False)
    widget.open_project(project.path)
    with qtbot.waitSignal(widget.proposals_finished, timeout=60000) as first:
        widget.recompute()
    assert first.args == ["a", "failed"]  # no classifier yet
    argv = train_command(project.path, "classifier", "--epochs", "1", "--batch-size", "2",
                         "--device", "cpu", "--set", "classifier.crop_size=32")
    seen = []
    widget.retrainer.progress.connect(seen.append)
    with qtbot.waitSignal(widget.retrainer.finished, timeout=120000) as blocker:
        widget.retrain("classifier", argv=argv)
        assert not widget.model_controls.retrain_btn.isEnabled()
    assert blocker.args == [0]
    steps = [p for p in seen if p.get("event") == "step"]
    assert [p["step"] for p in steps] == [1, 2] and steps[-1]["steps"] == 2
    assert project.latest_checkpoint("classifier") is not None
    assert widget.model_controls.retrain_btn.isEnabled()
    assert "done" in widget.model_controls.progress.format()
    with qtbot.waitSignal(widget.proposals_finished, timeout=120000) as second:
        widget.recompute()
    assert second.args == ["a", "saved"], widget.message.text()
    assert project.mask_stages("a") == ["cam", "crf", "rw"]


def test_epochs_and_time_budget_controls(make_napari_viewer, qtbot, project):
    """The epochs box reaches the trainer's command line; the time budget stops a run, and
    a stopped run does not make the session load new models."""
    import sys

    viewer = make_napari_viewer()
    widget = AnnotationWidget(viewer)
    widget.open_project(project.path)
    lines = []
    widget.retrainer.log.connect(lines.append)
    widget.model_controls.epochs.setValue(2)
    assert widget.model_controls.train_options() == ["--epochs", "2"]
    widget.model_controls.minutes.setValue(1)
    sentinel = object()
    widget.session._pipeline = sentinel  # a loaded pipeline that must survive a stopped run
    with qtbot.waitSignal(widget.retrainer.finished, timeout=60000):
        widget.retrain("classifier", argv=[sys.executable, "-c", "import time; time.sleep(120)"])
        assert widget.model.budget_timer.isActive()
        assert widget.model.budget_timer.interval() == 60_000
        widget.model.budget_timer.start(300)  # the budget, shortened for the test
    assert "training stopped by the time budget" in widget.message.text()
    assert widget.session._pipeline is sentinel
    assert widget.model_controls.retrain_btn.isEnabled()
