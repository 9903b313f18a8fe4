"""`CorrectionsEditor`: watches the corrections layer, saves strokes, applies accept/reset.

Every edit of the corrections layer (a brush / eraser / fill / polygon stroke, which
napari reports with a ``paint`` event, and undo / redo, which it reports only as a data
refresh) marks the image ``corrected`` and queues a save at most `SAVE_DELAY_MS` later.
Accept and reset go through ``Labels.data_setitem`` so that they are one undoable
stroke, like a brush stroke.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QObject, QTimer, Signal

from napari_wsss.conventions import IGNORE_LAYER

__all__ = ["CorrectionsEditor", "SAVE_DELAY_MS"]

SAVE_DELAY_MS = 500
"""Corrections are queued for writing at most this long after a stroke."""


class CorrectionsEditor(QObject):
    """Edits and saving of the current image's corrections.

    Parameters
    ----------
    io : BackgroundIO
        Where saves are queued.

    Signals
    -------
    status_changed(str)
        The image whose status the editor changed.
    """

    status_changed = Signal(str)

    def __init__(self, io, parent=None):
        super().__init__(parent)
        self.io = io
        self.session = None
        self.layer = None
        self.image_id: str | None = None
        self._applying: str | None = None
        self._sig: tuple[int, int] | None = None
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(SAVE_DELAY_MS)
        self.timer.timeout.connect(self.save_now)

    # ------------------------------------------------------------------ binding
    def attach(self, session, layer, image_id: str) -> None:
        """Follow ``layer`` (the corrections layer), now showing ``image_id``."""
        if layer is not self.layer:
            self.detach()
            layer.events.paint.connect(self._on_paint)
            layer.events.set_data.connect(self._on_set_data)
            self.layer = layer
        self.session = session
        self.image_id = image_id
        self._sig = self._signature()

    def pause(self) -> None:
        """Queue the pending save and stop following edits until the next `attach`
        (the layer is about to receive another image: that is no edit of this one)."""
        self.flush(wait=False)
        self.image_id = None

    def detach(self) -> None:
        """Disconnect from the layer (after saving what is pending)."""
        self.flush(wait=False)
        if self.layer is not None:
            self.layer.events.paint.disconnect(self._on_paint)
            self.layer.events.set_data.disconnect(self._on_set_data)
        self.layer = None
        self.image_id = None

    def _signature(self) -> tuple[int, int]:
        return (len(self.layer._undo_history), len(self.layer._redo_history))

    # ------------------------------------------------------------------ events
    def _on_paint(self, event=None) -> None:
        self._sig = self._signature()
        self._edited()

    def _on_set_data(self, event=None) -> None:
        # Undo / redo change the data without a paint event: spot them by the history.
        sig = self._signature()
        if sig != self._sig:
            self._sig = sig
            self._edited()

    def _edited(self) -> None:
        if self.image_id is None:
            return
        if self._applying is None:
            self.session.mark_corrected(self.image_id)
            self.status_changed.emit(self.image_id)
        if not self.timer.isActive():
            self.timer.start()

    # ------------------------------------------------------------------ saving
    def save_now(self) -> None:
        """Queue a write of the current corrections (what the debounce timer calls)."""
        self.timer.stop()
        if self.image_id is not None and self.layer is not None:
            self.io.save(self.image_id, self.layer.data)

    def flush(self, wait: bool = True) -> None:
        """Queue the pending save now; with ``wait``, until every queued write landed."""
        if self.timer.isActive():
            self.save_now()
        if wait:
            self.io.flush()

    # ------------------------------------------------------------------ actions
    def _apply(self, new: np.ndarray, what: str) -> None:
        """Put new layer values in the corrections as one undoable edit, and save."""
        changed = np.nonzero(self.layer.data != new)
        self._applying = what
        try:
            if changed[0].size:
                self.layer.data_setitem(changed, new[changed])
        finally:
            self._applying = None
        self.save_now()

    def accept(self, stage: str, *, only_unpainted: bool) -> None:
        """Copy proposal ``stage`` into the corrections; status ``accepted``."""
        new = self.session.accept(self.image_id, self.layer.data, stage, only_unpainted=only_unpainted)
        self._apply(new, "accepted")
        self.status_changed.emit(self.image_id)

    def reset(self) -> None:
        """Clear the corrections (undoable); status back to prelabelled / new."""
        self._apply(np.zeros_like(self.layer.data), "reset")
        self.session.reset(self.image_id)
        self.status_changed.emit(self.image_id)

    def use_ignore_brush(self) -> None:
        """Paint mode with the "ignore" value (saved as 254: void in exports, ignored in training)."""
        self.layer.selected_label = IGNORE_LAYER
        self.layer.mode = "paint"

    def undo(self) -> None:
        self.layer.undo()

    def redo(self) -> None:
        self.layer.redo()
