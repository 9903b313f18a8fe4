"""Control panels: proposal settings, review actions, retraining and export.

Each panel only holds widgets and emits signals; `AnnotationWidget` connects them to
the session, the layers and the workers.
"""

from __future__ import annotations

from qtpy.QtCore import QEvent, QSize, Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
)

from napari_wsss.conventions import CAM_THRESHOLD, TRAINING_STAGES
from napari_wsss.export import EXPORT_FORMATS

__all__ = ["ProposalControls", "ReviewControls", "ModelControls", "PanelScrollArea",
           "cam_method_names"]


def cam_method_names() -> list[str]:
    """The CAM methods ``napari_wsss.cams`` implements, in its order."""
    from napari_wsss.cams import METHODS

    return list(METHODS)


class PanelScrollArea(QScrollArea):
    """Scrolls its content vertically only, and always asks for the width the content
    needs (also after it changed, e.g. a longer status text), so nothing is clipped."""

    def __init__(self, inner, parent=None):
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setWidget(inner)  # installs this area as the event filter of ``inner``

    def minimumSizeHint(self) -> QSize:
        inner = self.widget().minimumSizeHint().width()
        extra = self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth()
        return QSize(inner + extra, super().minimumSizeHint().height())

    def sizeHint(self) -> QSize:
        hint = super().sizeHint()
        return QSize(max(hint.width(), self.minimumSizeHint().width()), hint.height())

    def eventFilter(self, obj, event) -> bool:
        if obj is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()  # the content's needs changed: tell the dock
        return super().eventFilter(obj, event)


def _spin(lo, hi, value, step, decimals=None):
    box = QDoubleSpinBox() if decimals is not None else QSpinBox()
    box.setRange(lo, hi)
    box.setSingleStep(step)
    if decimals is not None:
        box.setDecimals(decimals)
    box.setValue(value)
    return box


class ProposalControls(QGroupBox):
    """CAM method, refinement stages and parameters, recompute / cancel, progress.

    Signals
    -------
    recompute_requested(), cancel_requested()
    """

    recompute_requested = Signal()
    cancel_requested = Signal()

    def __init__(self, parent=None):
        super().__init__("Proposals", parent)
        self.method = QComboBox()
        self.method.addItems(cam_method_names())
        self.method.addItem("explainer")  # the trained Explainer's masks as class maps
        self.method.setItemData(self.method.count() - 1, "masks of the trained Explainer "
                                "(Stalder et al. 2022) instead of CAMs", Qt.ItemDataRole.ToolTipRole)
        self.use_crf = QCheckBox("CRF")
        self.use_rw = QCheckBox("RW")
        self.use_seg = QCheckBox("segmenter")
        self.use_seg.setToolTip("trained segmenter (used when the project has one)")
        self.use_explainer = QCheckBox("explainer")
        self.use_explainer.setToolTip("trained Explainer's class masks (used when the project has one)")
        self.tta = QCheckBox("multi-scale + flip")
        self.tta.setToolTip("test-time augmentation of the CAMs (slower, smoother)")
        self.use_crf.setToolTip("dense CRF (Kraehenbuehl & Koltun 2011)")
        self.use_rw.setToolTip("random walk (AffinityNet, Ahn & Kwak 2018; colour affinity "
                               "until an affinity model is trained)")
        # its lowest value reads "auto": the project's calibration (napari_wsss.calibrate)
        self.threshold = _spin(-0.05, 1.0, CAM_THRESHOLD, 0.05, decimals=2)
        self.threshold.setSpecialValueText("auto")
        self.threshold.setToolTip("Background threshold of the CAMs; 'auto': the project's "
                                  "calibration (see below)")
        self.calibration = QLabel("")  # the threshold in effect and where it came from
        self.calibration.setWordWrap(True)
        self.crf_iter = _spin(1, 50, 10, 1)
        self.rw_beta = _spin(1.0, 100.0, 8.0, 1.0, decimals=1)
        self.rw_t = _spin(1, 1024, 64, 1)
        self.recompute_btn = QPushButton("Compute proposals")
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.recompute_btn.clicked.connect(self.recompute_requested)
        self.cancel_btn.clicked.connect(self.cancel_requested)
        self.progress = QProgressBar()
        self.progress.setRange(0, 3)
        self.progress.setValue(0)
        self.progress.setFormat("idle")
        stages = QHBoxLayout()
        stages.addWidget(self.use_crf)
        stages.addWidget(self.use_rw)
        stages.addWidget(self.use_seg)
        stages.addWidget(self.use_explainer)
        buttons = QHBoxLayout()
        buttons.addWidget(self.recompute_btn)
        buttons.addWidget(self.cancel_btn)
        form = QFormLayout(self)
        form.addRow("CAM method", self.method)
        form.addRow("", self.tta)
        form.addRow("refine", stages)
        form.addRow("bg threshold", self.threshold)
        form.addRow(self.calibration)
        form.addRow("CRF iterations", self.crf_iter)
        form.addRow("RW beta", self.rw_beta)
        form.addRow("RW t", self.rw_t)
        form.addRow(buttons)
        form.addRow(self.progress)

    def settings(self) -> dict:
        """The chosen settings as plain values (see `AnnotationSession.config_from`)."""
        boxes = (("crf", self.use_crf), ("rw", self.use_rw), ("segmenter", self.use_seg),
                 ("explainer", self.use_explainer))
        refine = tuple(s for s, box in boxes if box.isChecked())
        return dict(
            method=self.method.currentText(), refine=refine, tta=self.tta.isChecked(),
            cam_threshold=self.threshold_setting(),
            crf_iter=self.crf_iter.value(), rw_beta=self.rw_beta.value(), rw_t=self.rw_t.value(),
        )

    def set_from_config(self, config) -> None:
        """Show a ``PipelineConfig``'s values."""
        self.method.setCurrentText(config.method)
        self.use_crf.setChecked("crf" in config.refine)
        self.use_rw.setChecked("rw" in config.refine)
        self.use_seg.setChecked("segmenter" in config.refine)
        self.use_explainer.setChecked("explainer" in config.refine)
        self.tta.setChecked(len(config.scales) > 1 or config.flip)
        if config.cam_threshold == "auto":
            self.threshold.setValue(self.threshold.minimum())
        elif not isinstance(config.cam_threshold, str):  # a rule name: the spin box keeps its value
            self.threshold.setValue(config.cam_threshold)
        self.crf_iter.setValue(int(config.crf.get("n_iter", 10)))
        self.rw_beta.setValue(float(config.rw.get("beta", 8.0)))
        self.rw_t.setValue(int(config.rw.get("t", 64)))

    def threshold_setting(self) -> float | str:
        """The threshold box's value, ``"auto"`` at its lowest entry."""
        value = self.threshold.value()
        return "auto" if value <= self.threshold.minimum() else value

    def set_busy(self, busy: bool) -> None:
        self.recompute_btn.setEnabled(not busy)
        self.cancel_btn.setEnabled(busy)
        if not busy:
            self.progress.setValue(0)

    def show_progress(self, step: int, total: int, text: str) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(step)
        self.progress.setFormat(text)


REVIEW_TIPS = {
    "accept": "Copy the chosen proposal into the corrections (where you have not painted, with "
              "'keep my strokes'); status accepted: exported as reviewed. One undoable edit. (Alt+A)",
    "reset": "Clear the corrections (undoable); status back to prelabelled (or new): the image is "
             "unreviewed again and also no longer skipped.",
    "skip": "Go to the next unreviewed image (Alt+S). An unreviewed image is marked skipped: left out "
            "of exports and training. An accepted or corrected image keeps its status and mask.",
    "ignore": "Brush that paints 'ignore' (value 255): void in exports, not trained on; painting "
              "makes the image corrected. (Alt+I)",
}
"""Tooltips of the review actions (the state machine of docs/review.md)."""


class ReviewControls(QGroupBox):
    """Accept / reset / skip, the ignore brush and undo / redo.

    Signals
    -------
    accept_requested(str, bool)
        Proposal stage and "only where not painted".
    reset_requested(), skip_requested(), ignore_requested(), undo_requested(), redo_requested()
    """

    accept_requested = Signal(str, bool)
    reset_requested = Signal()
    skip_requested = Signal()
    ignore_requested = Signal()
    undo_requested = Signal()
    redo_requested = Signal()

    def __init__(self, parent=None):
        super().__init__("Review", parent)
        self.stage = QComboBox()
        self.only_unpainted = QCheckBox("keep my strokes")
        self.only_unpainted.setToolTip("Accept the proposal only where you have not painted")
        self.only_unpainted.setChecked(True)
        self.stage.setToolTip("The proposal shown, and the one Accept copies")
        self.accept_btn = QPushButton("Accept")
        self.accept_btn.setToolTip(REVIEW_TIPS["accept"])
        self.reset_btn = QPushButton("Reset")
        self.reset_btn.setToolTip(REVIEW_TIPS["reset"])
        self.skip_btn = QPushButton("Skip")
        self.skip_btn.setToolTip(REVIEW_TIPS["skip"])
        self.ignore_btn = QPushButton("Ignore")
        self.ignore_btn.setToolTip(REVIEW_TIPS["ignore"])
        self.undo_btn = QPushButton("Undo")
        self.redo_btn = QPushButton("Redo")
        self.accept_btn.clicked.connect(
            lambda: self.accept_requested.emit(self.stage.currentData() or "", self.only_unpainted.isChecked())
        )
        self.reset_btn.clicked.connect(self.reset_requested)
        self.skip_btn.clicked.connect(self.skip_requested)
        self.ignore_btn.clicked.connect(self.ignore_requested)
        self.undo_btn.clicked.connect(self.undo_requested)
        self.redo_btn.clicked.connect(self.redo_requested)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        # a long image id wraps / is cut instead of widening the whole panel
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        row1 = QHBoxLayout()
        row1.addWidget(self.stage)
        row1.addWidget(self.only_unpainted)
        row2 = QHBoxLayout()
        for b in (self.accept_btn, self.reset_btn, self.skip_btn):
            row2.addWidget(b)
        row3 = QHBoxLayout()
        for b in (self.ignore_btn, self.undo_btn, self.redo_btn):
            row3.addWidget(b)
        lay = QVBoxLayout(self)
        lay.addLayout(row1)
        lay.addLayout(row2)
        lay.addLayout(row3)
        lay.addWidget(self.status)

    def set_state(self, text: str, *, error: bool = False) -> None:
        """The status line: image, review status, saved or not."""
        self.status.setText(text)
        self.status.setStyleSheet("color: #ef5350; font-weight: bold" if error else "")

    def set_stages(self, stages: list[str], titles: dict[str, str], *, current: str | None = None) -> None:
        """Proposal stages available for the current image (``current``, else the one chosen
        before, else the last)."""
        current = current if current is not None else self.stage.currentData()
        self.stage.blockSignals(True)
        self.stage.clear()
        for s in stages:
            self.stage.addItem(titles.get(s, s), s)
        idx = self.stage.findData(current) if current in stages else len(stages) - 1
        self.stage.setCurrentIndex(max(idx, 0))
        self.stage.blockSignals(False)
        self.accept_btn.setEnabled(bool(stages))


class ModelControls(QGroupBox):
    """Retrain (separate process, JSON-lines progress) and export.

    Signals
    -------
    retrain_requested(str)
        The model stage to retrain.
    cancel_retrain_requested(), export_requested(), cancel_export_requested()
    """

    retrain_requested = Signal(str)
    cancel_retrain_requested = Signal()
    export_requested = Signal()
    cancel_export_requested = Signal()

    def __init__(self, parent=None):
        super().__init__("Model", parent)
        self.stage = QComboBox()
        self.stage.addItems([*TRAINING_STAGES, "all"])
        self.stage.setToolTip("Model stage to train ('all': classifier, explainer, affinity, segmenter)")
        self.epochs = _spin(0, 1000, 0, 1)
        self.epochs.setSpecialValueText("default")
        self.epochs.setToolTip("Epochs of each trained stage (default: the project's training config)")
        self.minutes = _spin(0, 24 * 60, 0, 5)
        self.minutes.setSpecialValueText("no limit")
        self.minutes.setSuffix(" min")
        self.minutes.setToolTip("Time budget: the run is stopped after this long. A stopped run's "
                                "checkpoints are kept but new proposals keep the model they used")
        self.retrain_btn = QPushButton("Retrain")
        self.cancel_btn = QPushButton("Stop")
        self.cancel_btn.setEnabled(False)
        self.export_btn = QPushButton("Export masks…")
        self.export_format = QComboBox()
        self.export_format.addItems(list(EXPORT_FORMATS))
        self.export_format.setToolTip(" / ".join(f.description for f in EXPORT_FORMATS.values()))
        self.reviewed_only = QCheckBox("reviewed only")
        self.reviewed_only.setToolTip("Export only accepted or corrected images (else unreviewed "
                                      "images are exported from their proposals, and counted apart)")
        self.export_cancel_btn = QPushButton("Stop export")
        self.export_cancel_btn.setEnabled(False)
        self.export_cancel_btn.clicked.connect(self.cancel_export_requested)
        self.export_progress = QProgressBar()
        self.export_progress.setFormat("no export running")
        self.export_progress.setValue(0)
        self.retrain_btn.clicked.connect(lambda: self.retrain_requested.emit(self.stage.currentText()))
        self.cancel_btn.clicked.connect(self.cancel_retrain_requested)
        self.export_btn.clicked.connect(self.export_requested)
        self.progress = QProgressBar()
        self.progress.setFormat("not training")
        self.progress.setValue(0)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(500)
        self.log.setMaximumHeight(90)
        row = QHBoxLayout()
        row.addWidget(self.stage)
        row.addWidget(self.retrain_btn)
        row.addWidget(self.cancel_btn)
        budget = QHBoxLayout()
        budget.addWidget(QLabel("epochs"))
        budget.addWidget(self.epochs)
        budget.addWidget(QLabel("budget"))
        budget.addWidget(self.minutes)
        lay = QVBoxLayout(self)
        lay.addLayout(row)
        lay.addLayout(budget)
        lay.addWidget(self.progress)
        lay.addWidget(self.log)
        row2 = QHBoxLayout()
        row2.addWidget(self.export_format)
        row2.addWidget(self.reviewed_only)
        row2.addWidget(self.export_btn)
        row2.addWidget(self.export_cancel_btn)
        lay.addLayout(row2)
        lay.addWidget(self.export_progress)

    def train_options(self) -> list[str]:
        """Trainer options the controls ask for (``--epochs N`` unless "default")."""
        return ["--epochs", str(self.epochs.value())] if self.epochs.value() > 0 else []

    def set_running(self, running: bool) -> None:
        self.retrain_btn.setEnabled(not running)
        self.cancel_btn.setEnabled(running)

    def set_exporting(self, running: bool) -> None:
        self.export_btn.setEnabled(not running)
        self.export_cancel_btn.setEnabled(running)

    def show_progress(self, p: dict, text: str) -> None:
        steps, step = p.get("steps"), p.get("step")
        if isinstance(steps, int) and steps > 0 and isinstance(step, int):
            self.progress.setRange(0, steps)
            self.progress.setValue(min(step, steps))
        self.progress.setFormat(text)
