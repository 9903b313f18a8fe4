"""Classes as names, values always valid, nothing painted lost: in a real napari viewer."""

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest

from napari_wsss.conventions import IGNORE_LAYER as IGNORE_VALUE
from napari_wsss.colors import class_color
from napari_wsss.store import Project


def _label_box(viewer, layer):
    """napari's own selected-label spin box of ``layer`` (its layer controls)."""
    controls = viewer.window._qt_viewer.controls.widgets[layer]
    for obj in vars(controls).values():
        box = getattr(obj, "selection_spinbox", None)
        if box is not None:
            return box
    raise AssertionError("no selected-label box in napari's labels controls")


def _stored(project, image_id):
    return Project.open(project.path, mode="r").read_corrections(image_id)


def test_picker_keys_label_box_and_hover_name_the_same_class(open_widget, qtbot, project):
    viewer, widget = open_widget(project)
    viewer.window._qt_window.show()
    layer = widget.layers.corrections
    box = _label_box(viewer, layer)
    # clicking "square" (class 1) in the panel sets the brush to layer value 2
    item = widget.picker._rows[2]
    assert item.text().startswith("2  square")
    widget.picker.list.itemClicked.emit(item)
    assert layer.selected_label == 2 and box.value() == 2 and layer.mode == "paint"
    # key 3 on the canvas: the third class ("bar", layer value 3), not napari's polygon mode
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    QTest.keyClick(canvas, Qt.Key.Key_3)
    assert layer.selected_label == 3 and box.value() == 3 and layer.mode == "paint"
    assert widget.picker.list.currentItem().text().startswith("3  bar")
    # napari's label box -> the panel highlights the same class
    box.setValue(1)
    assert layer.selected_label == 1 and widget.picker.list.currentItem().text().startswith("1  disc")
    # the panel's colour swatch is the layer's colour for that value
    icon = widget.picker._rows[1].icon().pixmap(8, 8).toImage().pixelColor(4, 4)
    np.testing.assert_allclose([icon.redF(), icon.greenF(), icon.blueF()],
                               layer.colormap.map(1)[:3], atol=1 / 255 + 1e-6)
    np.testing.assert_allclose(layer.colormap.map(1)[:3], class_color(0)[:3], atol=1e-6)
    # hover text names the class of the value under the cursor
    layer.brush_size = 1
    layer.paint((10, 10), 3)
    status = layer.get_status((10, 10), world=True)
    text = status["coordinates"] if isinstance(status, dict) else str(status)
    assert ": 3" in text and "bar" in text, text
    # a key past the last class is refused with a message, the brush stays
    QTest.keyClick(canvas, Qt.Key.Key_5)
    assert layer.selected_label == 1 and "no class 5" in widget.message.text()


def test_a_value_that_is_no_class_is_refused_on_the_spot(open_widget, qtbot, project):
    viewer, widget = open_widget(project)
    layer = widget.layers.corrections
    box = _label_box(viewer, layer)
    box.setValue(3)  # the last class
    box.setValue(4)  # "+" in the label box: 3 classes, so 4 is no class
    assert layer.selected_label == 3 and box.value() == 3
    assert "label 4 is not a class" in widget.message.text()
    assert "label 4 is not a class" in viewer.status
    layer.selected_label = 200  # typed
    assert layer.selected_label == 3
    layer.selected_label = IGNORE_VALUE  # ignore and the eraser are fine
    assert layer.selected_label == IGNORE_VALUE
    layer.selected_label = 0
    assert layer.selected_label == 0


def test_a_failed_save_is_shown_kept_and_retried(open_widget, qtbot, project):
    from napari_wsss._qt import editing

    viewer, widget = open_widget(project)
    widget.editor.retry_timer.setInterval(200)
    layer = widget.layers.corrections
    layer.brush_size = 1
    layer.paint((5, 5), 2)  # a valid stroke (class 1)
    layer.paint((9, 9), 40)  # napari paints any value it is given: no class of this project
    widget.save_now()
    qtbot.waitUntil(lambda: widget.save_states.get("a") == "failed", timeout=5000)
    assert "NOT SAVED" in widget.review.status.text()
    assert "saving a failed" in widget.message.text() and "label(s) 40" in widget.message.text()
    assert "saving a failed" in viewer.status
    assert widget.nav.list.item(0).text() == "a   [corrected, NOT SAVED]"
    assert (_stored(project, "a") == 255).all()  # nothing half-written
    # moving away and back keeps every stroke, the valid one too
    widget.next_image()
    assert widget.current == "b"
    widget.show_image("a")
    assert layer.data[5, 5] == 2 and layer.data[9, 9] == 40
    # the retry keeps failing until the bad stroke is gone, then lands
    qtbot.wait(500)
    assert widget.save_states["a"] == "failed"
    layer.paint((9, 9), 0)  # erased
    qtbot.waitUntil(lambda: widget.save_states.get("a") == "saved", timeout=5000)
    stored = _stored(project, "a")
    assert stored[5, 5] == 1 and stored[9, 9] == 255
    assert "saved ✓" in widget.review.status.text()
    assert widget.nav.list.item(0).text() == "a   [corrected]"
    assert editing.RETRY_MS >= 1000  # the real interval does not hammer a failing disk


def test_stroke_finished_is_signalled_once_per_stroke(open_widget, qtbot, project):
    project.write_mask("a", "crf", np.zeros((48, 64), np.uint8), model_version="v")
    viewer, widget = open_widget(project)
    got = []
    widget.stroke_finished.connect(got.append)
    layer = widget.layers.corrections
    layer.paint((5, 5), 2)
    assert got == ["a"]
    widget.undo()
    assert got == ["a", "a"]
    widget.accept("crf", only_unpainted=True)
    assert got == ["a", "a", "a"]
    widget.next_image()  # loading another image is no stroke
    assert got == ["a", "a", "a"]


def test_layer_values_and_names_follow_the_conventions():
    from napari_wsss.conventions import (IGNORE, IGNORE_PAINTED, class_of_value, class_to_layer,
                                         is_paintable, value_names, value_of_class)

    classes = ["sky", "tree", "road"]
    assert [value_of_class(c) for c in range(3)] == class_to_layer(np.arange(3, dtype=np.uint8)).tolist()
    assert [class_of_value(v) for v in (1, 3, 0, IGNORE_VALUE)] == [0, 2, IGNORE, IGNORE_PAINTED]
    assert [v for v in range(256) if is_paintable(v, 3)] == [0, 1, 2, 3, IGNORE_VALUE]
    assert value_names(classes) == {0: "unlabeled", 1: "sky", 2: "tree", 3: "road", IGNORE_VALUE: "ignore"}
