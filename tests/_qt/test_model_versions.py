"""The retrain box's model versions, the calibration and the classes needing strokes, with
a real viewer (and, for the stopped run, the real trainer in a child process)."""

import numpy as np

from napari_wsss._qt import AnnotationWidget
from napari_wsss._qt.retrain import train_command
from napari_wsss.pipeline import PipelineConfig



def _tiny(project, epochs):
    return train_command(project.path, "classifier", "--epochs", str(epochs), "--batch-size", "2",
                         "--device", "cpu", "--set", "classifier.crop_size=32")


def test_stopped_run_is_not_used_until_the_annotator_chooses_it(make_napari_viewer, qtbot, project):
    viewer = make_napari_viewer()
    widget = AnnotationWidget(viewer)
    widget.open_project(project.path)
    versions = widget.model.versions
    assert versions.in_use.text() == "no trained models yet"
    assert versions.keep.value() == 3 and not versions.use_stopped_btn.isEnabled()

    with qtbot.waitSignal(widget.retrainer.finished, timeout=120000) as done:
        widget.retrain("classifier", argv=_tiny(project, 1))
    assert done.args == [0]
    first = project.model_in_use("classifier")
    assert versions.in_use.text() == f"classifier: {first} (1 epoch) in use"

    # a long run, stopped with the Stop button once it has saved a checkpoint
    def stop_after_checkpoint(p):
        if p.get("event") == "checkpoint":
            widget.model_controls.cancel_btn.click()

    widget.retrainer.progress.connect(stop_after_checkpoint)
    sentinel = object()
    widget.session._pipeline = sentinel  # the loaded models must survive the stopped run
    with qtbot.waitSignal(widget.retrainer.finished, timeout=120000):
        widget.retrain("classifier", argv=_tiny(project, 200))
    widget.retrainer.progress.disconnect(stop_after_checkpoint)
    stopped = project.checkpoints("classifier")[-1]
    assert stopped != first and project.model_in_use("classifier") == first
    assert widget.session._pipeline is sentinel
    assert "training stopped by you" in widget.message.text()
    assert "Use stopped run's model" in widget.message.text()
    assert f"classifier: {first} (1 epoch) in use; stopped run {stopped} (1 epoch) not used" \
        == versions.in_use.text()
    assert versions.use_stopped_btn.isEnabled()

    versions.use_stopped_btn.click()
    assert project.model_in_use("classifier") == stopped
    assert widget.session._pipeline is None  # the next proposals load the chosen model
    assert versions.in_use.text() == f"classifier: {stopped} (1 epoch) in use"
    assert not versions.use_stopped_btn.isEnabled()

    versions.keep.setValue(1)
    assert type(project).open(project.path, "r").keep_checkpoints == 1


def _background_project(tmp_path, make_image, labels):
    from napari_wsss.store import Project

    rng = np.random.default_rng(0)
    p = Project.create(tmp_path / "bg.zarr", ["disc", "square", "sky"], background=True)
    for image_id, labs in labels.items():
        p.add_image(image_id, make_image(rng), labs)
    return p


def test_calibration_is_shown_and_a_stage_it_turned_off_is_unticked(make_napari_viewer, qtbot, tmp_path,
                                                                    synthetic_image):
    p = _background_project(tmp_path, synthetic_image, {"a": [1], "b": [2], "c": [1, 2]})
    p.write_calibration({
        "background": 0, "cam_threshold": 0.65,
        "threshold_source": "corrections: best of 9 thresholds on 900 corrected pixels of 3 images",
        "refine_off": {"crf": "lowers mIoU on the corrected pixels"},
        "evidence": {"stages": {"cam": 0.61, "crf": 0.582, "rw": 0.64}},
    })
    p.write_cams("a", "gradcam", np.random.default_rng(2).random((1, 12, 16)).astype(np.float32), [1],
                 model_version="v")
    widget = AnnotationWidget(make_napari_viewer())
    pc = widget.proposal_controls
    assert pc.threshold.text() == "auto"  # the pipeline default is "auto", the box says so
    widget.open_project(p.path)
    # stroke propagation resolves "auto" too (it once failed to convert "auto" to a number)
    qtbot.waitUntil(lambda: widget.strokes._refiner is not None, timeout=60000)
    assert pc.calibration.text() == ("auto = 0.65, from corrections: best of 9 thresholds on 900 "
                                     "corrected pixels of 3 images")
    assert not pc.use_crf.isChecked()
    assert pc.use_crf.toolTip() == "CRF lowered mIoU on your corrected images: 61.0 -> 58.2, off by default"
    assert pc.use_rw.isChecked() and "random walk" in pc.use_rw.toolTip()
    settings = pc.settings()
    assert settings["cam_threshold"] == "auto" and "crf" not in settings["refine"]
    from napari_wsss._qt.session import config_from_settings

    assert config_from_settings(None, settings).cam_threshold == "auto"
    pc.use_crf.setChecked(True)  # the annotator turns it back on: it runs
    config = config_from_settings(None, pc.settings())
    assert "crf" in config.refine and not config.apply_calibration
    pc.threshold.setValue(0.4)
    assert pc.settings()["cam_threshold"] == 0.4
    pc.set_from_config(PipelineConfig())
    assert pc.threshold.text() == "auto"


def test_uncalibrated_and_no_background_projects(make_napari_viewer, tmp_path, project, synthetic_image):
    widget = AnnotationWidget(make_napari_viewer())
    widget.open_project(project.path)
    assert widget.proposal_controls.calibration.text() == "no background class: no threshold"
    widget.open_project(_background_project(tmp_path, synthetic_image, {"a": [1], "b": [2]}).path)
    assert widget.proposal_controls.calibration.text().endswith("(not calibrated yet)")
    assert widget.proposal_controls.use_crf.isChecked()


def test_classes_that_need_strokes_are_marked(make_napari_viewer, tmp_path, synthetic_image):
    # "sky" on every image: its image labels cannot localise it; the others on half of them
    p = _background_project(tmp_path, synthetic_image, {"a": [1, 3], "b": [2, 3], "c": [1, 3], "d": [2, 3]})
    widget = AnnotationWidget(make_napari_viewer())
    widget.open_project(p.path)
    sky = widget.picker._rows[4]  # layer value of class 3
    assert sky.text().endswith("needs strokes")
    assert "labelled on 100 % of the images" in sky.toolTip()
    for value in (1, 2, 3):
        assert "needs strokes" not in widget.picker._rows[value].text()


def test_new_project_dialog_takes_the_labels_background_class(make_napari_viewer, tmp_path, image_folder):
    """As `ingest --background-class null`: the table's "null" column becomes class 0."""
    from napari_wsss._qt.project_panel import NewProjectDialog

    folder = image_folder(tmp_path / "imgs", ("x1", "x2"))
    (tmp_path / "labels.csv").write_text("id,cat,null,dog\nx1,1,1,0\nx2,0,1,1\n")
    widget = AnnotationWidget(make_napari_viewer())
    dlg = NewProjectDialog()
    dlg.folder.edit.setText(str(folder))
    dlg.csv.edit.setText(str(tmp_path / "labels.csv"))
    dlg.out.edit.setText(str(tmp_path / "new.zarr"))
    assert not dlg.background.isChecked()
    dlg.background_class.setText("null")
    assert dlg.background.isChecked()  # a background class name implies a background class
    widget.project_panel.create_requested.emit(*dlg.values())
    assert widget.session.classes == ["background", "cat", "dog"]
    assert widget.session.project.background == 0
    assert 1 in widget.session.image_labels("x1") and 2 not in widget.session.image_labels("x1")
    assert 2 in widget.session.image_labels("x2") and 1 not in widget.session.image_labels("x2")
    assert "null" in widget.message.text()
