"""npe2 sample-data contributions: the synthetic shapes set and the ImageNet photos."""

from __future__ import annotations

import numpy as np

from .colors import labels_layer_colors
from .conventions import class_to_layer
from .sample import SHAPES_CLASSES, load_photos, make_shapes

__all__ = ["sample_shapes", "sample_photos"]


def _labels_meta(name: str, n_classes: int, background) -> dict:
    return {"name": name, "colormap": labels_layer_colors(n_classes, background=background), "opacity": 0.5}


def sample_shapes():
    """Six synthetic images (a stack) with their ground-truth masks as a Labels layer."""
    samples = make_shapes(6)
    images = np.stack([s.image for s in samples])
    masks = np.stack([class_to_layer(s.mask) for s in samples])
    return [
        (images, {"name": "shapes", "rgb": True}, "image"),
        (masks, _labels_meta("shapes ground truth", len(SHAPES_CLASSES), 0), "labels"),
    ]


def sample_photos():
    """The scikit-image photos explained by the demo's ImageNet classifier."""
    classes, _, samples = load_photos()
    return [
        (s.image, {"name": f"{s.image_id} ({', '.join(classes[c] for c in s.labels)})", "rgb": True}, "image")
        for s in samples
    ]
