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

from .controls import ModelControls, PanelScrollArea, ProposalControls, ReviewControls
from .editing import CorrectionsEditor
from .layers import STAGE_TITLES, LayerSet
from .navigation import NavigationPanel
from .project_panel import ProjectPanel
from .model_actions import ModelActions
from .session import MASK_STAGES, AnnotationSession, config_from_settings, default_config
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
    }

    def __init__(self, napari_viewer: napari.Viewer, *, pipeline_factory=None):
        super().__init__()
        self.viewer = napari_viewer
        self._factory = pipeline_factory
        self.session: AnnotationSession | None = None
        self.layers: LayerSet | None = None
        self.current: str | None = None
        self.worker = None
        self._closed = False
        self.io = BackgroundIO(self._write, self._read,
                               on_error=lambda i, e: log.error("save of %s failed: %s", i, e))

        self.project_panel = ProjectPanel()
        self.nav = NavigationPanel()
        self.proposal_controls = ProposalControls()
        self.proposal_controls.set_from_config(default_config())
        self.review = ReviewControls()
        self.model_controls = ModelControls()
        self.message = QLabel("")
        self.message.setWordWrap(True)
        inner = QWidget()
        lay = QVBoxLayout(inner)
        for w in (self.project_panel, self.nav, self.review, self.proposal_controls,
                  self.model_controls, self.message):
            lay.addWidget(w)
        self.scroll = PanelScrollArea(inner)  # as wide as the controls need, scrolls vertically
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.scroll)

        self.editor = CorrectionsEditor(self.io, self)
        self.editor.status_changed.connect(self._status_changed)
        self.model = ModelActions(self.model_controls, lambda: self.session, self._flush, self)
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
        pp.heatmap_toggled.connect(self._toggle_heatmap)
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
            method = getattr(self, name)
            try:
                self.viewer.bind_key(key, lambda _v, m=method: m(), overwrite=False)
            except (ValueError, TypeError) as exc:  # someone else owns the key: keep theirs
                log.warning("napari-wsss: key %s not bound: %s", key, exc)
                continue
            self._bound.append(key)

    # ------------------------------------------------------------------ project
    def open_project(self, project) -> None:
        """Open a project (a path or a `napari_wsss.store.Project`) and show its first image."""
        from napari_wsss.store import Project

        if self.session is not None:
            self._flush()
            self.io.forget()
            self.layers.clear()
        if not isinstance(project, Project):
            project = Project.open(Path(project))
        self.session = AnnotationSession(project, pipeline_factory=self._factory,
                                         config=config_from_settings(None, self.proposal_controls.settings()))
        self.layers = LayerSet(self.viewer, project.classes, background=project.background)
        self.current = None
        bg = project.background
        self.project_panel.set_project(project.path, project.classes, background=bg)
        self.nav.set_choices(project.STATUSES, project.classes, background=bg)
        self._refresh_list()
        ids = self._visible_ids()
        if ids:
            self.show_image(ids[0])

    def create_project(self, folder: str, csv: str, out: str, background: bool = False):
        """Ingest an image folder (+ labels CSV, or one sub-folder per class) into a project
        at ``out`` (new or existing), open it, and return the ingest report."""
        from napari_wsss.ingest import ingest_folder

        report = ingest_folder(Path(out), Path(folder), Path(csv) if csv else None,
                               background=background)
        self.open_project(report.project)
        problems = [f"{i.where}: {i.message}" for i in (*report.errors, *report.warnings)]
        self.message.setText(
            f"added {len(report.added)} images, {len(report.errors)} errors, "
            f"{len(report.warnings)} warnings" + ("\n" + "\n".join(problems[:5]) if problems else "")
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
            self._flush(wait=True)

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
    def _visible_ids(self) -> list[str]:
        if self.session is None:
            return []
        status, cls = self.nav.filters()
        return self.session.filtered_ids(status=status, class_index=cls)

    def _refresh_list(self) -> None:
        s = self.session
        if s is None:
            return
        ids = self._visible_ids()
        self.nav.set_images(ids, {i: s.status(i) for i in ids}, current=self.current)
        self.nav.set_counts(s.counts())

    def _status_changed(self, image_id: str) -> None:
        self.nav.set_status(image_id, self.session.status(image_id))
        self.nav.set_counts(self.session.counts())
        if image_id == self.current:
            self.review.status.setText(f"{image_id}: {self.session.status(image_id)}")

    def show_image(self, image_id: str) -> None:
        """Save the current image's corrections, then show ``image_id``."""
        if self.session is None or image_id is None:
            return
        previous = self.current
        self.editor.pause()  # queues the save of the current image
        try:
            view = self.io.load(image_id)  # ordered after the save just queued
        except Exception as exc:  # a damaged image: say so, stay on the current one
            log.error("cannot show %s", image_id, exc_info=exc)
            self.message.setText(f"cannot show {image_id}: {exc}")
            if previous is not None:
                self.editor.attach(self.session, self.layers.corrections, previous)
            return
        self.current = image_id
        self.layers.show(view)
        self.editor.attach(self.session, self.layers.corrections, image_id)
        self.review.set_stages([s for s in MASK_STAGES if s in view.masks], STAGE_TITLES)
        self.nav.select(image_id)
        self.review.status.setText(f"{image_id}: {self.session.status(image_id)}")
        self.image_shown.emit(image_id)
        self._prefetch()

    def _prefetch(self) -> None:
        ids, cur = self._visible_ids(), self.current
        for target in (self.session.step(cur, 1, ids), self.session.step(cur, -1, ids),
                       self.session.next_unreviewed(cur, ids)):
            if target is not None and target != cur:
                self.io.prefetch(target)

    def _step(self, offset: int) -> None:
        target = self.session.step(self.current, offset, self._visible_ids()) if self.session else None
        if target is not None and target != self.current:
            self.show_image(target)

    def next_image(self) -> None:
        self._step(+1)

    def previous_image(self) -> None:
        self._step(-1)

    def next_unreviewed(self) -> None:
        if self.session is None:
            return
        target = self.session.next_unreviewed(self.current, self._visible_ids())
        if target is None:
            self.message.setText("no unreviewed image left in this list")
        else:
            self.show_image(target)

    def _toggle_heatmap(self, c: int, visible: bool) -> None:
        if self.layers is not None:
            self.layers.set_heatmap_visible(c, visible)

    # ------------------------------------------------------------------ corrections
    def _write(self, image_id: str, data: np.ndarray) -> None:
        self.session.save_corrections(image_id, data)

    def _read(self, image_id: str):
        return self.session.load(image_id)

    def _flush(self, wait: bool = True) -> None:
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
        self.editor.accept(stage, only_unpainted=only_unpainted)

    def reset(self) -> None:
        """Clear the corrections of the current image (undoable)."""
        if self.current is not None:
            self.editor.reset()

    def skip(self) -> None:
        """Mark the current image skipped and go to the next unreviewed one."""
        if self.current is None:
            return
        self.session.skip(self.current)
        self._status_changed(self.current)
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
        self.session.refresh_status(image_id)
        self._status_changed(image_id)
        if image_id == self.current:
            view = self.io.load(image_id)
            self.layers.show_proposals(view)
            self.review.set_stages([s for s in MASK_STAGES if s in view.masks], STAGE_TITLES)
        self.proposals_ready.emit(image_id)

    # ------------------------------------------------------------------ model
    def retrain(self, stage: str = "classifier", argv: list[str] | None = None) -> None:
        """Start the trainer in its own process (`ModelActions.retrain`)."""
        self.model.retrain(stage, argv)

    def _ask_export(self) -> None:
        out = QFileDialog.getExistingDirectory(self, "Export masks to folder")
        if out:
            self.export(out)

    def export(self, out_dir, *, format: str | None = None):
        """Export the corrected masks in a worker, with progress and a stop button
        (`ModelActions.export`); returns the started worker."""
        return self.model.export(out_dir, format=format)

    # ------------------------------------------------------------------ teardown
    def cleanup(self) -> None:
        """Save, stop workers and processes, unbind keys and events (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self.worker is not None:
            self.worker.quit()  # stops at its next step, before saving
        self.editor.detach()  # queues the last save
        self.io.close()  # waits for it
        if self.layers is not None:
            self.layers.stop()
        self.model.shutdown()
        for key in self._bound:
            self.viewer.bind_key(key, None)
        self._bound = []
        self.viewer.layers.events.inserted.disconnect(self._on_layer_inserted)
        self.viewer.layers.events.removing.disconnect(self._on_layer_removing)

    def closeEvent(self, event) -> None:
        self.cleanup()
        super().closeEvent(event)

    def hideEvent(self, event) -> None:
        # The dock closed or the viewer is going: do not leave a save waiting.
        if not self._closed:
            self._flush(wait=False)
        super().hideEvent(event)
