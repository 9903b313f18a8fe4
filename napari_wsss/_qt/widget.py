"""`AnnotationWidget`: the dock widget that ties session, layers, panels and workers.

It holds no annotation logic of its own (that is `AnnotationSession`); it routes
signals, owns the background workers and the save debounce, and undoes every
binding it made when it closes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QFileDialog, QLabel, QVBoxLayout, QWidget

from .classes import CLASS_KEYS, ClassPicker
from .controls import ModelControls, PanelScrollArea, ProposalControls, ReviewControls
from .editing import CorrectionsEditor
from .layers import STAGE_TITLES, LayerSet
from .model_actions import ModelActions
from .navigation import NavigationPanel
from .project_panel import ProjectPanel
from .session import AnnotationSession, default_config
from .widget_display import DisplayActions
from .widget_project import PROJECT_METADATA_KEY, ProjectFlow
from .widget_review import ReviewActions
from .workers import BackgroundIO

if TYPE_CHECKING:
    import napari

__all__ = ["AnnotationWidget", "PROJECT_METADATA_KEY"]

log = logging.getLogger(__name__)


class AnnotationWidget(ProjectFlow, ReviewActions, DisplayActions, QWidget):
    """The WSSS annotation panel.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    pipeline_factory : callable or None
        ``factory(project, config) -> pipeline``; default ``Pipeline.from_project``.
    """

    image_shown = Signal(str)
    proposals_ready = Signal(str)
    proposals_finished = Signal(str, str)  # image id, "saved" / "cancelled" / "failed"
    proposal_progress = Signal(int, int, str)  # step, total, what
    saved = Signal(str)

    KEYS = {
        "Alt-Right": "next_image",
        "Alt-Left": "previous_image",
        "Alt-Down": "next_unreviewed",
        "Alt-A": "accept",
        "Alt-S": "skip",
        "Alt-I": "use_ignore_brush",
        "Alt-C": "toggle_contour",
        "Alt-O": "cycle_opacity",
        "Alt-H": "cycle_heatmap",
    }
    """Panel keys (viewer-wide); the class keys 1-9, 0 (`CLASS_KEYS`) are bound on the
    corrections layer, where they replace napari's digit shortcuts for the Labels modes
    (the letter shortcuts E, P, F, L, Z stay)."""

    def __init__(self, napari_viewer: napari.Viewer, *, pipeline_factory=None):
        super().__init__()
        self.viewer = napari_viewer
        self._factory = pipeline_factory
        self.session: AnnotationSession | None = None
        self.layers: LayerSet | None = None
        self.current: str | None = None
        self.worker = None
        self._closed = False
        self.io = BackgroundIO(self._write, self._read)
        self.save_states: dict[str, str] = {}
        self.uncertainty: dict[str, float | None] = {}
        """Review-order scores of the open project's images (`napari_wsss.review`), computed
        when "next unreviewed" first needs them; an image's entry goes when its proposals change."""

        self.project_panel = ProjectPanel()
        self.picker = ClassPicker()
        self.nav = NavigationPanel()
        self.proposal_controls = ProposalControls()
        self.proposal_controls.set_from_config(default_config())
        self.review = ReviewControls()
        self.model_controls = ModelControls()
        self.message = QLabel("")
        self.message.setWordWrap(True)
        inner = QWidget()
        lay = QVBoxLayout(inner)
        for w in (self.project_panel, self.picker, self.nav, self.review, self.proposal_controls,
                  self.model_controls, self.message):
            lay.addWidget(w)
        self.scroll = PanelScrollArea(inner)  # as wide as the controls need, scrolls vertically
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.scroll)

        self.editor = CorrectionsEditor(self.io, self)
        self.editor.status_changed.connect(self._status_changed)
        self.editor.save_state.connect(self._on_save_state)
        self.editor.refused.connect(self.notify)
        self.stroke_finished = self.editor.stroke_finished
        """`CorrectionsEditor.stroke_finished`: one finished edit of an image's corrections."""
        self.model = ModelActions(self.model_controls, lambda: self.session, self.flush, self)
        self.model.message.connect(self.message.setText)
        self.retrainer = self.model.retrainer
        self._adopt_pending = False
        self._connect()
        self._bind_keys()
        self._on_layer_inserted()  # a project opened before the panel was
        from .strokes import attach_strokes  # stroke propagation, region tools, review order (#14)

        self.strokes = attach_strokes(self)

    # ------------------------------------------------------------------ wiring
    def _connect(self) -> None:
        pp, nav, pc, rv, mc = (self.project_panel, self.nav, self.proposal_controls, self.review,
                               self.model_controls)
        pp.open_requested.connect(self.open_project)
        pp.create_requested.connect(self.create_project)
        self.picker.value_chosen.connect(self.choose_value)
        self.picker.heatmap_mode_changed.connect(lambda _: self._update_heatmap())
        rv.stage.currentIndexChanged.connect(self._stage_chosen)
        nav.image_clicked.connect(self.show_image)
        nav.filters_changed.connect(self._refresh_list)
        nav.previous_requested.connect(self.previous_image)
        nav.next_requested.connect(self.next_image)
        nav.next_unreviewed_requested.connect(self.next_unreviewed)
        pc.recompute_requested.connect(self.recompute)
        pc.cancel_requested.connect(self.cancel)
        rv.accept_requested.connect(lambda s, o: self.accept(s or None, only_unpainted=o))
        rv.reset_requested.connect(self.reset)
        rv.skip_requested.connect(self.skip)
        rv.ignore_requested.connect(self.use_ignore_brush)
        rv.undo_requested.connect(self.undo)
        rv.redo_requested.connect(self.redo)
        mc.export_requested.connect(self._ask_export)
        self.viewer.layers.events.inserted.connect(self._on_layer_inserted)
        self.viewer.layers.events.removing.connect(self._on_layer_removing)

    def _bind_keys(self) -> None:
        self._bound = []
        for key, name in self.KEYS.items():
            self.bind_key(key, getattr(self, name))

    def bind_key(self, key: str, action) -> bool:
        """Bind viewer key ``key`` to ``action()`` until the panel closes; False (and a log
        line) when someone else owns the key (theirs is kept)."""
        try:
            self.viewer.bind_key(key, lambda _v, m=action: m(), overwrite=False)
        except (ValueError, TypeError) as exc:
            log.warning("napari-wsss: key %s not bound: %s", key, exc)
            return False
        self._bound.append(key)
        return True

    # ------------------------------------------------------------------ navigation
    def visible_ids(self) -> list[str]:
        """Image ids of the list as filtered now, in file order."""
        if self.session is None:
            return []
        status, cls = self.nav.filters()
        return self.session.filtered_ids(status=status, class_index=cls)

    def _refresh_list(self) -> None:
        s = self.session
        if s is None:
            return
        ids = self.visible_ids()
        self.nav.set_images(ids, {i: s.status(i) for i in ids}, current=self.current)
        self.nav.set_counts(s.counts())

    def _status_changed(self, image_id: str) -> None:
        self.nav.set_status(image_id, self.session.status(image_id),
                            unsaved=image_id in self.editor.unsaved)
        self.nav.set_counts(self.session.counts())
        if image_id == self.current:
            self._show_state()

    def _show_state(self) -> None:
        """The review box's line: image, status and whether its corrections are saved."""
        i = self.current
        if i is None:
            return
        save = self.save_states.get(i, "saved")
        words = {"pending": "unsaved changes…", "saving": "saving…", "saved": "saved ✓",
                 "failed": "NOT SAVED (retrying)"}
        self.review.set_state(f"{i}: {self.session.status(i)} · {words.get(save, save)}",
                              error=save == "failed")

    def _on_save_state(self, image_id: str, state: str, detail: str) -> None:
        before = self.save_states.get(image_id)
        self.save_states[image_id] = state
        if state == "failed":
            self.notify(f"saving {image_id} failed: {detail}. Its strokes are kept and the save "
                        "is retried.", error=True)
        elif state == "saved" and before == "failed":
            self.notify(f"{image_id} saved")
        if state in ("failed", "saved") or before == "failed":
            self._status_changed(image_id)
        elif image_id == self.current:
            self._show_state()

    def notify(self, text: str, *, error: bool = False) -> None:
        """Say ``text`` in the panel and in napari's status bar (and as a notification)."""
        self.message.setText(text)
        self.message.setStyleSheet("color: #ef5350" if error else "")
        self.viewer.status = text
        from napari.utils.notifications import show_warning

        show_warning(text)

    def show_image(self, image_id: str) -> None:
        """Save the current image's corrections, then show ``image_id``."""
        if self.session is None or image_id is None:
            return
        previous = self.current
        self.editor.pause()  # queues the save of the current image
        try:
            view = self.io.load(image_id)  # ordered after the save just queued
            view.corrections = self.editor.corrections_for(image_id, view.corrections)
        except Exception as exc:  # a damaged image: say so, stay on the current one
            log.error("cannot show %s", image_id, exc_info=exc)
            self.message.setText(f"cannot show {image_id}: {exc}")
            if previous is not None:
                self.editor.attach(self.session, self.layers.corrections, previous)
            return
        self.current = image_id
        first = self.layers.corrections is None
        self.layers.show(view)
        if first:
            self._hook_corrections()
        self.editor.attach(self.session, self.layers.corrections, image_id)
        self.review.set_stages(self.layers.stages(), STAGE_TITLES, current=self.layers.stage)
        self.nav.select(image_id)
        self._show_state()
        self.image_shown.emit(image_id)
        self._prefetch(previous)

    def _prefetch(self, left: str | None = None) -> None:
        """Read the neighbours ahead, except the image just left: its save was just queued,
        and re-reading it competes with the switch for the CPU on small machines."""
        ids, cur = self.visible_ids(), self.current
        for target in (self.session.step(cur, 1, ids), self.session.next_unreviewed(cur, ids),
                       self.session.step(cur, -1, ids)):
            if target is not None and target not in (cur, left):
                self.io.prefetch(target)

    def _step(self, offset: int) -> None:
        if self.session is None:
            return
        ids = self.visible_ids()
        target = self.session.step(self.current, offset, ids)
        if target is not None and target != self.current:
            self.show_image(target)
            return
        where = "last" if offset > 0 else "first"
        left = self.session.next_unreviewed(self.current, ids)
        self.notify(f"{self.current} is the {where} image in this list"
                    + (f"; {left} is not reviewed yet (Alt+Down)" if left else
                       "; every image in it is reviewed"))

    def next_image(self) -> None:
        self._step(+1)

    def previous_image(self) -> None:
        self._step(-1)

    def next_unreviewed(self) -> None:
        """Go to the next unreviewed image: the most uncertain one first
        (`napari_wsss.review.review_order`), or the next in the list when the navigation's
        order is "file order"."""
        if self.session is None:
            return
        ids = self.visible_ids()
        if self.nav.order() == "uncertainty":
            from napari_wsss.review import review_order

            self.flush(wait=True)  # the current image's status and strokes are written
            # Ties (and images without proposals) keep the list order from the current image on.
            start = ids.index(self.current) + 1 if self.current in ids else 0
            ranked = review_order(self.session.project, ids=ids[start:] + ids[:start], cache=self.uncertainty)
            target = next((i for i in ranked if i != self.current), None)
        else:
            target = self.session.next_unreviewed(self.current, ids)
        if target is None:
            self.notify("no unreviewed image left in this list: the end")
        else:
            self.show_image(target)

    # ------------------------------------------------------------------ corrections
    def _write(self, image_id: str, data: np.ndarray) -> None:
        self.session.save_corrections(image_id, data)

    def _read(self, image_id: str):
        return self.session.load(image_id)

    def flush(self, wait: bool = True) -> None:
        """Queue the pending save now; with ``wait``, until every queued write landed."""
        self.editor.flush(wait=wait)

    def save_now(self) -> None:
        """Queue a write of the current corrections now."""
        self.editor.save_now()

    # ------------------------------------------------------------------ model
    def retrain(self, stage: str = "classifier", argv: list[str] | None = None) -> None:
        """Start the trainer in its own process (`ModelActions.retrain`)."""
        self.model.retrain(stage, argv)

    def _ask_export(self) -> None:
        out = QFileDialog.getExistingDirectory(self, "Export masks to folder")
        if out:
            self.export(out)

    def export(self, out_dir, *, format: str | None = None, reviewed_only: bool | None = None):
        """Export the corrected masks in a worker, with progress and a stop button
        (`ModelActions.export`); returns the started worker."""
        return self.model.export(out_dir, format=format, reviewed_only=reviewed_only)

    # ------------------------------------------------------------------ teardown
    def cleanup(self) -> None:
        """Save, stop workers and processes, unbind keys and events (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self.worker is not None:
            self.worker.quit()  # stops at its next step, before saving
        layer = self.layers.corrections if self.layers is not None else None
        if layer is not None:
            layer.events.selected_label.disconnect(self._label_changed)
            for key in CLASS_KEYS:
                layer.bind_key(key, None)
        self.editor.detach()  # queues the last save
        self.io.close()  # waits for it
        self._keep_unsaved()
        if self.layers is not None:
            self.layers.stop()
        self.model.shutdown()
        if self.session is not None:
            self.session.close()
        for key in self._bound:
            self.viewer.bind_key(key, None)
        self._bound = []
        self.viewer.layers.events.inserted.disconnect(self._on_layer_inserted)
        self.viewer.layers.events.removing.disconnect(self._on_layer_removing)

    def _keep_unsaved(self) -> None:
        """At close, corrections whose save failed go to ``.npy`` files (layer values) in a
        ``<project>.unsaved`` folder next to the project, and the log says where."""
        unsaved = dict(self.editor.unsaved)
        if not unsaved or self.session is None:
            return
        import re

        folder = Path(str(self.session.project.path) + ".unsaved")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for image_id, data in unsaved.items():
                np.save(folder / (re.sub(r"[^A-Za-z0-9._-]", "_", image_id) + ".npy"), data)
        except OSError as exc:
            log.error("corrections of %s could not be saved anywhere: %s", ", ".join(unsaved), exc)
            return
        log.error("corrections of %s could not be saved in the project; their layer values are "
                  "in %s", ", ".join(unsaved), folder)

    def closeEvent(self, event) -> None:
        self.cleanup()
        super().closeEvent(event)

    def hideEvent(self, event) -> None:
        # The dock closed or the viewer is going: do not leave a save waiting.
        if not self._closed:
            self.flush(wait=False)
        super().hideEvent(event)
