"""`ModelActions`: the "Model" box's work: retraining in a child process, exporting in a worker.

Both report progress in the box and can be stopped: the trainer process is terminated;
the export stops before its next image (the masks written so far stay, ``export.json``
is not written, so a stopped export is recognisable).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from napari.qt.threading import GeneratorWorker, thread_worker
from qtpy.QtCore import QObject, QTimer, Signal

from .model_versions import ModelVersions
from .retrain import RetrainRunner, format_progress, train_command
from .workers import Cancelled

__all__ = ["ModelActions", "export_job"]

log = logging.getLogger(__name__)


def export_job(project, out_dir, *, format: str, report: Callable, should_stop: Callable[[], bool],
               reviewed_only: bool = False):
    """Generator: `napari_wsss.export.export_project` with progress and cancellation.

    ``report((done, total, text))`` is called before each image; when ``should_stop()``
    turns true the export stops before the next image. Returns the ``ExportReport``, or
    None when stopped.
    """
    from napari_wsss.export import export_project

    def hook(done: int, total: int) -> None:
        if should_stop():
            raise Cancelled
        report((done, total, f"exported {done}/{total}"))

    yield (0, 1, "starting export")
    try:
        return export_project(project, Path(out_dir), format=format, progress=hook,
                              reviewed_only=reviewed_only)
    except Cancelled:
        return None


class ModelActions(QObject):
    """Retrain and export for an `AnnotationWidget` (its ``model_controls`` box).

    Parameters
    ----------
    controls : ModelControls
    session : callable
        ``session() -> AnnotationSession | None`` (the widget's current session).
    flush : callable
        Writes pending corrections (before training or exporting reads them).

    Signals
    -------
    message(str)
        A one-line outcome for the panel's message area.
    export_finished(str)
        ``"done"``, ``"cancelled"`` or ``"failed"``.
    """

    message = Signal(str)
    export_finished = Signal(str)

    def __init__(self, controls, session: Callable, flush: Callable, parent=None):
        super().__init__(parent)
        self.controls = controls
        self._session = session
        self._flush = flush
        self.retrainer = RetrainRunner(self)
        self.budget_timer = QTimer(self)
        self.budget_timer.setSingleShot(True)
        self.budget_timer.timeout.connect(self._budget_over)
        self._stopped_by = None
        self.export_worker: GeneratorWorker | None = None
        self._export_outcome = "failed"
        c = controls
        c.retrain_requested.connect(self.retrain)
        c.cancel_retrain_requested.connect(self.stop_training)
        c.cancel_export_requested.connect(self.cancel_export)
        self.retrainer.progress.connect(lambda p: c.show_progress(p, format_progress(p)))
        self.retrainer.progress.connect(self._note_stop)
        self.retrainer.log.connect(c.log.appendPlainText)
        self.retrainer.finished.connect(self._retrain_finished)
        self.versions = ModelVersions()  # in use / stopped run / keep N, under the budget row
        c.layout().insertWidget(2, self.versions)
        self.versions.model_changed.connect(self._model_chosen)

    def set_project(self, project) -> None:
        """Show the versions of the opened project."""
        self.versions.set_project(project)

    def _model_chosen(self) -> None:
        session = self._session()
        if session is not None:
            session.invalidate_pipeline()
        text = "new proposals use the stopped run's model: " + self.versions.in_use.text().replace("\n", "; ")
        self.controls.log.appendPlainText(text)
        self.message.emit(text)

    # ------------------------------------------------------------------ retrain
    def retrain(self, stage: str = "classifier", argv: list[str] | None = None) -> None:
        """Start the trainer in its own process (``argv`` overrides the command)."""
        session = self._session()
        if session is None or self.retrainer.is_running():
            return
        self._flush()
        self.controls.set_running(True)
        self._stopped_by = None
        self.retrainer.start(argv or train_command(session.project.path, stage,
                                                   *self.controls.train_options()))
        minutes = self.controls.minutes.value()
        if minutes > 0:
            self.budget_timer.start(int(minutes * 60_000))

    def stop_training(self, why: str = "you") -> None:
        """Stop the trainer (the Stop button, or the time budget)."""
        if self.retrainer.is_running():
            self._stopped_by = why
            self.retrainer.cancel()

    def _note_stop(self, p: dict) -> None:
        if p.get("event") == "done" and p.get("stopped") and self._stopped_by is None:
            self._stopped_by = "its step limit"  # the trainer ended early by itself

    def _budget_over(self) -> None:
        self.stop_training("the time budget")

    def _retrain_finished(self, code: int) -> None:
        self.budget_timer.stop()
        self.controls.set_running(False)
        session = self._session()
        self.versions.refresh()
        kept = ("the model in use stays; its checkpoints are kept: \"Use stopped run's model\" "
                "makes it the model in use" if self.versions.use_stopped_btn.isEnabled()
                else "the model in use stays")
        if code == 0 and session is not None and self._stopped_by is None:
            session.invalidate_pipeline()
            self.controls.log.appendPlainText("training finished: new proposals use the new model")
        elif self._stopped_by is not None:
            text = f"training stopped by {self._stopped_by}: {kept}"
            self.controls.log.appendPlainText(text)
            self.message.emit(text)
        else:
            text = f"training failed (exit code {code}): {kept}"
            self.controls.log.appendPlainText(text)
            self.message.emit(text)

    # ------------------------------------------------------------------ export
    def export(self, out_dir, *, format: str | None = None,
               reviewed_only: bool | None = None) -> GeneratorWorker | None:
        """Export the corrected masks (gaps filled from the proposals) with the function
        ``napari-wsss export`` runs, in a worker; returns the started worker (None when
        there is no project or an export is running)."""
        session = self._session()
        if session is None or self.export_worker is not None:
            return None
        fmt = format or self.controls.export_format.currentText()
        if reviewed_only is None:
            reviewed_only = self.controls.reviewed_only.isChecked()
        self._flush()
        holder: list[GeneratorWorker] = []
        worker = thread_worker(export_job, start_thread=False, ignore_errors=True)(
            session.project, Path(out_dir), format=fmt, reviewed_only=reviewed_only,
            report=lambda p: holder[0].yielded.emit(p),
            should_stop=lambda: holder[0].abort_requested,
        )
        holder.append(worker)
        self._export_outcome = "cancelled"
        worker.yielded.connect(self._export_progress)
        worker.returned.connect(self._export_returned)
        worker.errored.connect(self._export_error)
        worker.finished.connect(self._export_done)
        self.export_worker = worker
        self.controls.set_exporting(True)
        worker.start()
        return worker

    def cancel_export(self) -> None:
        """Stop the running export before its next image."""
        if self.export_worker is not None:
            self.export_worker.quit()
            self.controls.export_progress.setFormat("stopping…")

    def _export_progress(self, p) -> None:
        done, total, text = p
        self.controls.export_progress.setRange(0, max(total, 1))
        self.controls.export_progress.setValue(done)
        self.controls.export_progress.setFormat(text)

    def _export_returned(self, r) -> None:
        if r is None:
            return
        self._export_outcome = "done"
        self.message.emit(
            f"exported {len(r.files)} masks to {r.out_dir}: {len(r.reviewed)} reviewed, "
            f"{len(r.unreviewed)} proposals only (never reviewed)"
            + (f"; {len(r.not_reviewed)} unreviewed left out" if r.not_reviewed else "")
            + (f"; {len(r.skipped)} skipped left out" if r.skipped else "")
            + (f"; {len(r.missing)} without masks" if r.missing else ""))

    def _export_error(self, exc: BaseException) -> None:
        self._export_outcome = "failed"
        log.error("export failed", exc_info=exc)
        self.message.emit(f"export failed: {exc}")

    def _export_done(self) -> None:
        self.export_worker = None
        outcome = self._export_outcome
        if outcome == "cancelled":
            self.message.emit("export stopped: the masks written so far stay, no export.json")
        self.controls.export_progress.setFormat(f"export {outcome}")
        self.controls.set_exporting(False)
        self.export_finished.emit(outcome)

    def shutdown(self) -> None:
        """Stop the trainer process and the export (the panel is closing)."""
        if self.export_worker is not None:
            self.export_worker.quit()
        self.retrainer.cancel()
