"""Project panel: open / create a project (its classes are in `classes.ClassPicker`).

Thin: it asks for paths and emits them; the annotation widget does the work.
"""

from __future__ import annotations


from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QDialog,
    QCheckBox,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

__all__ = ["ProjectPanel", "NewProjectDialog"]


class _PathRow(QWidget):
    def __init__(self, *, directory: bool, save: bool = False, filter: str = "", parent=None):
        super().__init__(parent)
        self.edit = QLineEdit()
        btn = QPushButton("…")
        btn.setFixedWidth(28)
        btn.clicked.connect(self._browse)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.edit)
        lay.addWidget(btn)
        self._dir, self._save, self._filter = directory, save, filter

    def _browse(self) -> None:
        if self._dir:
            path = QFileDialog.getExistingDirectory(self, "Choose a folder")
        elif self._save:
            path, _ = QFileDialog.getSaveFileName(self, "New project", filter=self._filter)
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Choose a file", filter=self._filter)
        if path:
            self.edit.setText(path)

    def path(self) -> str:
        return self.edit.text().strip()


class NewProjectDialog(QDialog):
    """Asks for an image folder, a labels CSV and where to create the ``.zarr``."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("New WSSS project")
        self.folder = _PathRow(directory=True)
        self.csv = _PathRow(directory=False, filter="CSV (*.csv)")
        self.out = _PathRow(directory=False, save=True, filter="Project (*.zarr)")
        self.background = QCheckBox("add a background class")
        self.background_class = QLineEdit()
        self.background_class.setPlaceholderText("e.g. null (as `ingest --background-class`)")
        self.background_class.setToolTip("The labels table's column (or the sub-folder) that is the "
                                         "background; it becomes class 0 'background'. Implies a "
                                         "background class")
        self.background_class.textChanged.connect(
            lambda t: t.strip() and self.background.setChecked(True))
        form = QFormLayout(self)
        form.addRow("Images folder", self.folder)
        form.addRow("Labels CSV (optional)", self.csv)
        form.addRow("Project (.zarr)", self.out)
        form.addRow(self.background)
        form.addRow("Background class in the labels", self.background_class)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def values(self) -> tuple[str, str, str, bool | str]:
        """Images folder, labels CSV ("" for folder-per-class), project path, background
        (the background class's name in the labels when given, else whether to add one)."""
        name = self.background_class.text().strip()
        return self.folder.path(), self.csv.path(), self.out.path(), name or self.background.isChecked()


class ProjectPanel(QWidget):
    """Open / new project buttons and the project path.

    Signals
    -------
    open_requested(str)
        A project path to open.
    create_requested(str, str, str, object)
        Images folder, labels CSV ("" = one sub-folder per class), project path, background
        (bool, or the name of the labels' background class).
    """

    open_requested = Signal(str)
    create_requested = Signal(str, str, str, object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.open_btn = QPushButton("Open project…")
        self.new_btn = QPushButton("New from folder…")
        self.open_btn.clicked.connect(self._ask_open)
        self.new_btn.clicked.connect(self._ask_new)
        self.path_label = QLabel("no project")
        self.path_label.setWordWrap(True)
        # a long path (no spaces to wrap at) is cut instead of widening the panel
        self.path_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        row = QHBoxLayout()
        row.addWidget(self.open_btn)
        row.addWidget(self.new_btn)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(row)
        lay.addWidget(self.path_label)

    def _ask_open(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a WSSS project (.zarr folder)")
        if path:
            self.open_requested.emit(path)

    def _ask_new(self) -> None:
        dlg = NewProjectDialog(self)
        if dlg.exec():
            self.create_requested.emit(*dlg.values())

    def set_project(self, path) -> None:
        """Show a project's path."""
        self.path_label.setText(str(path))
        self.path_label.setToolTip(str(path))
