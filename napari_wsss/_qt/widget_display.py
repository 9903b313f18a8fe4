"""Class choice, class keys and display toggles (heatmap, contours, opacity, shown stage)
of `AnnotationWidget`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_wsss.conventions import class_of_value, is_paintable, value_of_class

from .classes import CLASS_KEYS, HEATMAP_PICKED
from .layers import HEATMAP_ALL, HEATMAP_OFF, STAGE_TITLES

if TYPE_CHECKING:
    import numpy as np

__all__ = ["DisplayActions"]


class DisplayActions:
    """`AnnotationWidget` methods for the class picked and what the layers show (a mixin:
    it uses the widget's session, layers, picker, review box, editor and viewer)."""

    def _hook_corrections(self) -> None:
        """The corrections layer exists now: the class keys and the label box -> panel link."""
        layer = self.layers.corrections
        for k, key in enumerate(CLASS_KEYS):
            layer.bind_key(key, lambda _l, k=k: self.choose_class(k), overwrite=True)
        layer.events.selected_label.connect(self._label_changed)
        self._label_changed()

    def _label_changed(self, event=None) -> None:
        layer = self.layers.corrections if self.layers is not None else None
        if layer is None or not is_paintable(layer.selected_label, len(self.session.classes)):
            return  # the editor sets it back and says why
        self.picker.set_value(layer.selected_label)
        self._update_heatmap()

    def choose_class(self, c: int) -> bool:
        """Paint with class ``c`` (the keys 1-9, 0 call this with ``c`` = 0..9)."""
        if self.session is None or not 0 <= c < len(self.session.classes):
            if self.session is not None:
                self.notify(f"no class {c + 1}: this project has {len(self.session.classes)} classes")
            return False
        return self.choose_value(value_of_class(c))

    def choose_value(self, value: int) -> bool:
        """Paint with layer value ``value`` (what the class picker emits)."""
        if self.layers is None or self.layers.corrections is None:
            return False
        ok = self.editor.choose(value)
        if ok:
            self.viewer.layers.selection.active = self.layers.corrections
        return ok

    def _update_heatmap(self) -> None:
        if self.layers is None or self.layers.corrections is None:
            return
        mode = self.picker.heatmap_mode()
        if mode == HEATMAP_PICKED:
            v = int(self.layers.corrections.selected_label)
            c = class_of_value(v)
            if c >= len(self.session.classes):  # ignore / eraser: keep the last class shown
                return
            self.layers.set_heatmap(c)
        else:
            self.layers.set_heatmap(HEATMAP_ALL if mode == "all" else HEATMAP_OFF)

    def cycle_heatmap(self) -> None:
        """Heatmap: picked class -> all classes -> off (Alt+H)."""
        self.picker.cycle_heatmap()

    def toggle_contour(self) -> None:
        """Proposal filled <-> contours (Alt+C)."""
        if self.layers is not None:
            contour = self.layers.toggle_contour()
            self.viewer.status = f"proposal drawn as {'contours' if contour else 'filled regions'}"

    def cycle_opacity(self) -> None:
        """Next proposal opacity (Alt+O)."""
        if self.layers is not None:
            self.viewer.status = f"proposal opacity {self.layers.cycle_opacity():.2f}"

    def _stage_chosen(self, _index=None) -> None:
        if self.layers is not None:
            self.layers.set_stage(self.review.stage.currentData())

    def show_computed_stage(self, image_id: str, stage: str, data: np.ndarray | None, *,
                            choose: bool = False) -> None:
        """Show a proposal computed in the panel (layer values, e.g. the strokes' propagated
        one) as proposal ``stage`` of ``image_id`` if it is the current image: in the
        proposal layer when chosen, and in the Review box's stage list, where Accept takes
        it. ``choose`` makes it the chosen stage; ``None`` removes it."""
        if self.layers is None or image_id != self.current:
            return
        known = stage in self.layers.stages()
        if choose and data is not None:
            self.layers.stage = stage
        self.layers.set_computed_stage(stage, data)
        if choose or known != (data is not None):
            self.review.set_stages(self.layers.stages(), STAGE_TITLES, current=self.layers.stage)
