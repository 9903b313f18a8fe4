"""The napari layers of the current image, reused across image switches.

One `LayerSet` owns: the image; one heatmap per image label (an Image layer with a
black-to-class-colour colormap, additive blending); one read-only Labels layer per
proposal stage; and the editable corrections layer. Switching images updates ``.data``
of existing layers instead of removing and adding them (much faster); only the
heatmaps of classes the new image does not have are removed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from napari.layers import Image, Labels
from napari.utils.colormaps import Colormap, DirectLabelColormap
from qtpy.QtCore import QTimer

from napari_wsss.colors import class_color, labels_layer_colors
from napari_wsss.conventions import STAGES

from .session import MASK_STAGES, ImageView

if TYPE_CHECKING:
    import napari

__all__ = ["LayerSet", "labels_colormap", "heatmap_colormap"]

THUMBNAIL_DELAY_MS = 300
"""Layer-list thumbnails follow an image switch this much later (rapid switching
through images does not pay for thumbnails nobody sees)."""

STAGE_TITLES = {name: stage.title for name, stage in STAGES.items()}


def labels_colormap(n_classes: int, *, background: int | None) -> DirectLabelColormap:
    """Layer value ``c + 1`` -> class colour; ``0`` transparent; ignore in VOC cream."""
    return DirectLabelColormap(color_dict=labels_layer_colors(n_classes, background=background))


def heatmap_colormap(c: int, name: str, *, background: int | None) -> Colormap:
    """Black -> colour of class ``c`` (additive blending adds it onto the image)."""
    r, g, b, _ = class_color(c, background=background)
    return Colormap([[0, 0, 0, 1], [r, g, b, 1]], name=f"wsss:{c}:{name}", display_name=name)


def _cam_transform(pixel) -> tuple[tuple[float, float], tuple[float, float]]:
    """Scale and translate of a CAM layer whose pixels are ``pixel`` image pixels large.

    CAM pixel ``i`` covers image pixels ``[i s, (i + 1) s)``, so its centre is at
    ``(i + 0.5) s - 0.5`` in napari's pixel-centre coordinates.
    """
    s = tuple(float(p) for p in pixel)
    t = tuple(0.5 * si - 0.5 for si in s)
    return s, t


class LayerSet:
    """Creates, updates and removes the annotation layers in a viewer.

    Heatmaps live in *slots*: slot ``k`` shows the ``k``-th label of the current image
    and is renamed / recoloured on a switch, so that switching between images with
    different labels does not add or remove layers (adding a layer costs far more
    than updating one).

    Parameters
    ----------
    viewer : napari.Viewer
    classes : list of str
    background : int or None
    """

    def __init__(self, viewer: napari.Viewer, classes: list[str], *, background: int | None):
        self.viewer = viewer
        self.classes = list(classes)
        self.background = background
        self.image: Image | None = None
        self.slots: list[Image] = []
        self.slot_class: list[int | None] = []
        self.masks: dict[str, Labels] = {}
        self.corrections: Labels | None = None
        self._cmap = labels_colormap(len(classes), background=background)
        self._heat_cmaps: dict[int, Colormap] = {}
        self.heatmap_visible: dict[int, bool] = {}
        self._setting_visible = False
        self._last_shape = None
        self._stale_thumbnails: set = set()
        self._thumbnail_timer = QTimer()
        self._thumbnail_timer.setSingleShot(True)
        self._thumbnail_timer.setInterval(THUMBNAIL_DELAY_MS)
        self._thumbnail_timer.timeout.connect(self._update_thumbnails)

    @property
    def heatmaps(self) -> dict[int, Image]:
        """Class index -> its heatmap layer, for the current image."""
        return {c: layer for c, layer in zip(self.slot_class, self.slots) if c is not None}

    # ------------------------------------------------------------------ helpers
    def _layers(self):
        out = [self.image, *self.slots, *self.masks.values(), self.corrections]
        return [x for x in out if x is not None]

    def _assign(self, layer, data: np.ndarray) -> None:
        """Put ``data`` in ``layer``, also in hidden layers (a saved or exported layer must
        never hold another image's data).

        With the shape and dtype of the layer's current array, ``data`` is copied into
        that array (always our own copy) and the layer refreshed: napari then skips what
        it does for a *new* array (recomputing the viewer's dims for every layer, and for
        Labels building a new colormap shader that the next draw must recompile), which
        is most of the cost of a switch. The layer-list thumbnail is brought up to date a
        moment later (`THUMBNAIL_DELAY_MS`), off the switch's critical path. Otherwise a
        copy becomes the layer's array.
        """
        old = layer.data
        data = np.asarray(data)
        if (isinstance(old, np.ndarray) and old.shape == data.shape and old.dtype == data.dtype
                and old.flags.writeable):
            if old is not data:
                np.copyto(old, data)
            self._refresh(layer)
            return
        layer.data = np.array(data, copy=True)

    def _refresh(self, layer) -> None:
        """Redraw ``layer`` after an in-place change of its data (same shape: same extent)."""
        if not layer.visible:
            return  # napari refreshes a layer when it is shown
        try:
            layer.refresh(thumbnail=False, extent=False)
        except TypeError:  # a napari without partial refreshes
            layer.refresh()
            return
        self._stale_thumbnails.add(layer)
        self._thumbnail_timer.start()

    def _update_thumbnails(self) -> None:
        stale, self._stale_thumbnails = self._stale_thumbnails, set()
        for layer in stale:
            if layer in self.viewer.layers and layer.visible:
                layer.refresh(data_displayed=False, highlight=False, extent=False)

    def _clear(self, layer, shape) -> None:
        """Zero a layer's data at ``shape`` (in place when it has that shape already)."""
        old = layer.data
        if isinstance(old, np.ndarray) and old.shape == tuple(shape) and old.flags.writeable:
            if old.any():
                old[...] = 0
                layer.refresh()
        else:
            layer.data = np.zeros(shape, dtype=getattr(old, "dtype", np.float32))

    def _on_visible(self, event) -> None:
        layer = event.source
        if not self._setting_visible and layer in self.slots:
            c = self.slot_class[self.slots.index(layer)]
            if c is not None:
                self.heatmap_visible[c] = layer.visible

    def _set_visible(self, layer, visible: bool) -> None:
        if layer.visible == visible:  # napari refreshes on every assignment
            return
        self._setting_visible = True
        try:
            layer.visible = visible
        finally:
            self._setting_visible = False

    def _add(self, layer, index: int | None = None):
        layer.events.visible.connect(self._on_visible)
        ll = self.viewer.layers
        ll.insert(len(ll) if index is None else index, layer)
        return layer

    def _set_image(self, image: np.ndarray) -> None:
        rgb = image.ndim == 3 and image.shape[-1] in (3, 4)
        if self.image is not None and self.image.rgb == rgb and self.image in self.viewer.layers:
            self._assign(self.image, image)
            if not rgb:
                self.image.reset_contrast_limits()
            return
        if self.image is not None and self.image in self.viewer.layers:
            self.viewer.layers.remove(self.image)
        self.image = self._add(Image(image, name="image", rgb=rgb), 0)

    def _heat_cmap(self, c: int) -> Colormap:
        if c not in self._heat_cmaps:
            self._heat_cmaps[c] = heatmap_colormap(c, self.classes[c], background=self.background)
        return self._heat_cmaps[c]

    def _slot_plan(self, classes: list[int]) -> list[int | None]:
        """Class shown by each slot: a class keeps the slot it had (so its colormap, whose
        change makes napari rebuild the slot's shader, stays), new classes take free
        slots in class order; ``None`` = unused."""
        plan: list[int | None] = [c if c in classes else None for c in self.slot_class]
        plan += [None] * max(0, len(classes) - len(plan))
        free = iter([k for k, c in enumerate(plan) if c is None])
        for c in sorted(set(classes) - set(plan)):
            plan[next(free)] = c
        return plan

    def _set_heatmaps(self, view: ImageView, shape) -> None:
        cams: dict[int, np.ndarray] = {}
        if view.cams is not None:
            cams = {int(c): view.cams[k] for k, c in enumerate(view.cam_classes)}
        plan = self._slot_plan(list(cams))
        while len(self.slots) < len(plan):
            k = len(self.slots)
            layer = Image(np.zeros(shape, np.float32), name=f"heatmap {k}", blending="additive",
                          contrast_limits=(0.0, 1.0), opacity=0.6)
            ll = self.viewer.layers
            idx = ll.index(self.slots[-1]) + 1 if self.slots else ll.index(self.image) + 1
            self.slots.append(self._add(layer, idx))
            self.slot_class.append(None)
        for k, (layer, c) in enumerate(zip(self.slots, plan)):
            self.slot_class[k] = c
            if c is None:
                if layer.name != f"heatmap {k} (unused)":
                    layer.name = f"heatmap {k} (unused)"
                self._set_visible(layer, False)
                # keep the current (CAM-sized) array when it covers this image: no reallocation
                cur = np.shape(layer.data)
                fits = tuple(float(n) * float(sc) for n, sc in zip(cur, layer.scale)) == \
                    tuple(float(n) for n in shape)
                if not fits:
                    layer.scale, layer.translate = (1.0, 1.0), (0.0, 0.0)
                self._clear(layer, cur if fits else shape)
                continue
            cam = np.asarray(cams[c], dtype=np.float32)
            name = f"heatmap: {self.classes[c]}"
            if layer.name != name:
                layer.name = name
            cmap = self._heat_cmap(c)
            if layer.colormap.name != cmap.name:
                layer.colormap = cmap
            scale, translate = _cam_transform(view.cam_pixel)
            if tuple(layer.scale) != scale or tuple(layer.translate) != translate:
                layer.scale, layer.translate = scale, translate
            self._assign(layer, cam)
            self._set_visible(layer, self.heatmap_visible.get(c, True))

    def _set_masks(self, view: ImageView, shape) -> None:
        final = next((s for s in reversed(MASK_STAGES) if s in view.masks), None)
        for stage in MASK_STAGES:
            layer = self.masks.get(stage)
            data = view.masks.get(stage)
            if data is None:
                if layer is not None:
                    self._set_visible(layer, False)
                    self._clear(layer, shape)
                continue
            if layer is None:
                layer = Labels(data, name=f"proposal: {STAGE_TITLES[stage]}", opacity=0.45,
                               visible=stage == final, colormap=self._cmap)
                layer.editable = False
                self.masks[stage] = layer
                ll = self.viewer.layers
                self._add(layer, ll.index(self.corrections) if self.corrections in ll else None)
            else:
                self._assign(layer, data)
        if self.shown_stage is None:
            self.shown_stage = final

    shown_stage: str | None = None

    def _set_corrections(self, data: np.ndarray) -> None:
        layer = self.corrections
        if layer is None or layer not in self.viewer.layers:
            layer = Labels(data, name="corrections", opacity=0.7, colormap=self._cmap)
            layer.brush_size = 10
            layer.selected_label = 1
            self.corrections = self._add(layer)
            return
        self._assign(layer, data)
        # The undo history belongs to the previous image: drop it.
        reset = getattr(layer, "_reset_history", None)
        if callable(reset):
            reset()
        else:  # napari resets the history when a layer stops being editable
            mode = layer.mode
            layer.editable = False
            layer.editable = True
            layer.mode = mode

    # ------------------------------------------------------------------ public
    def show(self, view: ImageView) -> None:
        """Show one image with its proposals and corrections."""
        shape = view.image.shape[:2]
        self._set_image(view.image)
        self._set_heatmaps(view, shape)
        self._set_corrections(view.corrections)
        self._set_masks(view, shape)
        self._activate_corrections()
        if self._last_shape != tuple(shape):
            self._last_shape = tuple(shape)
            self.viewer.reset_view()

    def show_proposals(self, view: ImageView) -> None:
        """Update heatmaps and proposal layers only (the corrections keep their edits)."""
        shape = view.image.shape[:2]
        self._set_heatmaps(view, shape)
        self._set_masks(view, shape)
        self._activate_corrections()

    def _activate_corrections(self) -> None:
        if self.viewer.layers.selection.active is not self.corrections:
            self.viewer.layers.selection.active = self.corrections

    def set_heatmap_visible(self, c: int, visible: bool) -> None:
        """Toggle the heatmap of class ``c`` (remembered for later images)."""
        self.heatmap_visible[c] = visible
        layer = self.heatmaps.get(c)
        if layer is not None:
            self._set_visible(layer, visible)

    def stop(self) -> None:
        """Drop the pending thumbnail update (the panel is closing)."""
        self._thumbnail_timer.stop()
        self._stale_thumbnails = set()

    def clear(self) -> None:
        """Remove every layer this set added."""
        self._thumbnail_timer.stop()
        self._stale_thumbnails = set()
        for layer in self._layers():
            layer.events.visible.disconnect(self._on_visible)
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.image, self.slots, self.slot_class, self.masks, self.corrections = None, [], [], {}, None
