"""`CorrectionsEditor`: watches the corrections layer, saves strokes, applies accept/reset.

Every edit of the corrections layer (a brush / eraser / fill / polygon stroke, which
napari reports with a ``paint`` event when the pen goes up, and undo / redo, which it
reports only as a data refresh) marks the image ``corrected`` and queues a save at most
`SAVE_DELAY_MS` later. Accept and reset go through ``Labels.data_setitem`` so that they
are one undoable stroke, like a brush stroke.

Nothing painted is dropped silently:

* the brush only takes values that are classes (``1..C``), the eraser (``0``) or
  "ignore" (``255``): any other value chosen in napari's label box (typed, ``+``, ``M``)
  is set back at once and `refused` says why;
* every save reports back (`save_state`): ``saving`` -> ``saved``, or ``failed`` with
  the error; a failed image's strokes are kept (`unsaved`, also when the annotator moves
  to another image and back) and its save is retried every `RETRY_MS` until it lands.

`stroke_finished(image_id)` is THE signal that one finished edit (pen-up, fill, undo,
accept, reset) changed the corrections of ``image_id``; work that follows strokes
(e.g. a refinement from strokes) connects there.
"""

from __future__ import annotations

import logging

import numpy as np
from qtpy.QtCore import QObject, QTimer, Signal

from napari_wsss.conventions import IGNORE_LAYER, is_paintable

__all__ = ["CorrectionsEditor", "SAVE_DELAY_MS", "RETRY_MS"]

log = logging.getLogger(__name__)

SAVE_DELAY_MS = 500
"""Corrections are queued for writing at most this long after a stroke."""

RETRY_MS = 3000
"""A failed save is tried again this long after it failed."""


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
    stroke_finished(str)
        A finished edit of that image's corrections (pen-up, fill, polygon, undo / redo,
        accept, reset).
    save_state(str, str, str)
        Image id, ``"saving"`` / ``"saved"`` / ``"failed"``, and the error for ``failed``.
    refused(str)
        A brush value was refused (the message says which and why).
    """

    status_changed = Signal(str)
    stroke_finished = Signal(str)
    save_state = Signal(str, str, str)
    refused = Signal(str)
    _write_done = Signal(str, int, object)  # from the I/O thread (queued to this one)

    def __init__(self, io, parent=None):
        super().__init__(parent)
        self.io = io
        self.session = None
        self.layer = None
        self.image_id: str | None = None
        self.unsaved: dict[str, np.ndarray] = {}
        """Image id -> layer values whose save failed (kept until a save lands)."""
        self._applying: str | None = None
        self._sig: tuple[int, int] | None = None
        self._seq = 0
        self._latest: dict[str, int] = {}
        self._inflight: dict[int, np.ndarray] = {}
        self._last_valid = 1
        self._write_done.connect(self._on_write_done)
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(SAVE_DELAY_MS)
        self.timer.timeout.connect(self.save_now)
        self.retry_timer = QTimer(self)
        self.retry_timer.setSingleShot(True)
        self.retry_timer.setInterval(RETRY_MS)
        self.retry_timer.timeout.connect(self.retry)

    # ------------------------------------------------------------------ binding
    def attach(self, session, layer, image_id: str) -> None:
        """Follow ``layer`` (the corrections layer), now showing ``image_id``."""
        if layer is not self.layer:
            self.detach()
            layer.events.paint.connect(self._on_paint)
            layer.events.set_data.connect(self._on_set_data)
            layer.events.selected_label.connect(self._on_selected_label)
            self.layer = layer
        self.session = session
        self.image_id = image_id
        self._sig = self._signature()
        if is_paintable(layer.selected_label, len(session.classes)):
            self._last_valid = int(layer.selected_label)

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
            self.layer.events.selected_label.disconnect(self._on_selected_label)
        self.layer = None
        self.image_id = None

    def _signature(self) -> tuple[int, int]:
        return (len(self.layer._undo_history), len(self.layer._redo_history))

    # ------------------------------------------------------------------ brush values
    def _on_selected_label(self, event=None) -> None:
        if self.session is None:
            return
        value = int(self.layer.selected_label)
        n = len(self.session.classes)
        if is_paintable(value, n):
            self._last_valid = value
            return
        message = (f"label {value} is not a class of this project: use 1..{n} "
                   f"(one per class), 0 to erase or {IGNORE_LAYER} for ignore; "
                   f"back to {self._last_valid}")
        self.layer.selected_label = self._last_valid  # re-enters with a valid value
        self.refused.emit(message)

    def choose(self, value: int) -> bool:
        """Paint with layer value ``value`` (a class ``1..C`` or ignore); False if refused."""
        if self.layer is None:
            return False
        if not is_paintable(value, len(self.session.classes)) or value == 0:
            self.refused.emit(f"label {value} is not a class of this project")
            return False
        self.layer.selected_label = int(value)
        if self.layer.mode not in ("paint", "fill", "polygon"):
            self.layer.mode = "paint"
        return True

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
            self.stroke_finished.emit(self.image_id)
        if not self.timer.isActive():
            self.timer.start()
        self.save_state.emit(self.image_id, "pending", "")

    # ------------------------------------------------------------------ saving
    def _queue(self, image_id: str, data: np.ndarray) -> None:
        data = np.array(data, copy=True)
        self._seq += 1
        seq = self._seq
        self._latest[image_id] = seq
        self._inflight[seq] = data
        fut = self.io.save(image_id, data, copy=False)
        self.save_state.emit(image_id, "saving", "")
        fut.add_done_callback(lambda f, i=image_id, s=seq: self._write_done.emit(
            i, s, None if f.cancelled() else f.exception()))

    def _on_write_done(self, image_id: str, seq: int, exc) -> None:
        data = self._inflight.pop(seq, None)
        if seq != self._latest.get(image_id):
            return  # a newer save of this image is queued: its outcome counts
        if exc is None:
            self.unsaved.pop(image_id, None)
            self.save_state.emit(image_id, "saved", "")
            return
        self.unsaved[image_id] = data
        log.error("saving the corrections of %s failed: %s", image_id, exc)
        self.save_state.emit(image_id, "failed", str(exc))
        if not self.retry_timer.isActive():
            self.retry_timer.start()

    def retry(self) -> None:
        """Save every image whose save failed again (the current one with its newest strokes)."""
        for image_id, data in list(self.unsaved.items()):
            if image_id == self.image_id and self.layer is not None:
                data = self.layer.data
            self._queue(image_id, data)

    def save_now(self) -> None:
        """Queue a write of the current corrections (what the debounce timer calls)."""
        self.timer.stop()
        if self.image_id is not None and self.layer is not None:
            self._queue(self.image_id, self.layer.data)

    def flush(self, wait: bool = True) -> None:
        """Queue the pending save now; with ``wait``, until every queued write landed."""
        if self.timer.isActive():
            self.save_now()
        if wait:
            self.io.flush()

    def corrections_for(self, image_id: str, stored: np.ndarray) -> np.ndarray:
        """What the layer should show for ``image_id``: its unsaved strokes if a save
        failed, else ``stored``."""
        return self.unsaved.get(image_id, stored)

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
        self.stroke_finished.emit(self.image_id)

    def accept(self, stage: str, *, only_unpainted: bool, proposal: np.ndarray | None = None) -> None:
        """Copy proposal ``stage`` (or the given ``proposal`` layer values, for a proposal
        that is not stored) into the corrections; status ``accepted``."""
        new = self.session.accept(self.image_id, self.layer.data, stage, only_unpainted=only_unpainted,
                                  proposal=proposal)
        self._apply(new, "accepted")
        self.status_changed.emit(self.image_id)

    def edit(self, new: np.ndarray, status: str = "corrected") -> None:
        """Put layer values ``new`` in the corrections as one undoable edit (what a region
        tool does), save, and set the status (``"corrected"`` or ``"accepted"``)."""
        if status not in ("corrected", "accepted"):
            raise ValueError(f"edit: status must be 'corrected' or 'accepted', got {status!r}")
        self._apply(np.asarray(new, dtype=self.layer.data.dtype), status)
        (self.session.mark_accepted if status == "accepted" else self.session.mark_corrected)(self.image_id)
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
