"""The retrain box's model versions: which version is in use, a stopped run's model on
request, and how many versions the project keeps.

A training run becomes the model in use only when it ends normally (``trainer.run``); a
run stopped by the Stop button, the time budget, Ctrl-C or an error stays beside it. This
box shows both (like ``napari-wsss models list``: version, epochs, best metric) and offers
"Use stopped run's model", which pins the newest run of each such stage
(``Project.set_model_in_use``). "keep" is the project setting ``Project.keep_checkpoints``.
"""

from __future__ import annotations

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout, QWidget

from napari_wsss.store import CHECKPOINT_STAGES

__all__ = ["ModelVersions", "version_summary", "stopped_runs"]


def version_summary(project, version: str) -> str:
    """``classifier-0002 (1 epoch, best mAP 0.812)``: a version as ``models list`` shows it."""
    info = project.checkpoint_info(version)
    last = info.get("last") or {}
    epoch = last.get("epoch", info.get("epoch"))
    parts = [] if epoch is None else [f"{epoch} epoch" + ("" if epoch == 1 else "s")]
    best = info.get("best") or {}
    if "metric" in best and "value" in best:
        parts.append(f"best {best['metric']} {float(best['value']):.3f}")
    return version + (f" ({', '.join(parts)})" if parts else "")


def stopped_runs(project) -> dict[str, str]:
    """Stage -> its newest run when that run is not the model in use (a stopped run)."""
    out = {}
    for stage in CHECKPOINT_STAGES:
        versions = project.checkpoints(stage)
        if versions and project.model_in_use(stage) != versions[-1]:
            out[stage] = versions[-1]
    return out


class ModelVersions(QWidget):
    """In-use versions per stage, the stopped runs' button and the keep setting.

    Signals
    -------
    model_changed()
        The annotator chose the stopped runs' models (new proposals must load them).
    """

    model_changed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.project = None
        self.in_use = QLabel("no project")
        self.in_use.setWordWrap(True)
        self.in_use.setToolTip("The model version each stage uses (`napari-wsss models list` shows all)")
        self.use_stopped_btn = QPushButton("Use stopped run's model")
        self.use_stopped_btn.setToolTip("A stopped run (Stop, time budget, error) keeps its checkpoints but "
                                        "does not replace the model in use; this makes it the model in use")
        self.use_stopped_btn.clicked.connect(self.use_stopped)
        self.keep = QSpinBox()
        self.keep.setRange(1, 99)
        self.keep.setToolTip("Checkpoint versions kept per stage besides the one in use; older ones "
                             "are deleted at the end of each training run (project setting)")
        self.keep.valueChanged.connect(self._keep_changed)
        row = QHBoxLayout()
        row.addWidget(QLabel("keep last"))
        row.addWidget(self.keep)
        row.addWidget(QLabel("versions"))
        row.addStretch(1)
        row.addWidget(self.use_stopped_btn)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.in_use)
        lay.addLayout(row)
        self.refresh()

    def set_project(self, project) -> None:
        self.project = project
        self.refresh()

    def refresh(self) -> None:
        """Re-read the versions in use, the stopped runs and the keep setting."""
        p = self.project
        self.keep.setEnabled(p is not None and p.mode != "r")
        if p is None:
            self.in_use.setText("no project")
            self.use_stopped_btn.setEnabled(False)
            return
        self.keep.blockSignals(True)
        self.keep.setValue(p.keep_checkpoints)
        self.keep.blockSignals(False)
        stopped = stopped_runs(p)
        lines = []
        for stage in CHECKPOINT_STAGES:
            used = p.model_in_use(stage)
            if used is None:
                continue
            line = f"{stage}: {version_summary(p, used)} in use"
            if stage in stopped:
                line += f"; stopped run {version_summary(p, stopped[stage])} not used"
            lines.append(line)
        self.in_use.setText("\n".join(lines) or "no trained models yet")
        self.use_stopped_btn.setEnabled(bool(stopped) and p.mode != "r")

    def use_stopped(self) -> dict[str, str]:
        """Make each stopped run the model in use; returns stage -> version chosen."""
        chosen = stopped_runs(self.project) if self.project is not None else {}
        for stage, version in chosen.items():
            self.project.set_model_in_use(stage, version)
        self.refresh()
        if chosen:
            self.model_changed.emit()
        return chosen

    def _keep_changed(self, value: int) -> None:
        if self.project is not None:
            self.project.set_keep_checkpoints(int(value))
