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

STAGE_TITLES = {"cam": "prior (CAM)", "crf": "CRF", "rw": "random walk", "segmenter": "segmenter"}
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
        self.heatmaps: dict[int, Image] = {}
        self.masks: dict[str, Labels] = {}
        self.corrections: Labels | None = None
        self._cmap = labels_colormap(len(classes), background=background)
        self.heatmap_visible: dict[int, bool] = {}
        self.shown_stage: str | None = None

    # ------------------------------------------------------------------ helpers
    def _layers(self):
        out = [self.image, *self.heatmaps.values(), *self.masks.values(), self.corrections]
        return [x for x in out if x is not None]

    def _insert_below_masks(self, layer) -> None:
        ll = self.viewer.layers
        above = [x for x in [*self.masks.values(), self.corrections] if x is not None and x in ll]
        idx = min((ll.index(x) for x in above), default=len(ll))
        ll.insert(idx, layer)

    def _set_image(self, image: np.ndarray) -> None:
        rgb = image.ndim == 3 and image.shape[-1] in (3, 4)
        if self.image is not None and self.image.rgb == rgb and self.image in self.viewer.layers:
            self.image.data = image
            if not rgb:
                self.image.reset_contrast_limits()
            return
        if self.image is not None and self.image in self.viewer.layers:
            self.viewer.layers.remove(self.image)
        self.image = Image(image, name="image", rgb=rgb)
        self.viewer.layers.insert(0, self.image)

    def _set_heatmaps(self, view: ImageView, shape) -> None:
        want: dict[int, np.ndarray] = {}
        if view.cams is not None:
            want = {int(c): view.cams[k] for k, c in enumerate(view.cam_classes)}
        for c in list(self.heatmaps):
            if c not in want:
                layer = self.heatmaps.pop(c)
                if layer in self.viewer.layers:
                    self.viewer.layers.remove(layer)
        for c in sorted(want):
            cam = np.asarray(want[c], dtype=np.float32)
            scale, translate = _cam_transform(cam.shape, shape)
            layer = self.heatmaps.get(c)
            if layer is None:
                name = self.classes[c]
                layer = Image(
                    cam, name=f"heatmap: {name}", blending="additive", contrast_limits=(0.0, 1.0),
                    colormap=heatmap_colormap(c, name, background=self.background),
                    scale=scale, translate=translate, opacity=0.6,
                    visible=self.heatmap_visible.get(c, True),
                )
                self.heatmaps[c] = layer
                self._insert_below_masks(layer)
            else:
                layer.data = cam
                layer.scale, layer.translate = scale, translate
                layer.contrast_limits = (0.0, 1.0)

    def _set_masks(self, view: ImageView, shape) -> None:
        final = next((s for s in reversed(MASK_STAGES) if s in view.masks), None)
        for stage in MASK_STAGES:
            layer = self.masks.get(stage)
            data = view.masks.get(stage)
            if data is None:
                if layer is not None:
                    layer.data = np.zeros(shape, dtype=np.uint8)
                    layer.visible = False
                continue
            if layer is None:
                layer = Labels(data, name=f"proposal: {STAGE_TITLES[stage]}", opacity=0.45,
                               visible=stage == final, colormap=self._cmap)
                layer.editable = False
                self.masks[stage] = layer
                ll = self.viewer.layers
                idx = ll.index(self.corrections) if self.corrections in ll else len(ll)
                ll.insert(idx, layer)
            else:
                layer.data = data
            layer.editable = False
        if self.shown_stage is None:
            self.shown_stage = final

    def _set_corrections(self, data: np.ndarray) -> None:
        layer = self.corrections
        if layer is None or layer not in self.viewer.layers:
            layer = Labels(data, name="corrections", opacity=0.7, colormap=self._cmap)
            layer.brush_size = 10
            layer.selected_label = 1
            self.corrections = layer
            self.viewer.layers.append(layer)
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
        self.viewer.layers.selection.active = self.corrections
        self.viewer.reset_view() if self._shape_changed(shape) else None

    def show_proposals(self, view: ImageView) -> None:
        """Update heatmaps and proposal layers only (the corrections keep their edits)."""
        shape = view.image.shape[:2]
        self._set_heatmaps(view, shape)
        self._set_masks(view, shape)
        self.viewer.layers.selection.active = self.corrections

    def _shape_changed(self, shape) -> bool:
        changed = getattr(self, "_last_shape", None) != tuple(shape)
        self._last_shape = tuple(shape)
        return changed

    def set_heatmap_visible(self, c: int, visible: bool) -> None:
        """Toggle the heatmap of class ``c`` (remembered for later images)."""
        self.heatmap_visible[c] = visible
        if c in self.heatmaps:
            self.heatmaps[c].visible = visible

    def clear(self) -> None:
        """Remove every layer this set added."""
        for layer in self._layers():
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.image, self.heatmaps, self.masks, self.corrections = None, {}, {}, None
