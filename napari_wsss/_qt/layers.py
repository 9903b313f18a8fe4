"""The napari layers of the current image, reused across image switches.

A `LayerSet` owns exactly four layers, always in this order (bottom to top):

``image``
    The photo.
``heatmap``
    ONE RGB heatmap (additive blending): the CAM of the class chosen in the class
    picker, coloured in that class's colour, or on request all CAMs at once (each
    pixel in the colour of its strongest class, as bright as that class's score), or
    nothing. CAMs are small (`AnnotationSession.load` shrinks them to 256 px), so the
    RGB array is computed here in a few milliseconds and no colormap ever changes
    (a colormap change makes napari rebuild the layer's shader).
``proposal``
    The proposal stage chosen in the Review box (the one Accept copies), read-only,
    drawn filled or as contours. Besides the stored stages it can show `STROKES_STAGE`,
    the proposal propagated from the current strokes (computed in the panel, never stored:
    `set_computed_stage`).
``corrections``
    The annotator's editable Labels layer.

The layers are created once (the first image) and their ``.data`` replaced in place on a
switch: the order never changes and no layer is added or removed while annotating.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from napari.layers import Image, Labels
from napari.utils.colormaps import DirectLabelColormap
from qtpy.QtCore import QTimer

from napari_wsss.colors import class_color, labels_layer_colors
from napari_wsss.conventions import STAGES, value_names

from .session import MASK_STAGES, ImageView

if TYPE_CHECKING:
    import napari

__all__ = ["LayerSet", "labels_colormap", "heatmap_rgb", "STAGE_TITLES", "STROKES_STAGE", "HEATMAP_ALL",
           "HEATMAP_OFF", "PROPOSAL_OPACITIES"]

THUMBNAIL_DELAY_MS = 300
"""Layer-list thumbnails follow an image switch this much later (rapid switching
through images does not pay for thumbnails nobody sees)."""

STROKES_STAGE = "strokes"
"""The proposal propagated from the annotator's strokes (stroke-seeded refinement): a
stage of the proposal slot after the stored ones, held in memory only."""

STAGE_TITLES = {**{name: stage.title for name, stage in STAGES.items()}, STROKES_STAGE: "strokes"}

HEATMAP_ALL = "all"
HEATMAP_OFF = "off"
"""Heatmap choices besides a class index."""

PROPOSAL_OPACITIES = (0.45, 0.8, 0.2, 0.0)
"""Proposal opacities the opacity key (Alt+O) cycles through."""


def labels_colormap(n_classes: int, *, background: int | None) -> DirectLabelColormap:
    """Layer value of class ``c`` -> class colour (the background class nearly transparent);
    ``0`` transparent; ignore in VOC cream (`napari_wsss.colors.labels_layer_colors`)."""
    return DirectLabelColormap(color_dict=labels_layer_colors(n_classes, background=background))


def heatmap_rgb(cams: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """RGB heatmap of CAMs.

    Parameters
    ----------
    cams : ndarray, shape (K, h, w), float
        Scores in ``[0, 1]`` (clipped).
    colors : ndarray, shape (K, 3), float
        Colour of each CAM's class in ``[0, 1]``.

    Returns
    -------
    ndarray, shape (h, w, 3), float32
        Each pixel in the colour of its highest-scoring CAM, scaled by that score
        (``K = 1``: the one CAM in its colour).
    """
    cams = np.clip(np.asarray(cams, dtype=np.float32), 0.0, 1.0)
    colors = np.asarray(colors, dtype=np.float32)
    if cams.shape[0] == 0:
        return np.zeros((*cams.shape[1:], 3), np.float32)
    best = cams.argmax(axis=0)
    score = np.take_along_axis(cams, best[None], axis=0)[0]
    return colors[best] * score[..., None]


def _cam_transform(pixel) -> tuple[tuple[float, float], tuple[float, float]]:
    """Scale and translate of a CAM layer whose pixels are ``pixel`` image pixels large.

    CAM pixel ``i`` covers image pixels ``[i s, (i + 1) s)``, so its centre is at
    ``(i + 0.5) s - 0.5`` in napari's pixel-centre coordinates.
    """
    s = tuple(float(p) for p in pixel)
    t = tuple(0.5 * si - 0.5 for si in s)
    return s, t


def _features(classes: list[str]) -> dict:
    """Labels ``features``: napari's hover text then names the class under the cursor."""
    names = value_names(classes)
    return {"index": np.array(list(names), dtype=np.int64), "class": np.array(list(names.values()))}


class LayerSet:
    """Creates and updates the four annotation layers in a viewer.

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
        self.heatmap: Image | None = None
        self.proposal: Labels | None = None
        self.corrections: Labels | None = None
        self.view: ImageView | None = None
        self.heatmap_choice: int | str = HEATMAP_OFF
        self.stage: str | None = None
        self.contour = False
        self._opacity_step = 0
        self._cmap = labels_colormap(len(classes), background=background)
        self._features = _features(self.classes)
        self._rgb = np.array([class_color(c, background=background)[:3]
                              for c in range(len(classes))], np.float32).reshape(-1, 3)
        self._last_shape = None
        self._stale_thumbnails: set = set()
        self._thumbnail_timer = QTimer()
        self._thumbnail_timer.setSingleShot(True)
        self._thumbnail_timer.setInterval(THUMBNAIL_DELAY_MS)
        self._thumbnail_timer.timeout.connect(self._update_thumbnails)

    # ------------------------------------------------------------------ helpers
    def _layers(self):
        out = [self.image, self.heatmap, self.proposal, self.corrections]
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

    def _create(self, view: ImageView) -> None:
        """The four layers, in their fixed order (first image of the project)."""
        shape = view.image.shape[:2]
        rgb = view.image.ndim == 3 and view.image.shape[-1] in (3, 4)
        ll = self.viewer.layers
        self.image = Image(np.array(view.image, copy=True), name="image", rgb=rgb)
        self.heatmap = Image(np.zeros((1, 1, 3), np.float32), name="heatmap", rgb=True,
                             blending="additive", contrast_limits=(0.0, 1.0), opacity=0.6)
        self.proposal = Labels(np.zeros(shape, np.uint8), name="proposal", opacity=PROPOSAL_OPACITIES[0],
                               colormap=self._cmap, features=self._features)
        self.proposal.editable = False
        self.corrections = Labels(np.zeros(shape, np.uint8), name="corrections", opacity=0.7,
                                  colormap=self._cmap, features=self._features)
        self.corrections.brush_size = 10
        self.corrections.selected_label = 1
        for layer in self._layers():
            ll.append(layer)

    def _set_image(self, image: np.ndarray) -> None:
        rgb = image.ndim == 3 and image.shape[-1] in (3, 4)
        if self.image.rgb == rgb:
            self._assign(self.image, image)
            if not rgb:
                self.image.reset_contrast_limits()
            return
        # grey <-> colour: a new Image layer in the same place
        idx = self.viewer.layers.index(self.image)
        self.viewer.layers.remove(self.image)
        self.image = Image(np.array(image, copy=True), name="image", rgb=rgb)
        self.viewer.layers.insert(idx, self.image)

    def _heatmap_cams(self) -> tuple[np.ndarray, np.ndarray, str]:
        """CAMs and colours the heatmap shows now, and the layer name."""
        v, choice = self.view, self.heatmap_choice
        empty = np.zeros((0, 1, 1), np.float32), np.zeros((0, 3), np.float32)
        if v is None or v.cams is None or choice == HEATMAP_OFF:
            return (*empty, "heatmap: off" if choice == HEATMAP_OFF else "heatmap: no CAMs stored")
        classes = [int(c) for c in v.cam_classes]
        if choice == HEATMAP_ALL:
            return v.cams, self._rgb[classes], "heatmap: all classes"
        c = int(choice)
        name = self.classes[c] if 0 <= c < len(self.classes) else str(c)
        if c not in classes:
            return (*empty, f"heatmap: {name} (not in this image)")
        k = classes.index(c)
        return v.cams[k:k + 1], self._rgb[c:c + 1], f"heatmap: {name}"

    def _set_heatmap(self) -> None:
        cams, colors, name = self._heatmap_cams()
        layer = self.heatmap
        if layer.name != name:
            layer.name = name
        if cams.shape[0] == 0:
            if layer.visible:
                layer.visible = False
            return
        scale, translate = _cam_transform(self.view.cam_pixel)
        if tuple(layer.scale[:2]) != scale or tuple(layer.translate[:2]) != translate:
            layer.scale, layer.translate = scale, translate
        self._assign(layer, heatmap_rgb(cams, colors))
        if not layer.visible:
            layer.visible = True

    def _set_proposal(self) -> None:
        v, layer = self.view, self.proposal
        data = v.masks.get(self.stage) if v is not None and self.stage is not None else None
        name = f"proposal: {STAGE_TITLES.get(self.stage, self.stage)}" if data is not None else \
            "proposal: none"
        if layer.name != name:
            layer.name = name
        if data is None:
            data = np.zeros(v.image.shape[:2], np.uint8)
        self._assign(layer, data)

    def _set_corrections(self, data: np.ndarray) -> None:
        layer = self.corrections
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
    def stages(self) -> list[str]:
        """Proposal stages of the current image: the stored ones in pipeline order, then
        `STROKES_STAGE` when the strokes have been propagated."""
        return [s for s in (*MASK_STAGES, STROKES_STAGE) if self.view is not None and s in self.view.masks]

    def set_computed_stage(self, stage: str, data: np.ndarray | None) -> None:
        """Give the current image a proposal computed in the panel (layer values; ``None``
        removes it); shown in place when ``stage`` is the one chosen."""
        if self.view is None:
            return
        if data is None:
            self.view.masks.pop(stage, None)
            if self.stage == stage:
                self.stage = None
                self._pick_stage()
                self._set_proposal()
            return
        self.view.masks[stage] = data
        if self.stage == stage:
            self._set_proposal()

    def show(self, view: ImageView) -> None:
        """Show one image with its proposals and corrections."""
        shape = view.image.shape[:2]
        if self.image is None:
            self._create(view)
        view.masks.pop(STROKES_STAGE, None)  # computed for an earlier visit's strokes
        self.view = view
        self._set_image(view.image)
        self._pick_stage()
        self._set_heatmap()
        self._set_corrections(view.corrections)
        self._set_proposal()
        self._activate_corrections()
        if self._last_shape != tuple(shape):
            self._last_shape = tuple(shape)
            self.viewer.reset_view()

    def show_proposals(self, view: ImageView) -> None:
        """Update the heatmap and the proposal only (the corrections keep their edits)."""
        self.view = view
        self._pick_stage()
        self._set_heatmap()
        self._set_proposal()
        self._activate_corrections()

    def _pick_stage(self) -> None:
        """Keep the chosen stage when this image has it, else its last (most refined) one."""
        have = self.stages()
        if self.stage not in have:
            self.stage = have[-1] if have else None

    def set_stage(self, stage: str | None) -> None:
        """Show proposal ``stage`` (ignored when the image has no such proposal)."""
        if stage in self.stages() and stage != self.stage:
            self.stage = stage
            self._set_proposal()

    def set_heatmap(self, choice: int | str) -> None:
        """Show the heatmap of class ``choice``, of all classes (`HEATMAP_ALL`) or none."""
        self.heatmap_choice = choice
        if self.heatmap is not None:
            self._set_heatmap()

    def toggle_contour(self) -> bool:
        """Proposal drawn filled <-> as 2 px contours; returns whether it is contours now."""
        self.contour = not self.contour
        if self.proposal is not None:
            self.proposal.contour = 2 if self.contour else 0
        return self.contour

    def cycle_opacity(self) -> float:
        """Next proposal opacity of `PROPOSAL_OPACITIES`; returns it."""
        self._opacity_step = (self._opacity_step + 1) % len(PROPOSAL_OPACITIES)
        value = PROPOSAL_OPACITIES[self._opacity_step]
        if self.proposal is not None:
            self.proposal.opacity = value
        return value

    def _activate_corrections(self) -> None:
        if self.viewer.layers.selection.active is not self.corrections:
            self.viewer.layers.selection.active = self.corrections

    def stop(self) -> None:
        """Drop the pending thumbnail update (the panel is closing)."""
        self._thumbnail_timer.stop()
        self._stale_thumbnails = set()

    def clear(self) -> None:
        """Remove every layer this set added."""
        self.stop()
        for layer in self._layers():
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.image = self.heatmap = self.proposal = self.corrections = None
        self.view = None
