"""A small real project for the widget tests (seeded synthetic images, no model files)."""

import os
import time

import numpy as np
import pytest

os.environ.setdefault("NAPARI_APPLICATION_GUI_NOTIFICATION_LEVEL", "error")

CLASSES = ["disc", "square", "bar"]


def make_image(rng, shape=(48, 64)):
    """An RGB image with a bright disc top-left and a dark square bottom-right."""
    h, w = shape
    img = rng.integers(90, 110, size=(h, w, 3)).astype(np.uint8)
    yy, xx = np.mgrid[:h, :w]
    img[(yy - h // 4) ** 2 + (xx - w // 4) ** 2 < (min(h, w) // 6) ** 2] = (230, 60, 40)
    img[h // 2 + 4: h - 4, w // 2 + 4: w - 4] = (30, 40, 200)
    return img


@pytest.fixture
def project(tmp_path):
    from napari_wsss.store import Project

    rng = np.random.default_rng(0)
    p = Project.create(tmp_path / "proj.zarr", CLASSES, background=False)
    labels = {"a": [0, 1], "b": [1], "c": [0, 2], "d": [2]}
    for image_id, labs in labels.items():
        p.add_image(image_id, make_image(rng), labs)
    return p


def write_image_folder(folder, names, seed=1):
    """Write `make_image` PNGs ``<name>.png`` into ``folder`` (created); returns the folder."""
    from PIL import Image as PILImage

    rng = np.random.default_rng(seed)
    folder.mkdir()
    for name in names:
        PILImage.fromarray(make_image(rng)).save(folder / f"{name}.png")
    return folder


@pytest.fixture
def image_folder():
    """``image_folder(folder, names, seed=1)``: `write_image_folder`."""
    return write_image_folder


@pytest.fixture
def synthetic_image():
    """``synthetic_image(rng, shape=(48, 64))`` -> the RGB test image of `make_image`."""
    return make_image


class Ticker:
    """Records the times a 10 ms Qt timer fires (it only fires while the event loop runs)."""

    def __init__(self):
        self.times = []
        from qtpy.QtCore import QTimer

        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(lambda: self.times.append(time.perf_counter()))

    def __enter__(self):
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.stop()

    def count(self, start, end):
        return sum(start <= x <= end for x in self.times)

    def max_gap(self, start, end):
        t = [start, *[x for x in self.times if start <= x <= end], end]
        return float(np.max(np.diff(t)))


@pytest.fixture
def ticker(qapp):
    """A 10 ms Qt timer recording when it fires; use as a context manager."""
    return Ticker()


@pytest.fixture
def open_widget(make_napari_viewer):
    """``open_widget(project) -> (viewer, widget)``: a real viewer with the panel docked and
    ``project`` opened in it (call again for a second viewer)."""
    from napari_wsss._qt import AnnotationWidget

    def _open(project):
        viewer = make_napari_viewer()
        widget = AnnotationWidget(viewer)
        viewer.window.add_dock_widget(widget, name="wsss")
        widget.open_project(project.path)
        return viewer, widget

    return _open
