"""Long work runs off the GUI thread: a timer keeps ticking while it runs."""

import time

import numpy as np

from napari_wsss._qt import AnnotationWidget
from napari_wsss.store import Project


def test_saving_a_large_image_does_not_block_the_event_loop(make_napari_viewer, qtbot, tmp_path, ticker):
    rng = np.random.default_rng(0)
    project = Project.create(tmp_path / "big.zarr", ["a", "b"])
    h, w = 3000, 4000
    project.add_image("big", rng.integers(0, 255, (h, w, 3), dtype=np.uint8), [0, 1])
    project.add_image("small", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), [0])
    viewer = make_napari_viewer()
    widget = AnnotationWidget(viewer)
    widget.open_project(project.path)
    layer = widget.layers.corrections
    # noisy corrections compress badly: a slow write
    layer.data_setitem(np.nonzero(np.ones((h, w), bool)), rng.integers(0, 3, h * w).astype(np.uint8))
    with ticker as ticks:
        t0 = time.perf_counter()
        for _ in range(4):  # four full writes back to back: long enough to measure
            widget.save_now()
        queued = time.perf_counter() - t0
        qtbot.waitUntil(lambda: widget.io.pending() == 0, timeout=60000)
        t1 = time.perf_counter()
    assert t1 - t0 > 0.2, "the write was too fast to show anything"
    assert queued < 0.2  # the GUI thread only copied the array (four times)
    assert ticks.max_gap(t0 + queued, t1) < 0.2
    assert len([x for x in ticks.times if t0 <= x <= t1]) >= (t1 - t0) / 0.010 * 0.3
    stored = Project.open(project.path, mode="r").read_corrections("big")
    np.testing.assert_array_equal(stored, np.where(layer.data == 0, 255, layer.data - 1))
