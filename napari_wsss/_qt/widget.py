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
from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import QFileDialog, QLabel, QVBoxLayout, QWidget

from napari_wsss.conventions import class_of_value, is_paintable, value_of_class

from .classes import CLASS_KEYS, HEATMAP_PICKED, ClassPicker
from .controls import ModelControls, PanelScrollArea, ProposalControls, ReviewControls
from .editing import CorrectionsEditor
from .layers import HEATMAP_ALL, HEATMAP_OFF, STAGE_TITLES, STROKES_STAGE, LayerSet
from .navigation import NavigationPanel
from .project_panel import ProjectPanel
from .model_actions import ModelActions
from .project_info import project_opened
from .session import AnnotationSession, config_from_settings, default_config
from .workers import BackgroundIO, proposal_worker

if TYPE_CHECKING:
    import napari

__all__ = ["AnnotationWidget", "PROJECT_METADATA_KEY"]

log = logging.getLogger(__name__)

PROJECT_METADATA_KEY = "napari_wsss"
"""Layers from the project reader carry ``metadata[PROJECT_METADATA_KEY]`` with the
``project`` path and ``image_id``; the panel replaces them with its own layers."""


class AnnotationWidget(QWidget):
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

    # ------------------------------------------------------------------ project
    def open_project(self, project) -> None:
        """Open a project (a path or a `napari_wsss.store.Project`) and show its first image."""
        from napari_wsss.store import Project

        if self.session is not None:
            self.flush()
            self.io.forget()
            self.layers.clear()
            self.session.close()
        if not isinstance(project, Project):
            project = Project.open(Path(project))
        self.session = AnnotationSession(project, pipeline_factory=self._factory,
                                         config=config_from_settings(None, self.proposal_controls.settings()))
        self.layers = LayerSet(self.viewer, project.classes, background=project.background)
        self.current = None
        self.uncertainty = {}
        bg = project.background
        self.project_panel.set_project(project.path)
        self.picker.set_classes(project.classes, background=bg)
        self.nav.set_choices(project.STATUSES, project.classes, background=bg)
        project_opened(self, project)  # calibration, classes needing strokes, model versions
        self._refresh_list()
        start = self.session.resume_id(self.visible_ids())
        if start is not None:
            self.show_image(start)

    def create_project(self, folder: str, csv: str, out: str, background: bool | str = False):
        """Ingest an image folder (+ labels CSV, or one sub-folder per class) into a project
        at ``out`` (new or existing), open it, and return the ingest report. ``background``:
        add a background class, or the labels' background class name (``--background-class``)."""
        from napari_wsss.ingest import ingest_folder

        report = ingest_folder(Path(out), Path(folder), Path(csv) if csv else None,
                               background=bool(background),
                               background_class=background if isinstance(background, str) else None)
        self.open_project(report.project)
        problems = [f"{i.where}: {i.message}" for i in (*report.errors, *report.warnings)]
        self.message.setText(
            f"added {len(report.added)} images, {len(report.errors)} errors, "
            f"{len(report.warnings)} warnings" + ("\n" + "\n".join(problems[:5]) if problems else "")
            + (f"\n{report.background_note}" if report.background_note else "")
        )
        return report

    def _reader_layers(self) -> list[tuple[object, dict]]:
        """Layers a project reader added (``metadata["napari_wsss"]["project"]``), not ours."""
        ours = set(map(id, self.layers._layers())) if self.layers is not None else set()
        out = []
        for layer in self.viewer.layers:
            meta = layer.metadata.get(PROJECT_METADATA_KEY) if hasattr(layer, "metadata") else None
            if isinstance(meta, dict) and meta.get("project") and id(layer) not in ours:
                out.append((layer, meta))
        return out

    def _on_layer_inserted(self, event=None) -> None:
        if not self._adopt_pending and self._reader_layers():
            # The reader adds several layers one by one: adopt them once, afterwards.
            self._adopt_pending = True
            QTimer.singleShot(0, self._adopt_reader_layers)

    def _on_layer_removing(self, event) -> None:
        # Closing the viewer removes every layer first: save the corrections before
        # they go (also when the user deletes the corrections layer).
        layers = self.viewer.layers
        if self.layers is None or not 0 <= event.index < len(layers):
            return
        if layers[event.index] is self.layers.corrections:
            self.flush(wait=True)

    def _adopt_reader_layers(self) -> None:
        """Replace layers opened by File > Open (the npe2 reader) by the panel's own."""
        self._adopt_pending = False
        found = self._reader_layers()
        if not found or self._closed:
            return
        meta = found[0][1]
        for layer, _ in found:
            self.viewer.layers.remove(layer)
        path = Path(meta["project"])
        if self.session is None or Path(self.session.project.path) != path:
            self.open_project(path)
        if meta.get("image_id") in self.session.image_ids:
            self.show_image(meta["image_id"])

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

    # ------------------------------------------------------------------ classes and display
    def _hook_corrections(self) -> None:
        """The corrections layer exists now: the class keys and the label box -> panel link."""
        layer = self.layers.corrections
        for k, key in enumerate(CLASS_KEYS):
            layer.bind_key(key, lambda _l, k=k: self.choose_class(k), overwrite=True)
        layer.events.selected_label.connect(self._label_changed)
        self._label_changed()

    def _label_changed(self, event=None) -> None:
        layer = self.layers.corrections if self.layers is not None else None
        if layer is None or not is_paintable(layer.selected_label, len(self.session.classes)):
            return  # the editor sets it back and says why
        self.picker.set_value(layer.selected_label)
        self._update_heatmap()

    def choose_class(self, c: int) -> bool:
        """Paint with class ``c`` (the keys 1-9, 0 call this with ``c`` = 0..9)."""
        if self.session is None or not 0 <= c < len(self.session.classes):
            if self.session is not None:
                self.notify(f"no class {c + 1}: this project has {len(self.session.classes)} classes")
            return False
        return self.choose_value(value_of_class(c))

    def choose_value(self, value: int) -> bool:
        """Paint with layer value ``value`` (what the class picker emits)."""
        if self.layers is None or self.layers.corrections is None:
            return False
        ok = self.editor.choose(value)
        if ok:
            self.viewer.layers.selection.active = self.layers.corrections
        return ok

    def _update_heatmap(self) -> None:
        if self.layers is None or self.layers.corrections is None:
            return
        mode = self.picker.heatmap_mode()
        if mode == HEATMAP_PICKED:
            v = int(self.layers.corrections.selected_label)
            c = class_of_value(v)
            if c >= len(self.session.classes):  # ignore / eraser: keep the last class shown
                return
            self.layers.set_heatmap(c)
        else:
            self.layers.set_heatmap(HEATMAP_ALL if mode == "all" else HEATMAP_OFF)

    def cycle_heatmap(self) -> None:
        """Heatmap: picked class -> all classes -> off (Alt+H)."""
        self.picker.cycle_heatmap()

    def toggle_contour(self) -> None:
        """Proposal filled <-> contours (Alt+C)."""
        if self.layers is not None:
            contour = self.layers.toggle_contour()
            self.viewer.status = f"proposal drawn as {'contours' if contour else 'filled regions'}"

    def cycle_opacity(self) -> None:
        """Next proposal opacity (Alt+O)."""
        if self.layers is not None:
            self.viewer.status = f"proposal opacity {self.layers.cycle_opacity():.2f}"

    def _stage_chosen(self, _index=None) -> None:
        if self.layers is not None:
            self.layers.set_stage(self.review.stage.currentData())

    def show_computed_stage(self, image_id: str, stage: str, data: np.ndarray | None, *,
                            choose: bool = False) -> None:
        """Show a proposal computed in the panel (layer values, e.g. the strokes' propagated
        one) as proposal ``stage`` of ``image_id`` if it is the current image: in the
        proposal layer when chosen, and in the Review box's stage list, where Accept takes
        it. ``choose`` makes it the chosen stage; ``None`` removes it."""
        if self.layers is None or image_id != self.current:
            return
        known = stage in self.layers.stages()
        if choose and data is not None:
            self.layers.stage = stage
        self.layers.set_computed_stage(stage, data)
        if choose or known != (data is not None):
            self.review.set_stages(self.layers.stages(), STAGE_TITLES, current=self.layers.stage)

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

    def accept(self, stage: str | None = None, *, only_unpainted: bool | None = None) -> None:
        """Copy a proposal into the corrections; status ``accepted``."""
        if self.current is None:
            return
        stage = stage or self.review.stage.currentData()
        if stage is None:
            self.message.setText("no proposal to accept: compute proposals first")
            return
        if only_unpainted is None:
            only_unpainted = self.review.only_unpainted.isChecked()
        computed = self.layers.view.masks.get(stage) if stage == STROKES_STAGE else None
        if stage == STROKES_STAGE and computed is None:
            self.message.setText("no propagated proposal yet: paint a stroke first")
            return
        self.editor.accept(stage, only_unpainted=only_unpainted, proposal=computed)

    def reset(self) -> None:
        """Clear the corrections of the current image (undoable)."""
        if self.current is not None:
            self.editor.reset()

    def skip(self) -> None:
        """Go to the next unreviewed image; an unreviewed current image is marked
        ``skipped`` (a reviewed one keeps its status and mask: see docs/review.md)."""
        if self.current is None:
            return
        image_id = self.current
        if not self.session.skip(image_id):
            self.notify(f"{image_id} stays {self.session.status(image_id)} (Reset first to skip it)")
        self._status_changed(image_id)
        self.next_unreviewed()

    def use_ignore_brush(self) -> None:
        if self.current is not None:
            self.editor.use_ignore_brush()
            self.viewer.layers.selection.active = self.layers.corrections

    def undo(self) -> None:
        if self.current is not None:
            self.editor.undo()

    def redo(self) -> None:
        if self.current is not None:
            self.editor.redo()

    # ------------------------------------------------------------------ proposals
    def recompute(self):
        """Compute proposals for the current image in a worker; returns the started worker
        (None when there is no image or a computation is already running)."""
        if self.session is None or self.current is None or self.worker is not None:
            return None
        try:
            config = config_from_settings(self.session.config, self.proposal_controls.settings())
        except ValueError as exc:
            self.message.setText(str(exc))
            return None
        self.session.set_config(config)
        worker = proposal_worker(self.session, self.current)
        # Bound methods (not lambdas): Qt drops these connections if the panel is deleted.
        self._job = {"image_id": self.current, "outcome": "cancelled"}
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._worker_error)
        worker.finished.connect(self._worker_finished)
        self.worker = worker
        self.proposal_controls.set_busy(True)
        self.message.setText("")
        worker.start()
        return worker

    def cancel(self) -> None:
        """Stop the running proposal job before its next stage; nothing is saved."""
        if self.worker is not None:
            self.worker.quit()
            self.proposal_controls.show_progress(0, 1, "cancelling…")

    def _on_progress(self, p) -> None:
        self.proposal_controls.show_progress(*p)
        self.proposal_progress.emit(*p)

    def _on_returned(self, image_id) -> None:
        if image_id is not None:
            self._job["outcome"] = "saved"
            self._proposals_done(image_id)

    def _worker_error(self, exc: BaseException) -> None:
        self._job["outcome"] = "failed"
        log.error("proposals failed", exc_info=exc)
        self.message.setText(f"proposals failed: {exc}")

    def _worker_finished(self) -> None:
        self.worker = None
        self.proposal_controls.set_busy(False)
        image_id, outcome = self._job["image_id"], self._job["outcome"]
        if outcome == "cancelled":
            self.message.setText("proposal computation cancelled: nothing was saved")
        self.proposals_finished.emit(image_id, outcome)

    def _proposals_done(self, image_id: str) -> None:
        self.io.forget(image_id)
        self.uncertainty.pop(image_id, None)
        self.session.refresh_status(image_id)
        self._status_changed(image_id)
        if image_id == self.current:
            view = self.io.load(image_id)
            self.layers.show_proposals(view)
            self.review.set_stages(self.layers.stages(), STAGE_TITLES, current=self.layers.stage)
        self.proposals_ready.emit(image_id)

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
