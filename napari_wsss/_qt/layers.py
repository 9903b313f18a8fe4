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

from napari_wsss.colors import IGNORE, class_color

from .session import IGNORE_VALUE, MASK_STAGES, ImageView

if TYPE_CHECKING:
    import napari

__all__ = ["LayerSet", "labels_colormap", "heatmap_colormap"]

STAGE_TITLES = {"cam": "prior (CAM)", "crf": "CRF", "rw": "random walk", "segmenter": "segmenter",
                "explainer": "explainer"}
TRANSPARENT = (0.0, 0.0, 0.0, 0.0)


def labels_colormap(n_classes: int, *, background: int | None) -> DirectLabelColormap:
    """Layer value ``c + 1`` -> class colour; ``0`` transparent; ignore in VOC cream."""
    colors = {None: TRANSPARENT, 0: TRANSPARENT, IGNORE_VALUE: class_color(IGNORE)}
    for c in range(n_classes):
        colors[c + 1] = class_color(c, background=background)
    return DirectLabelColormap(color_dict=colors)


def heatmap_colormap(c: int, name: str, *, background: int | None) -> Colormap:
    """Black -> colour of class ``c`` (additive blending adds it onto the image)."""
    r, g, b, _ = class_color(c, background=background)
    return Colormap([[0, 0, 0, 1], [r, g, b, 1]], name=f"wsss:{c}:{name}", display_name=name)


def _cam_transform(cam_shape, image_shape) -> tuple[tuple[float, float], tuple[float, float]]:
    """Scale and translate that stretch a ``(h, w)`` CAM over an ``(H, W)`` image.

    CAM pixel ``i`` covers image pixels ``[i s, (i + 1) s)``, so its centre is at
    ``(i + 0.5) s - 0.5`` in napari's pixel-centre coordinates.
    """
    s = tuple(float(H) / float(h) for H, h in zip(image_shape[:2], cam_shape))
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

    @property
    def heatmaps(self) -> dict[int, Image]:
        """Class index -> its heatmap layer, for the current image."""
        return {c: layer for c, layer in zip(self.slot_class, self.slots) if c is not None}

    # ------------------------------------------------------------------ helpers
    def _layers(self):
        out = [self.image, *self.slots, *self.masks.values(), self.corrections]
        return [x for x in out if x is not None]

    def _assign(self, layer, data: np.ndarray) -> None:
        """``layer.data = data`` (also for hidden layers: a saved or exported layer
        must never hold another image's data)."""
        layer.data = data

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
            self.image.data = image
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

    def _set_heatmaps(self, view: ImageView, shape) -> None:
        want: list[tuple[int, np.ndarray]] = []
        if view.cams is not None:
            want = sorted((int(c), view.cams[k]) for k, c in enumerate(view.cam_classes))
        while len(self.slots) < len(want):
            k = len(self.slots)
            layer = Image(np.zeros(shape, np.float32), name=f"heatmap {k}", blending="additive",
                          contrast_limits=(0.0, 1.0), opacity=0.6)
            ll = self.viewer.layers
            idx = ll.index(self.slots[-1]) + 1 if self.slots else ll.index(self.image) + 1
            self.slots.append(self._add(layer, idx))
            self.slot_class.append(None)
        for k, layer in enumerate(self.slots):
            if k >= len(want):
                self.slot_class[k] = None
                if layer.name != f"heatmap {k} (unused)":
                    layer.name = f"heatmap {k} (unused)"
                self._set_visible(layer, False)
                self._assign(layer, np.zeros(shape, np.float32))
                continue
            c, cam = want[k]
            cam = np.asarray(cam, dtype=np.float32)
            self.slot_class[k] = c
            name = f"heatmap: {self.classes[c]}"
            if layer.name != name:
                layer.name = name
            cmap = self._heat_cmap(c)
            if layer.colormap.name != cmap.name:
                layer.colormap = cmap
            scale, translate = _cam_transform(cam.shape, shape)
            if tuple(layer.scale) != scale or tuple(layer.translate) != translate:
                layer.scale, layer.translate = scale, translate
            self._set_visible(layer, self.heatmap_visible.get(c, True))
            self._assign(layer, cam)

    def _set_masks(self, view: ImageView, shape) -> None:
        final = next((s for s in reversed(MASK_STAGES) if s in view.masks), None)
        for stage in MASK_STAGES:
            layer = self.masks.get(stage)
            data = view.masks.get(stage)
            if data is None:
                if layer is not None:
                    self._set_visible(layer, False)
                    self._assign(layer, np.zeros(shape, dtype=np.uint8))
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
        mode = layer.mode
        layer.data = data
        # The undo history belongs to the previous image: drop it (napari resets the
        # history when a layer stops being editable).
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

    def clear(self) -> None:
        """Remove every layer this set added."""
        for layer in self._layers():
            layer.events.visible.disconnect(self._on_visible)
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.image, self.slots, self.slot_class, self.masks, self.corrections = None, [], [], {}, None
