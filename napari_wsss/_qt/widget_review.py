"""Review actions (accept, reset, skip, ignore brush, undo/redo) and the proposal worker
of `AnnotationWidget`."""

from __future__ import annotations

import logging

from .layers import STAGE_TITLES, STROKES_STAGE
from .session import config_from_settings
from .workers import proposal_worker

__all__ = ["ReviewActions"]

#: The panel's logger (``napari_wsss._qt.widget``), shared by the parts of the widget.
log = logging.getLogger("napari_wsss._qt.widget")


class ReviewActions:
    """`AnnotationWidget` methods that review the current image and compute its proposals
    (a mixin: it uses the widget's session, layers, editor, I/O, panels and signals)."""

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
