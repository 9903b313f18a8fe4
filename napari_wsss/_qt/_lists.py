"""Small helpers for the panel's Qt list widgets."""

from __future__ import annotations

__all__ = ["select_quietly"]


def select_quietly(list_widget, item) -> None:
    """Make ``item`` the current row of ``list_widget`` and scroll to it (``None``: clear the
    selection), without emitting the list's signals."""
    list_widget.blockSignals(True)
    try:
        if item is None:
            list_widget.clearSelection()
        else:
            list_widget.setCurrentItem(item)
            list_widget.scrollToItem(item)
    finally:
        list_widget.blockSignals(False)
