"""Corrections that spread: stroke-seeded refinement, region tools and review order in the panel.

`StrokePropagator` follows the corrections layer: after every pen-up (napari's ``paint`` event,
debounced by `DEBOUNCE_MS`) it runs :class:`napari_wsss.refine.seeded.SeededRefiner` on the
strokes so far in a worker thread and shows the result as the layer "proposal: strokes";
"accept propagated" (Alt-P) copies it into the unpainted pixels of the corrections. The strokes
themselves stay the stored corrections until then. The region tools
(:mod:`napari_wsss.regions`) act with the brush's current class: fill the proposal segment under
the cursor (Alt-F), accept all but that class, erase it. "Most uncertain next" (Alt-U) goes to the
unreviewed image :func:`napari_wsss.review.review_order` puts first.

`attach_strokes(widget)` adds all of this to an `AnnotationWidget` (its controls at the end of
the panel, its keys on the viewer).
"""

from __future__ import annotations

import logging
import threading

import numpy as np
from qtpy.QtCore import QObject, QTimer, Signal
from qtpy.QtWidgets import QCheckBox, QGroupBox, QHBoxLayout, QPushButton, QVBoxLayout

from ..conventions import class_to_layer, layer_to_class
from ..refine.seeded import SeededRefiner
from ..regions import accept_all_but, erase_class, fill_region, region_at
from ..review import review_order
from .session import merge_accept
from .workers import run_in_worker

log = logging.getLogger(__name__)

__all__ = ["DEBOUNCE_MS", "StrokePropagator", "StrokeControls", "attach_strokes"]

DEBOUNCE_MS = 40
"""The refinement starts this long after the last pen-up (strokes in quick succession run once)."""

LAYER_NAME = "proposal: strokes"


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
        self.layer = None
        self._watched = None
        self._view = None
        self._refiner: tuple[str, SeededRefiner] | None = None
        self._lock = threading.Lock()
        self._worker = None
        self._again = False
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(debounce_ms)
        self.timer.timeout.connect(self.run)
        widget.image_shown.connect(self._on_image)

    # ------------------------------------------------------------------ following the panel
    def _on_image(self, image_id: str) -> None:
        corrections = self.widget.layers.corrections
        if corrections is not self._watched:
            if self._watched is not None:
                self._watched.events.paint.disconnect(self._on_paint)
            corrections.events.paint.connect(self._on_paint)
            self._watched = corrections
        self._view = self.widget.io.load(image_id)  # just shown: from the cache
        self.mask = None
        self._refiner = None
        if self.layer is not None and self.layer in self.widget.viewer.layers:
            self.layer.data = np.zeros(self._view.image.shape[:2], np.uint8)
        if self.enabled:  # build the working-resolution prior and image before the first stroke
            worker = run_in_worker(self._prepare, image_id, self._view)
            worker.errored.connect(lambda exc: log.warning("stroke refinement: %s", exc))
            worker.start()

    def _on_paint(self, event=None) -> None:
        if self.enabled and self._view is not None and self.widget.editor._applying is None:
            self._ensure_layer()
            self.timer.start()

    def _ensure_layer(self) -> None:
        """Add the "proposal: strokes" layer (at the first stroke: adding a layer takes the GUI
        thread far longer than updating one, so it is done once, not per result)."""
        viewer = self.widget.viewer
        if self.layer is not None and self.layer in viewer.layers:
            return
        from napari.layers import Labels

        self.layer = Labels(np.zeros(self._view.image.shape[:2], np.uint8), name=LAYER_NAME, opacity=0.45,
                            colormap=self.widget.layers._cmap)
        self.layer.editable = False
        ll = viewer.layers
        ll.insert(ll.index(self._watched) if self._watched in ll else len(ll), self.layer)
        ll.selection.active = self._watched

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

    def _compute(self, image_id: str, view, seeds: np.ndarray):
        return image_id, self._prepare(image_id, view)(seeds).mask

    def run(self) -> None:
        """Start the refinement on the current strokes (again after the running one, if busy)."""
        if self._view is None or self.widget.current != self._view.image_id:
            return
        if self._worker is not None:
            self._again = True
            return
        seeds = layer_to_class(np.array(self._watched.data, copy=True))
        worker = run_in_worker(self._compute, self._view.image_id, self._view, seeds)
        worker.returned.connect(self._show)
        worker.errored.connect(lambda exc: self.widget.message.setText(f"stroke refinement failed: {exc}"))
        worker.finished.connect(self._finished)
        self._worker = worker
        worker.start()

    def _finished(self) -> None:
        self._worker = None
        if self._again:
            self._again = False
            self.run()

    def _show(self, result) -> None:
        image_id, mask = result
        if image_id != self.widget.current:
            return
        self.mask = mask
        if self.layer is not None and self.layer in self.widget.viewer.layers:
            self.layer.data = class_to_layer(mask)
        self.updated.emit(image_id)

    # ------------------------------------------------------------------ actions
    def _edit(self, new_classes: np.ndarray, status: str = "corrected") -> None:
        """Put class indices into the corrections layer as one undoable edit; set the status."""
        w = self.widget
        if w.current is None:
            return
        w.editor._apply(class_to_layer(new_classes), status)
        if status == "corrected":
            w.session.mark_corrected(w.current)
        else:
            w.session.project.set_status(w.current, status)
            w.session.refresh_status(w.current)
        w.editor.status_changed.emit(w.current)

    def accept(self) -> None:
        """Copy the propagated proposal into the unpainted pixels; status ``accepted``."""
        if self.mask is None or self.widget.current is None:
            self.widget.message.setText("no propagated proposal yet: paint a stroke first")
            return
        new = merge_accept(self._watched.data, class_to_layer(self.mask), only_unpainted=True)
        self._edit(layer_to_class(new), "accepted")

    def _brush_class(self) -> int | None:
        value = int(self._watched.selected_label) if self._watched is not None else 0
        cls = int(layer_to_class(np.array([value], np.uint8))[0])
        return None if cls >= 254 else cls

    def _proposal(self) -> np.ndarray | None:
        if self.mask is not None:
            return self.mask
        stage = self.widget.review.stage.currentData()
        view = self._view
        return None if view is None or stage not in view.masks else layer_to_class(view.masks[stage])

    def fill_under_cursor(self) -> None:
        """Give the proposal segment under the cursor the brush's class."""
        cls, prop = self._brush_class(), self._proposal()
        if cls is None or prop is None:
            return
        pos = self._watched.world_to_data(self.widget.viewer.cursor.position)[-2:]
        try:
            region = region_at(pos, mode="segment", proposal=prop)
        except ValueError:
            return
        self._edit(fill_region(layer_to_class(self._watched.data), region, cls))

    def accept_all_but_brush_class(self) -> None:
        cls, prop = self._brush_class(), self._proposal()
        if cls is not None and prop is not None:
            self._edit(accept_all_but(prop, layer_to_class(self._watched.data), cls), "accepted")

    def erase_brush_class(self) -> None:
        cls = self._brush_class()
        if cls is not None and self._watched is not None:
            self._edit(erase_class(layer_to_class(self._watched.data), cls))

    def most_uncertain_next(self) -> None:
        w = self.widget
        if w.session is None:
            return
        w._flush(wait=True)  # statuses of the current image are written
        ids = [i for i in review_order(w.session.project, ids=w._visible_ids()) if i != w.current]
        if ids:
            w.show_image(ids[0])
        else:
            w.message.setText("no unreviewed image left in this list")


class StrokeControls(QGroupBox):
    """Buttons of the stroke tools."""

    def __init__(self, propagator: StrokePropagator):
        super().__init__("Strokes and regions")
        self.propagate = QCheckBox("propagate strokes (seeded refinement)")
        self.propagate.setChecked(True)
        self.propagate.toggled.connect(lambda on: setattr(propagator, "enabled", on))
        buttons = [("accept propagated (Alt-P)", propagator.accept),
                   ("fill segment (Alt-F)", propagator.fill_under_cursor),
                   ("accept all but brush class", propagator.accept_all_but_brush_class),
                   ("erase brush class", propagator.erase_brush_class),
                   ("most uncertain next (Alt-U)", propagator.most_uncertain_next)]
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


KEYS = {"Alt-P": "accept", "Alt-F": "fill_under_cursor", "Alt-U": "most_uncertain_next"}


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
        try:
            widget.viewer.bind_key(key, lambda _v, m=getattr(propagator, name): m(), overwrite=False)
        except (ValueError, TypeError) as exc:
            log.warning("napari-wsss: key %s not bound: %s", key, exc)
            continue
        widget._bound.append(key)  # the widget unbinds them on close
    return propagator
