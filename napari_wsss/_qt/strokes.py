"""Corrections that spread: stroke-seeded refinement and region tools in the panel.

`StrokePropagator` follows the panel's `CorrectionsEditor.stroke_finished(image_id)` signal:
after every finished stroke (debounced by `DEBOUNCE_MS`) it runs
:class:`napari_wsss.refine.seeded.SeededRefiner` on the strokes so far in a worker thread and
shows the result as the proposal stage "strokes" (`napari_wsss._qt.layers.STROKES_STAGE`) in the
panel's proposal layer and Review box: the layer order never changes, and Accept (Alt+A) takes
the propagated mask like any other stage. The strokes themselves stay the stored corrections
until then. The region tools (:mod:`napari_wsss.regions`) act with the brush's current class:
fill the proposal segment under the cursor (Alt-F), accept all but that class, erase it. The
review order (most uncertain first) is the panel's "next unreviewed" (navigation box).

`attach_strokes(widget)` adds all of this to an `AnnotationWidget` (its controls at the end of
the panel, its keys on the viewer).
"""

from __future__ import annotations

import logging
import threading

import numpy as np
from qtpy.QtCore import QObject, QTimer, Signal
from qtpy.QtWidgets import QCheckBox, QGroupBox, QHBoxLayout, QPushButton, QVBoxLayout

from ..conventions import MAX_CLASSES, class_of_value, class_to_layer, layer_to_class
from ..refine.seeded import NOT_PAINTED, SeededRefiner
from ..regions import accept_all_but, erase_class, fill_region, region_at
from .layers import STROKES_STAGE
from .workers import run_in_worker

log = logging.getLogger(__name__)

__all__ = ["DEBOUNCE_MS", "StrokePropagator", "StrokeControls", "attach_strokes"]

DEBOUNCE_MS = 40
"""The refinement starts this long after the last pen-up (strokes in quick succession run once)."""


class StrokePropagator(QObject):
    """Re-runs the stroke-seeded refinement of the shown image after each stroke, off the GUI thread.

    Parameters
    ----------
    widget : AnnotationWidget
    debounce_ms : int
    **refine_kwargs
        :class:`~napari_wsss.refine.seeded.SeededRefiner` options (``work_side``, ``gamma``, ...).

    Signals
    -------
    updated(str)
        The image whose propagated proposal was just shown.
    """

    updated = Signal(str)

    def __init__(self, widget, *, debounce_ms: int = DEBOUNCE_MS, **refine_kwargs):
        super().__init__(widget)
        self.widget = widget
        self.enabled = True
        self.refine_kwargs = {"work_side": 160, "gamma": 1e-3, **refine_kwargs}
        self.mask: np.ndarray | None = None  # class indices of the last result, current image
        self._view = None
        self._refiner: tuple[str, SeededRefiner] | None = None
        self._lock = threading.Lock()
        self._worker = None
        self._again = False
        self._seq = 0  # strokes finished on the current image (a result for older strokes is stale)
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(debounce_ms)
        self.timer.timeout.connect(self.run)
        widget.image_shown.connect(self._on_image)
        widget.stroke_finished.connect(self._on_stroke)

    @property
    def layer(self):
        """The corrections layer (the strokes)."""
        return self.widget.layers.corrections if self.widget.layers is not None else None

    # ------------------------------------------------------------------ following the panel
    def _on_image(self, image_id: str) -> None:
        self._view = self.widget.io.load(image_id)  # just shown: from the cache
        self.mask = None
        self._refiner = None
        self._seq += 1
        if self.enabled:  # build the working-resolution prior and image before the first stroke
            worker = run_in_worker(self._prepare, image_id, self._view)
            worker.errored.connect(lambda exc: log.warning("stroke refinement: %s", exc))
            worker.start()
            self.timer.start()  # strokes from an earlier visit: propagate them

    def _on_stroke(self, image_id: str) -> None:
        if not self.enabled or self._view is None or image_id != self._view.image_id:
            return
        self._seq += 1
        self.timer.start()  # the pixels are read when it fires (at the signal, napari may not have written them yet)

    # ------------------------------------------------------------------ work
    def _make_refiner(self, view) -> SeededRefiner:
        session = self.widget.session
        h, w = view.image.shape[:2]
        if view.cams is not None and len(view.cam_classes):
            cams, classes = view.cams, view.cam_classes
        else:  # no CAMs stored yet: a flat prior over the image's labels
            classes = view.labels
            cams = np.ones((len(classes), max(1, h // 8), max(1, w // 8)), np.float32)
        from ..refine.threshold import resolve_threshold

        threshold = resolve_threshold(getattr(session.config, "cam_threshold", "auto"), np.clip(cams, 0.0, 1.0),
                                      session.project.read_calibration())  # "auto": the calibration's
        return SeededRefiner(view.image, np.clip(cams, 0.0, 1.0), classes,
                             background=session.project.background, threshold=threshold, **self.refine_kwargs)

    def _prepare(self, image_id: str, view) -> SeededRefiner:
        with self._lock:
            if self._refiner is None or self._refiner[0] != image_id:
                self._refiner = (image_id, self._make_refiner(view))
            return self._refiner[1]

    def _compute(self, image_id: str, seq: int, view, seeds: np.ndarray):
        return image_id, seq, self._prepare(image_id, view)(seeds).mask

    def run(self) -> None:
        """Start the refinement on the current strokes (again after the running one, if busy)."""
        if self._view is None or self.widget.current != self._view.image_id:
            return
        if self._worker is not None:
            self._again = True
            return
        seeds = layer_to_class(np.array(self.layer.data, copy=True))
        if np.all(seeds == NOT_PAINTED):  # everything erased / reset: nothing to propagate
            self.mask = None
            self.widget.show_computed_stage(self._view.image_id, STROKES_STAGE, None)
            return
        worker = run_in_worker(self._compute, self._view.image_id, self._seq, self._view, seeds)
        worker.returned.connect(self._show)
        worker.errored.connect(lambda exc: self.widget.notify(f"stroke refinement failed: {exc}", error=True))
        worker.finished.connect(self._finished)
        self._worker = worker
        worker.start()

    def _finished(self) -> None:
        self._worker = None
        if self._again:
            self._again = False
            self.run()

    def _show(self, result) -> None:
        image_id, seq, mask = result
        if image_id != self.widget.current or seq != self._seq:
            return  # another image, or strokes changed since (the newer run shows them)
        first = self.mask is None
        self.mask = mask
        # The first result of an image becomes the chosen stage (the annotator just painted);
        # later ones update it in place, and a stage chosen meanwhile stays chosen.
        self.widget.show_computed_stage(image_id, STROKES_STAGE, class_to_layer(mask), choose=first)
        self.updated.emit(image_id)

    # ------------------------------------------------------------------ region tools
    def _brush_class(self) -> int | None:
        value = int(self.layer.selected_label) if self.layer is not None else 0
        cls = class_of_value(value)
        return None if cls >= MAX_CLASSES else cls  # the eraser or the ignore brush

    def _proposal(self) -> np.ndarray | None:
        """Class indices of the proposal chosen in the Review box (the propagated one too)."""
        view = self.widget.layers.view if self.widget.layers is not None else None
        stage = self.widget.review.stage.currentData()
        return None if view is None or stage not in view.masks else layer_to_class(view.masks[stage])

    def _edit(self, new_classes: np.ndarray, status: str = "corrected") -> None:
        if self.widget.current is not None:
            self.widget.editor.edit(class_to_layer(new_classes), status)

    def fill_under_cursor(self) -> None:
        """Give the proposal segment under the cursor the brush's class."""
        cls, prop = self._brush_class(), self._proposal()
        if cls is None or prop is None:
            return
        pos = self.layer.world_to_data(self.widget.viewer.cursor.position)[-2:]
        try:
            region = region_at(pos, mode="segment", proposal=prop)
        except ValueError:
            return
        self._edit(fill_region(layer_to_class(self.layer.data), region, cls))

    def accept_all_but_brush_class(self) -> None:
        cls, prop = self._brush_class(), self._proposal()
        if cls is not None and prop is not None:
            self._edit(accept_all_but(prop, layer_to_class(self.layer.data), cls), "accepted")

    def erase_brush_class(self) -> None:
        cls = self._brush_class()
        if cls is not None and self.layer is not None:
            self._edit(erase_class(layer_to_class(self.layer.data), cls))


class StrokeControls(QGroupBox):
    """Buttons of the stroke tools."""

    def __init__(self, propagator: StrokePropagator):
        super().__init__("Strokes and regions")
        self.propagate = QCheckBox("propagate strokes (seeded refinement)")
        self.propagate.setChecked(True)
        self.propagate.toggled.connect(lambda on: setattr(propagator, "enabled", on))
        self.propagate.setToolTip("After each stroke, spread the strokes along the image's edges: "
                                  "the result is the proposal stage 'strokes' (Accept takes it)")
        buttons = [("fill segment (Alt-F)", propagator.fill_under_cursor),
                   ("erase brush class", propagator.erase_brush_class),
                   ("accept all but brush class", propagator.accept_all_but_brush_class)]
        lay = QVBoxLayout(self)
        lay.addWidget(self.propagate)
        self.buttons = {}
        for i in range(0, len(buttons), 2):
            row = QHBoxLayout()
            for text, slot in buttons[i:i + 2]:
                b = QPushButton(text)
                b.clicked.connect(slot)
                self.buttons[text] = b
                row.addWidget(b)
            lay.addLayout(row)


KEYS = {"Alt-F": "fill_under_cursor"}


def attach_strokes(widget, **refine_kwargs) -> StrokePropagator:
    """Add the stroke tools to an `AnnotationWidget`: propagator, controls, keys."""
    propagator = StrokePropagator(widget, **refine_kwargs)
    controls = StrokeControls(propagator)
    inner = widget.scroll.widget()
    lay = inner.layout() if inner is not None else None
    if lay is not None:
        lay.insertWidget(max(0, lay.count() - 1), controls)  # above the message line
    propagator.controls = controls
    for key, name in KEYS.items():
        widget.bind_key(key, getattr(propagator, name))  # unbound when the panel closes
    return propagator
