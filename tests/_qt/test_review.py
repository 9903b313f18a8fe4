"""Review state in a real viewer: Skip / Accept / Reset / paint, export, saved, resume, end of list."""

import numpy as np

from napari_wsss.store import Project


def _split(left, right, shape=(48, 64), at=32):
    m = np.full(shape, left, np.uint8)
    m[:, at:] = right
    return m


def test_accept_then_skip_keeps_the_accepted_mask_in_the_export(open_widget, qtbot, project,
                                                                 tmp_path):
    from PIL import Image

    for i in ("a", "b"):
        project.write_mask(i, "crf", _split(0, 1), model_version="v")
        project.set_status(i, "prelabelled")
    viewer, widget = open_widget(project)
    assert widget.current == "a"  # nothing edited yet: the first unreviewed image
    widget.accept("crf", only_unpainted=False)
    widget.skip()  # moves on; "a" stays accepted
    assert widget.current == "b" and project.status("a").status == "accepted"
    assert "stays accepted" in widget.message.text()
    widget.skip()  # "b" was never reviewed: skipped
    assert project.status("b").status == "skipped"
    with qtbot.waitSignal(widget.model.export_finished, timeout=30000):
        widget.export(tmp_path / "out", format="png")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "a.png")), _split(0, 1))
    assert not (tmp_path / "out" / "b.png").exists()
    assert "1 reviewed, 0 proposals only" in widget.message.text()
    assert "1 skipped left out" in widget.message.text()


def test_reset_unreviews_and_painting_unskips(open_widget, qtbot, project):
    project.write_mask("a", "crf", _split(0, 1), model_version="v")
    project.set_status("a", "prelabelled")
    viewer, widget = open_widget(project)
    widget.accept("crf", only_unpainted=False)
    widget.reset()  # undoable clear; unreviewed again
    assert widget.session.status("a") == "prelabelled"
    widget.skip()
    assert project.status("a").status == "skipped"
    widget.show_image("a")
    widget.layers.corrections.paint((3, 3), 2)  # painting a skipped image reviews it
    assert project.status("a").status == "corrected"


def test_saved_indicator_end_of_list_and_resume(open_widget, qtbot, project):
    viewer, widget = open_widget(project)
    assert "saved ✓" in widget.review.status.text()
    widget.show_image("c")
    layer = widget.layers.corrections
    layer.paint((4, 4), 1)
    assert "unsaved changes" in widget.review.status.text()
    qtbot.waitUntil(lambda: "saved ✓" in widget.review.status.text(), timeout=5000)
    assert Project.open(project.path, mode="r").read_corrections("c")[4, 4] == 0
    widget.show_image("d")
    widget.next_image()  # the last image: says so instead of doing nothing
    assert widget.current == "d"
    assert "d is the last image in this list" in widget.message.text()
    assert "a is not reviewed yet" in widget.message.text()
    widget.show_image("a")
    widget.previous_image()
    assert "a is the first image in this list" in widget.message.text()
    viewer.close()
    viewer2, widget2 = open_widget(project)
    assert widget2.current == "c"  # the image edited last, not the first one
