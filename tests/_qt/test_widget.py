"""The annotation panel in a real napari viewer: navigation, painting, saving, reopening."""

import numpy as np

from napari_wsss._qt import AnnotationWidget
from napari_wsss.conventions import IGNORE_LAYER
from napari_wsss.store import Project


def _proposal(shape, split, left, right):
    m = np.full(shape, left, np.uint8)
    m[:, split:] = right
    return m


def _open(make_napari_viewer, qtbot, project):
    viewer = make_napari_viewer()
    widget = AnnotationWidget(viewer)
    viewer.window.add_dock_widget(widget, name="wsss")
    widget.open_project(project.path)
    return viewer, widget


def test_open_shows_layers_and_list(make_napari_viewer, qtbot, project):
    project.write_mask("a", "crf", _proposal((48, 64), 32, 0, 1), model_version="imagenet:x")
    cams = np.stack([np.linspace(0, 1, 48 * 64).reshape(48, 64)] * 2).astype(np.float32)
    project.write_cams("a", "gradcam", cams, [0, 1], model_version="imagenet:x")
    viewer, widget = _open(make_napari_viewer, qtbot, project)
    assert widget.current == "a"
    names = [layer.name for layer in viewer.layers]
    # one heatmap: the class the brush paints (layer value 1 = class 0 "disc")
    assert names == ["image", "heatmap: disc", "proposal: CRF", "corrections"]
    assert viewer.layers["proposal: CRF"].editable is False
    # layer value = class + 1
    assert viewer.layers["proposal: CRF"].data[0, 0] == 1 and viewer.layers["proposal: CRF"].data[0, 40] == 2
    assert viewer.layers["heatmap: disc"].blending == "additive"
    assert widget.nav.list.count() == 4
    assert widget.picker.list.count() == 4  # three classes and the ignore brush
    # class filter
    widget.nav.class_filter.setCurrentIndex(widget.nav.class_filter.findData(2))
    assert [widget.nav.list.item(i).text().split()[0] for i in range(widget.nav.list.count())] == ["c", "d"]


def test_paint_is_saved_debounced_and_status_corrected(make_napari_viewer, qtbot, project):
    viewer, widget = _open(make_napari_viewer, qtbot, project)
    layer = widget.layers.corrections
    layer.brush_size = 3
    layer.paint((10, 10), 3)  # class 2
    assert project.status("a").status == "corrected"
    # not yet on disk: the write is debounced
    assert (Project.open(project.path, mode="r").read_corrections("a") == 255).all()
    qtbot.waitUntil(lambda: Project.open(project.path, mode="r").read_corrections("a")[10, 10] == 2,
                    timeout=3000)
    stored = Project.open(project.path, mode="r").read_corrections("a")
    assert (stored == 2).sum() == (layer.data == 3).sum() > 0
    # undo is an edit too: it is saved
    widget.undo()
    qtbot.waitUntil(lambda: (Project.open(project.path, mode="r").read_corrections("a") == 255).all(),
                    timeout=3000)


def test_continuous_painting_is_saved_within_a_second(make_napari_viewer, qtbot, project):
    """The save is not pushed back by every new stroke: while the annotator keeps painting,
    the store never lags more than a second behind."""
    import time

    viewer, widget = _open(make_napari_viewer, qtbot, project)
    layer = widget.layers.corrections
    layer.brush_size = 1
    strokes = []
    for i in range(16):  # a stroke every ~100 ms for ~1.6 s
        layer.paint((i, i), 2)
        strokes.append((time.perf_counter(), i))
        qtbot.wait(100)
        now = time.perf_counter()
        stored = Project.open(project.path, mode="r").read_corrections("a")
        for t, j in strokes:
            if t < now - 1.0:
                assert stored[j, j] == 1, f"stroke {j} from {now - t:.2f} s ago is not saved"
    assert any(t < strokes[-1][0] - 1.0 for t, _ in strokes)  # the check above had work to do
    qtbot.waitUntil(lambda: Project.open(project.path, mode="r").read_corrections("a")[15, 15] == 1,
                    timeout=1000)


def test_full_cycle_accept_switch_close_reopen(make_napari_viewer, qtbot, project):
    project.write_mask("a", "crf", _proposal((48, 64), 32, 0, 1), model_version="imagenet:x")
    project.write_mask("a", "rw", _proposal((48, 64), 20, 1, 0), model_version="imagenet:x")
    viewer, widget = _open(make_napari_viewer, qtbot, project)
    layer = widget.layers.corrections
    layer.brush_size = 1
    layer.paint((5, 50), 3)  # a class-2 pixel where the CRF proposal says class 1
    layer.selected_label = IGNORE_LAYER
    layer.paint((6, 50), IGNORE_LAYER)
    widget.accept("crf", only_unpainted=True)
    assert project.status("a").status == "accepted"
    widget.next_image()  # saves first
    assert widget.current == "b"
    layer.paint((1, 1), 2)
    viewer.close()

    reopened = Project.open(project.path, mode="r")
    expected = _proposal((48, 64), 32, 0, 1)
    expected[5, 50] = 2
    expected[6, 50] = 254  # painted "ignore"
    np.testing.assert_array_equal(reopened.read_corrections("a"), expected)
    assert reopened.status("a").status == "accepted"
    assert reopened.status("b").status == "corrected"
    b = np.full((48, 64), 255, np.uint8)
    b[1, 1] = 1
    np.testing.assert_array_equal(reopened.read_corrections("b"), b)

    viewer2, widget2 = _open(make_napari_viewer, qtbot, project)
    assert widget2.current == "b"  # reopening resumes at the image edited last
    widget2.show_image("a")
    assert widget2.session.status("a") == "accepted"
    np.testing.assert_array_equal(widget2.layers.corrections.data,
                                  np.where(expected == 254, IGNORE_LAYER, expected + 1))
    widget2.show_image("b")
    np.testing.assert_array_equal(widget2.layers.corrections.data, np.where(b == 255, 0, b + 1))
    texts = [widget2.nav.list.item(i).text() for i in range(4)]
    assert texts[0].endswith("[accepted]") and texts[1].endswith("[corrected]")


def test_ignore_strokes_come_back_as_ignore_after_reopen(make_napari_viewer, qtbot, project):
    project.write_mask("a", "crf", _proposal((48, 64), 32, 0, 1), model_version="imagenet:x")
    viewer, widget = _open(make_napari_viewer, qtbot, project)
    layer = widget.layers.corrections
    layer.brush_size = 5
    layer.paint((20, 10), 2)  # class 1, a disc of radius ~2 around (20, 10)
    widget.use_ignore_brush()  # Alt-I
    layer.paint((30, 40), layer.selected_label)
    painted_class = layer.data == 2
    painted_ignore = layer.data == IGNORE_LAYER
    assert painted_class.sum() > 5 and painted_ignore.sum() > 5
    viewer.close()  # no explicit save: the pending debounced save must land

    stored = Project.open(project.path, mode="r").read_corrections("a")
    expected = np.full((48, 64), 255, np.uint8)
    expected[painted_class] = 1
    expected[painted_ignore] = 254
    np.testing.assert_array_equal(stored, expected)
    assert project.status("a").status == "corrected"

    viewer2, widget2 = _open(make_napari_viewer, qtbot, project)
    data = widget2.layers.corrections.data
    np.testing.assert_array_equal(data == IGNORE_LAYER, painted_ignore)
    np.testing.assert_array_equal(data == 2, painted_class)
    assert ((data == 0) == ~(painted_ignore | painted_class)).all()
    # accepting only where nothing was painted keeps the ignore strokes
    widget2.accept("crf", only_unpainted=True)
    after = widget2.layers.corrections.data
    assert (after[painted_ignore] == IGNORE_LAYER).all() and (after[painted_class] == 2).all()
    assert after[0, 0] == 1 and after[0, 63] == 2


def test_keyboard_navigation_and_unbind_on_close(make_napari_viewer, qtbot, project):
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    viewer, widget = _open(make_napari_viewer, qtbot, project)
    viewer.window._qt_window.show()
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    QTest.keyClick(canvas, Qt.Key.Key_Right, Qt.KeyboardModifier.AltModifier)
    assert widget.current == "b"
    QTest.keyClick(canvas, Qt.Key.Key_Left, Qt.KeyboardModifier.AltModifier)
    assert widget.current == "a"
    project.set_status("b", "accepted")
    widget.session.refresh_status("b")
    QTest.keyClick(canvas, Qt.Key.Key_Down, Qt.KeyboardModifier.AltModifier)  # next unreviewed skips "b"
    assert widget.current == "c"
    QTest.keyClick(canvas, Qt.Key.Key_S, Qt.KeyboardModifier.AltModifier)  # skip "c" -> next unreviewed "d"
    assert project.status("c").status == "skipped" and widget.current == "d"
    QTest.keyClick(canvas, Qt.Key.Key_I, Qt.KeyboardModifier.AltModifier)  # the ignore brush
    layer = widget.layers.corrections
    assert layer.selected_label == IGNORE_LAYER and layer.mode == "paint"
    project.write_mask("d", "crf", _proposal((48, 64), 32, 0, 2), model_version="v")
    widget.show_image("d")  # reload: the proposal is new
    QTest.keyClick(canvas, Qt.Key.Key_A, Qt.KeyboardModifier.AltModifier)  # accept the shown proposal
    assert project.status("d").status == "accepted"
    np.testing.assert_array_equal(layer.data, _proposal((48, 64), 32, 1, 3))
    assert {str(k) for k in viewer.keymap} >= {"Alt+Right", "Alt+Left", "Alt+Down"}
    widget.close()
    assert not any(str(k).startswith("Alt+") for k in viewer.keymap)
    QTest.keyClick(canvas, Qt.Key.Key_Left, Qt.KeyboardModifier.AltModifier)
    assert widget.current == "d"


def test_class_colours_match_the_export_palette(make_napari_viewer, qtbot, project, tmp_path):
    from PIL import Image as PILImage

    from napari_wsss.export import export_project

    bg = Project.create(tmp_path / "bg.zarr", ["cat", "dog"], background=True)
    bg.add_image("x", np.zeros((4, 5, 3), np.uint8), ["cat"])
    for p in (project, bg):
        image_id = p.image_ids()[0]
        n = len(p.classes)
        mask = np.full(p.image_shape(image_id), 255, np.uint8)
        mask[0, :n] = np.arange(n)
        p.write_corrections(image_id, mask)
        export_project(p, tmp_path / f"out-{p.path.stem}", ids=[image_id])
        palette = np.array(PILImage.open(tmp_path / f"out-{p.path.stem}" / f"{image_id}.png")
                           .getpalette()).reshape(-1, 3)
        viewer, widget = _open(make_napari_viewer, qtbot, p)
        cmap = widget.layers.corrections.colormap
        for c in range(n):  # layer value c + 1 = class c
            np.testing.assert_allclose(cmap.map(c + 1)[:3] * 255, palette[c], atol=0.6)
        # the ignore brush has the export's void colour
        np.testing.assert_allclose(cmap.map(IGNORE_LAYER)[:3] * 255, palette[255], atol=0.6)
        viewer.close()


def test_panel_is_as_wide_as_its_controls(make_napari_viewer, qtbot, tmp_path):
    """No control is clipped, also after a project with long names changed the texts."""
    rng = np.random.default_rng(0)
    p = Project.create(tmp_path / ("a-rather-long-project-folder-name-" * 3 + ".zarr"),
                       ["disc", "square"])
    p.add_image("an_image_id_that_is_much_longer_than_the_panel_is_wide_0001",
                rng.integers(0, 255, (16, 16, 3), dtype=np.uint8), [0])
    viewer = make_napari_viewer()
    widget = AnnotationWidget(viewer)
    viewer.window.add_dock_widget(widget, name="wsss")
    viewer.window._qt_window.resize(1200, 800)
    viewer.window._qt_window.show()
    inner = widget.scroll.widget()
    widget.proposal_controls.threshold.setSuffix("  (a much longer suffix than before)")
    widget.open_project(p.path)
    qtbot.waitUntil(lambda: inner.minimumSizeHint().width() <= widget.scroll.viewport().width(),
                    timeout=3000)
    assert inner.width() <= widget.scroll.viewport().width()


def test_filters_drive_navigation(make_napari_viewer, qtbot, project):
    viewer, widget = _open(make_napari_viewer, qtbot, project)
    nav = widget.nav
    nav.status_filter.setCurrentIndex(nav.status_filter.findData("new"))
    nav.class_filter.setCurrentIndex(nav.class_filter.findData(2))  # "bar": c, d
    assert [nav.list.item(i).data(0x0100) for i in range(nav.list.count())] == ["c", "d"]
    widget.next_image()  # "a" is filtered out: the next listed image after it
    assert widget.current == "c"
    nav.list.itemClicked.emit(nav.list.item(1))
    assert widget.current == "d"
    widget.skip()
    assert [nav.list.item(i).data(0x0100) for i in range(nav.list.count())] == ["c", "d"]
    assert nav.list.item(1).text() == "d   [skipped]"


def test_file_open_through_the_reader_is_adopted(make_napari_viewer, qtbot, project):
    project.write_mask("a", "crf", _proposal((48, 64), 32, 0, 1), model_version="imagenet:x")
    viewer = make_napari_viewer()
    widget = AnnotationWidget(viewer)
    viewer.open(str(project.path), plugin="napari-wsss")  # what File > Open does
    qtbot.waitUntil(lambda: widget.session is not None, timeout=5000)
    assert widget.session.project.path == project.path
    assert widget.current == "a"
    names = [layer.name for layer in viewer.layers]
    # the reader's layers are gone
    assert names == ["image", "heatmap: no CAMs stored", "proposal: CRF", "corrections"]


def test_panel_opened_after_the_reader_adopts(make_napari_viewer, qtbot, project):
    viewer = make_napari_viewer()
    viewer.open(str(project.path), plugin="napari-wsss")
    assert len(viewer.layers) >= 1
    widget = AnnotationWidget(viewer)
    qtbot.waitUntil(lambda: widget.session is not None, timeout=5000)
    assert [layer.name for layer in viewer.layers] == [
        "image", "heatmap: no CAMs stored", "proposal: none", "corrections"]


def test_create_project_from_folder_and_csv(make_napari_viewer, qtbot, tmp_path, image_folder):
    from PIL import Image as PILImage

    folder = image_folder(tmp_path / "imgs", ("x1", "x2"))
    (tmp_path / "labels.csv").write_text("id,cat,dog\nx1,1,0\nx2,1,1\n")
    viewer = make_napari_viewer()
    widget = AnnotationWidget(viewer)
    report = widget.create_project(str(folder), str(tmp_path / "labels.csv"), str(tmp_path / "new.zarr"))
    assert sorted(report.added) == ["x1", "x2"] and not report.errors
    assert widget.session.classes == ["cat", "dog"]
    assert widget.session.image_labels("x2").tolist() == [0, 1]
    assert widget.current == "x1"
    assert widget.picker.row_text(2) == "2  dog   [2]"  # layer value, name, key
    np.testing.assert_array_equal(widget.layers.image.data, np.asarray(PILImage.open(folder / "x1.png")))


def test_accept_and_reset_are_undoable_strokes(make_napari_viewer, qtbot, project):
    project.write_mask("a", "crf", _proposal((48, 64), 32, 0, 1), model_version="imagenet:x")
    viewer, widget = _open(make_napari_viewer, qtbot, project)
    layer = widget.layers.corrections
    widget.accept("crf", only_unpainted=False)
    assert (layer.data[:, :32] == 1).all() and (layer.data[:, 32:] == 2).all()
    widget.reset()
    assert (layer.data == 0).all() and project.status("a").status == "prelabelled"
    widget.undo()  # back to the accepted mask
    assert (layer.data[:, 32:] == 2).all()
    widget.undo()  # back to nothing painted
    assert (layer.data == 0).all()
    widget.redo()
    assert (layer.data[:, :32] == 1).all()
    widget.use_ignore_brush()
    assert layer.selected_label == IGNORE_LAYER and layer.mode == "paint"
    layer.paint((0, 0), layer.selected_label)
    widget.save_now()
    widget.io.flush()
    stored = Project.open(project.path, mode="r").read_corrections("a")
    assert stored[0, 0] == 254 and stored[20, 20] == 0 and stored[20, 40] == 1


def test_chosen_proposal_stage_is_shown_and_kept_across_images(make_napari_viewer, qtbot, project):
    """One proposal layer shows the stage chosen in the Review box (the one Accept
    copies); the choice holds across images that have it; no stale data when an image
    has no proposals."""
    for image_id, split in (("a", 10), ("b", 50)):
        project.write_mask(image_id, "cam", _proposal((48, 64), split, 0, 1), model_version="v")
        project.write_mask(image_id, "crf", _proposal((48, 64), split, 1, 0), model_version="v")
    viewer, widget = _open(make_napari_viewer, qtbot, project)
    order = [layer.name for layer in viewer.layers]
    assert order[2] == "proposal: CRF"  # the last (most refined) stage by default
    widget.review.stage.setCurrentIndex(widget.review.stage.findData("cam"))
    prop = widget.layers.proposal
    assert prop.name == "proposal: prior (CAM)"
    np.testing.assert_array_equal(prop.data, _proposal((48, 64), 10, 1, 2))
    widget.next_image()
    assert widget.current == "b" and prop.name == "proposal: prior (CAM)"
    # what napari hands to the canvas (its current slice) follows the data copied in place
    np.testing.assert_array_equal(np.asarray(prop._slice.image.raw), _proposal((48, 64), 50, 1, 2))
    np.testing.assert_array_equal(np.asarray(viewer.layers["image"]._slice.image.raw),
                                  project.image("b"))
    widget.accept(only_unpainted=False)  # accepts what is shown
    np.testing.assert_array_equal(widget.layers.corrections.data, _proposal((48, 64), 50, 1, 2))
    widget.next_image()  # "c" has no proposals
    assert prop.name == "proposal: none" and (prop.data == 0).all()
    assert [layer.name for layer in viewer.layers][1:] == ["heatmap: no CAMs stored", "proposal: none",
                                                           "corrections"]
    assert len(viewer.layers) == len(order)


def test_thumbnails_follow_the_image_after_a_switch(make_napari_viewer, qtbot, project):
    from napari.layers import Image

    from napari_wsss._qt.layers import THUMBNAIL_DELAY_MS

    viewer, widget = _open(make_napari_viewer, qtbot, project)
    layer = widget.layers.image
    expected = Image(project.image("b"), rgb=True)
    expected._thumbnail_shape = layer._thumbnail_shape
    expected.refresh()
    assert not np.array_equal(layer.thumbnail, expected.thumbnail)  # still "a"
    widget.next_image()
    qtbot.wait(THUMBNAIL_DELAY_MS + 100)
    np.testing.assert_array_equal(layer.thumbnail, expected.thumbnail)


def test_one_heatmap_follows_the_picked_class(make_napari_viewer, qtbot, project):
    from napari_wsss._qt.layers import heatmap_rgb
    from napari_wsss.colors import class_color

    ramp = np.linspace(0, 1, 12 * 16, dtype=np.float32).reshape(12, 16)
    cams = np.stack([ramp, 1 - ramp])
    project.write_cams("a", "gradcam", cams, [0, 1], model_version="v")
    project.write_cams("c", "gradcam", cams, [0, 2], model_version="v")
    viewer, widget = _open(make_napari_viewer, qtbot, project)
    heat = widget.layers.heatmap
    assert heat.visible and heat.name == "heatmap: disc" and heat.blending == "additive"
    # a 12 x 16 CAM stretched over the 48 x 64 image: pixel centres line up
    assert tuple(heat.scale) == (4.0, 4.0) and tuple(heat.translate) == (1.5, 1.5)
    disc = np.array(class_color(0)[:3], np.float32)
    np.testing.assert_allclose(heat.data, ramp[..., None] * disc, atol=1e-6)
    widget.choose_class(1)  # the brush and the heatmap follow the picker
    assert widget.layers.corrections.selected_label == 2 and heat.name == "heatmap: square"
    np.testing.assert_allclose(heat.data[0, 0], np.array(class_color(1)[:3]) * 1.0, atol=1e-6)
    widget.picker.heatmap.setCurrentIndex(widget.picker.heatmap.findData("all"))
    assert heat.name == "heatmap: all classes"
    colors = np.array([class_color(0)[:3], class_color(1)[:3]], np.float32)
    np.testing.assert_allclose(heat.data, heatmap_rgb(cams, colors), atol=1e-6)
    # each pixel in the colour of its strongest class: the first pixel is square's, the last disc's
    np.testing.assert_allclose(heat.data[0, 0], colors[1], atol=1e-6)
    np.testing.assert_allclose(heat.data[-1, -1], colors[0], atol=1e-6)
    widget.cycle_heatmap()  # Alt+H: all -> off
    assert not heat.visible and heat.name == "heatmap: off"
    widget.cycle_heatmap()  # off -> the picked class
    widget.show_image("c")  # "square" is not in "c"
    assert heat.name == "heatmap: square (not in this image)" and not heat.visible
    widget.choose_class(2)
    assert heat.visible and heat.name == "heatmap: bar"
    widget.show_image("b")  # no CAMs
    assert not heat.visible
    # never more than the four layers, always in the same order
    assert [layer.name.split(":")[0] for layer in viewer.layers] == ["image", "heatmap", "proposal",
                                                                      "corrections"]


def test_proposal_contour_and_opacity_keys(make_napari_viewer, qtbot, project):
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    from napari_wsss._qt.layers import PROPOSAL_OPACITIES

    project.write_mask("a", "crf", _proposal((48, 64), 32, 0, 1), model_version="v")
    viewer, widget = _open(make_napari_viewer, qtbot, project)
    viewer.window._qt_window.show()
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    prop = widget.layers.proposal
    assert prop.contour == 0 and prop.opacity == PROPOSAL_OPACITIES[0]
    QTest.keyClick(canvas, Qt.Key.Key_C, Qt.KeyboardModifier.AltModifier)
    assert prop.contour > 0
    QTest.keyClick(canvas, Qt.Key.Key_O, Qt.KeyboardModifier.AltModifier)
    assert prop.opacity == PROPOSAL_OPACITIES[1]
    widget.next_image()  # display choices hold across images
    assert prop.contour > 0 and prop.opacity == PROPOSAL_OPACITIES[1]
    QTest.keyClick(canvas, Qt.Key.Key_C, Qt.KeyboardModifier.AltModifier)
    assert prop.contour == 0


def test_export_button_writes_the_corrected_masks(make_napari_viewer, qtbot, project, tmp_path):
    from PIL import Image as PILImage

    crf = _proposal((48, 64), 32, 0, 1)
    project.write_mask("a", "crf", crf, model_version="v")
    viewer, widget = _open(make_napari_viewer, qtbot, project)
    widget.layers.corrections.brush_size = 1
    widget.layers.corrections.paint((2, 2), 3)  # class 2 over the proposal's class 0
    widget.model_controls.export_format.setCurrentText("png")
    with qtbot.waitSignal(widget.model.export_finished, timeout=30000) as done:
        worker = widget.export(tmp_path / "out")
        assert not widget.model_controls.export_btn.isEnabled()
        assert widget.model_controls.export_cancel_btn.isEnabled()
    assert done.args == ["done"]
    assert widget.model_controls.export_btn.isEnabled()
    assert not widget.model_controls.export_cancel_btn.isEnabled()
    assert "exported 1 masks" in widget.message.text(), widget.message.text()
    # one step per image ("b", "c", "d" have nothing to export but are counted)
    bar = widget.model_controls.export_progress
    assert (bar.value(), bar.maximum(), bar.format()) == (4, 4, "export done")
    png = np.asarray(PILImage.open(tmp_path / "out" / "a.png"))
    expected = crf.copy()
    expected[2, 2] = 2  # the stroke; every other pixel falls back to the proposal
    np.testing.assert_array_equal(png, expected)
    assert worker is not None


def test_export_can_be_stopped(make_napari_viewer, qtbot, project, tmp_path):
    rng = np.random.default_rng(0)
    for k in range(40):  # enough images that the export cannot end before the click lands
        project.add_image(f"e{k:02d}", rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), [0])
        project.write_mask(f"e{k:02d}", "crf", _proposal((48, 64), 32, 0, 1), model_version="v")
    viewer, widget = _open(make_napari_viewer, qtbot, project)
    with qtbot.waitSignal(widget.model.export_finished, timeout=30000) as done:
        widget.export(tmp_path / "out")
        widget.model_controls.export_cancel_btn.click()
    assert done.args == ["cancelled"]
    assert not (tmp_path / "out" / "export.json").exists()
    assert len(list((tmp_path / "out").glob("*.png"))) < 40
    assert "export stopped" in widget.message.text()
    assert widget.model_controls.export_btn.isEnabled()
