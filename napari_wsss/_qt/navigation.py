"""Navigation panel: the image list with statuses, filters and previous / next buttons."""

from __future__ import annotations

from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QBrush, QColor
from qtpy.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ._lists import select_quietly

__all__ = ["NavigationPanel", "STATUS_COLORS"]

STATUS_COLORS = {
    "new": "#9e9e9e",
    "prelabelled": "#64b5f6",
    "accepted": "#81c784",
    "corrected": "#ffb74d",
    "skipped": "#e57373",
}


class NavigationPanel(QWidget):
    """Image list (``id  [status]``), status and class filters, navigation buttons.

    Signals
    -------
    image_clicked(str)
    filters_changed()
    previous_requested(), next_requested(), next_unreviewed_requested()
    """

    image_clicked = Signal(str)
    filters_changed = Signal()
    previous_requested = Signal()
    next_requested = Signal()
    next_unreviewed_requested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.status_filter = QComboBox()
        self.class_filter = QComboBox()
        self.status_filter.currentIndexChanged.connect(lambda _: self.filters_changed.emit())
        self.class_filter.currentIndexChanged.connect(lambda _: self.filters_changed.emit())
        self.list = QListWidget()
        self.list.itemClicked.connect(self._clicked)
        self.list.itemActivated.connect(self._clicked)
        self.list.setMinimumHeight(80)
        self.list.setMaximumHeight(200)
        self.counts = QLabel("")
        self.counts.setWordWrap(True)
        self.prev_btn = QPushButton("◀ prev")
        self.next_btn = QPushButton("next ▶")
        self.unreviewed_btn = QPushButton("unreviewed ▶")
        self.prev_btn.setToolTip("Previous image in the list (Alt+Left)")
        self.next_btn.setToolTip("Next image in the list (Alt+Right)")
        self.unreviewed_btn.setToolTip("Next new or prelabelled image (Alt+Down), in the order chosen beside")
        self.order_box = QComboBox()
        self.order_box.addItem("most uncertain first", "uncertainty")
        self.order_box.addItem("file order", "file")
        self.order_box.setToolTip("Which unreviewed image 'unreviewed ▶' goes to: the one whose proposal "
                                  "stages (CAM, CRF, random walk) disagree most, or the next in the list")
        self.prev_btn.clicked.connect(self.previous_requested)
        self.next_btn.clicked.connect(self.next_requested)
        self.unreviewed_btn.clicked.connect(self.next_unreviewed_requested)
        filters = QHBoxLayout()
        filters.addWidget(self.status_filter)
        filters.addWidget(self.class_filter)
        buttons = QHBoxLayout()
        buttons.addWidget(self.prev_btn)
        buttons.addWidget(self.next_btn)
        buttons.addWidget(self.unreviewed_btn)
        buttons.addWidget(self.order_box)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(filters)
        lay.addWidget(self.list)
        lay.addWidget(self.counts)
        lay.addLayout(buttons)
        self._items: dict[str, QListWidgetItem] = {}

    def set_choices(self, statuses, classes: list[str], *, background: int | None) -> None:
        """Fill the filter menus (first entry = no filter)."""
        for box in (self.status_filter, self.class_filter):
            box.blockSignals(True)
            box.clear()
        self.status_filter.addItem("all statuses", None)
        for s in statuses:
            self.status_filter.addItem(s, s)
        self.class_filter.addItem("all classes", None)
        for c, name in enumerate(classes):
            if c != background:
                self.class_filter.addItem(name, c)
        for box in (self.status_filter, self.class_filter):
            box.blockSignals(False)

    def order(self) -> str:
        """Order of "next unreviewed": ``"uncertainty"`` or ``"file"``."""
        return self.order_box.currentData()

    def filters(self) -> tuple[str | None, int | None]:
        """(status or None, class index or None)."""
        return self.status_filter.currentData(), self.class_filter.currentData()

    def set_images(self, ids: list[str], status: dict[str, str] | None = None, *, current=None) -> None:
        """Replace the list with ``ids`` (statuses from ``status``)."""
        self.list.blockSignals(True)
        self.list.clear()
        self._items = {}
        for i in ids:
            item = QListWidgetItem()
            item.setData(Qt.ItemDataRole.UserRole, i)
            self._items[i] = item
            self.list.addItem(item)
            self.set_status(i, (status or {}).get(i, "new"))
        self.list.blockSignals(False)
        self.select(current)

    def set_status(self, image_id: str, status: str, *, unsaved: bool = False) -> None:
        """Update one row (cheap: called on every status change); ``unsaved`` marks an
        image whose last save failed."""
        item = self._items.get(image_id)
        if item is None:
            return
        item.setText(f"{image_id}   [{status}" + (", NOT SAVED]" if unsaved else "]"))
        color = "#ef5350" if unsaved else STATUS_COLORS.get(status, "#ffffff")
        item.setForeground(QBrush(QColor(color)))

    def select(self, image_id: str | None) -> None:
        """Highlight ``image_id`` without emitting ``image_clicked``."""
        select_quietly(self.list, self._items.get(image_id) if image_id is not None else None)

    def set_counts(self, counts: dict[str, int]) -> None:
        self.counts.setText(" · ".join(f"{k} {v}" for k, v in counts.items()))

    def _clicked(self, item: QListWidgetItem) -> None:
        self.image_clicked.emit(item.data(Qt.ItemDataRole.UserRole))
