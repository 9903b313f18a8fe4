"""Class picker: the project's classes by name and colour; choosing one sets the brush.

Rows show the *layer value* napari shows for a class (its label box, the hover text),
so that the panel, the label box and the hover text always name the same class for the
same colour: value ``v`` is class ``v - 1`` (`_labels.value_of_class`), ``255`` is the
"ignore" brush. The first ten classes also have keys ``1`` .. ``9``, ``0``.
"""

from __future__ import annotations

from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
)

from napari_wsss.colors import class_color
from napari_wsss.conventions import IGNORE, IGNORE_LAYER, value_of_class

from ._lists import select_quietly

__all__ = ["ClassPicker", "CLASS_KEYS", "class_key", "color_icon", "HEATMAP_PICKED"]

CLASS_KEYS = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "0")
"""Keys choosing the first ten classes (key ``k`` -> the ``k``-th class, ``0`` -> the tenth)."""

HEATMAP_PICKED = "picked"
"""Heatmap mode: the heatmap of the class chosen in the picker."""


def class_key(c: int) -> str | None:
    """The key that chooses class ``c``, or None (``c >= 10``)."""
    return CLASS_KEYS[c] if 0 <= c < len(CLASS_KEYS) else None


def color_icon(rgba, size: int = 14) -> QIcon:
    """A square icon filled with an RGBA colour given as floats in ``[0, 1]``."""
    pix = QPixmap(size, size)
    pix.fill(QColor.fromRgbF(*rgba))
    return QIcon(pix)


class ClassPicker(QGroupBox):
    """The class list (click = paint with that class) and the heatmap choice.

    Signals
    -------
    value_chosen(int)
        Layer value to paint with (``c + 1`` for class ``c``, `IGNORE_LAYER` for ignore).
    heatmap_mode_changed(str)
        ``"picked"``, ``"all"`` or ``"off"``.
    """

    value_chosen = Signal(int)
    heatmap_mode_changed = Signal(str)

    def __init__(self, parent=None):
        super().__init__("Classes", parent)
        self.list = QListWidget()
        self.list.setMaximumHeight(190)
        self.list.setToolTip("Click a class (or press its key 1-9, 0) to paint with it. The number "
                             "is the value napari's label box and hover text show.")
        self.list.itemClicked.connect(self._clicked)
        self.list.itemActivated.connect(self._clicked)
        self.heatmap = QComboBox()
        self.heatmap.addItem("class picked above", HEATMAP_PICKED)
        self.heatmap.addItem("all classes (strongest per pixel)", "all")
        self.heatmap.addItem("off", "off")
        self.heatmap.setToolTip("Which CAM heatmap to show (Alt+H cycles)")
        self.heatmap.currentIndexChanged.connect(
            lambda _: self.heatmap_mode_changed.emit(self.heatmap.currentData()))
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #ffb74d")
        form = QFormLayout()
        form.addRow("heatmap", self.heatmap)
        lay = QVBoxLayout(self)
        lay.addWidget(self.list)
        lay.addLayout(form)
        lay.addWidget(self.note)
        self._rows: dict[int, QListWidgetItem] = {}

    def set_classes(self, classes: list[str], *, background: int | None) -> None:
        """One row per class (``value  name  [key]``), then the ignore brush."""
        self.list.blockSignals(True)
        self.list.clear()
        self._rows = {}
        for c, name in enumerate(classes):
            key = class_key(c)
            text = f"{value_of_class(c)}  {name}" + (f"   [{key}]" if key else "")
            if c == background:
                text += "   (background)"
            self._add(value_of_class(c), text, class_color(c, background=background))
        self._add(IGNORE_LAYER, f"{IGNORE_LAYER}  ignore   [Alt+I]", class_color(IGNORE))
        self.list.blockSignals(False)

    def _add(self, value: int, text: str, rgba) -> None:
        item = QListWidgetItem(color_icon(rgba), text)
        item.setData(Qt.ItemDataRole.UserRole, value)
        self._rows[value] = item
        self.list.addItem(item)

    def mark_needs_strokes(self, reasons: dict[int, str]) -> None:
        """Tag the rows of classes whose image labels cannot localise them (class index ->
        why, from `napari_wsss.informativeness.label_report`): "needs strokes" and a tooltip."""
        for c, why in reasons.items():
            item = self._rows.get(value_of_class(c))
            if item is None:
                continue
            item.setText(item.text() + "   needs strokes")
            item.setToolTip(f"Needs strokes: {why}, so its image labels cannot say where it is; "
                            "paint a few strokes of it")
            item.setForeground(QColor("#ffb74d"))

    def row_text(self, value: int) -> str | None:
        item = self._rows.get(value)
        return None if item is None else item.text()

    def set_value(self, value: int) -> None:
        """Highlight the row of layer value ``value`` (no signal; none for the eraser)."""
        select_quietly(self.list, self._rows.get(int(value)))

    def heatmap_mode(self) -> str:
        return self.heatmap.currentData()

    def cycle_heatmap(self) -> str:
        """Next heatmap mode (picked -> all -> off -> picked); returns it."""
        self.heatmap.setCurrentIndex((self.heatmap.currentIndex() + 1) % self.heatmap.count())
        return self.heatmap_mode()

    def _clicked(self, item: QListWidgetItem) -> None:
        self.value_chosen.emit(int(item.data(Qt.ItemDataRole.UserRole)))
