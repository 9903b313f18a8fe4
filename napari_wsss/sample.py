"""The embedded sample data: synthetic multi-label shapes with masks, and ImageNet photos.

Both are deterministic. ``sample_data/shapes/`` in the repository holds the shapes set as
files (written by :func:`write_shapes`), so the command-line examples run on a real folder;
``sample_data/photos.csv`` names the scikit-image photos and the ImageNet classes that explain
them.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from skimage import draw, filters

__all__ = [
    "SAMPLE_DIR",
    "SHAPES_CLASSES",
    "ShapeSample",
    "make_shapes",
    "write_shapes",
    "PhotoSample",
    "load_photos",
]

SAMPLE_DIR = Path(__file__).resolve().parent / "sample_data"

#: Class 0 is the background (the shapes set is a background project).
SHAPES_CLASSES = ["background", "disc", "square", "triangle"]

# Mean colour per foreground class (RGB, 0..1); each object jitters around it.
_COLOURS = {1: (0.85, 0.25, 0.2), 2: (0.25, 0.75, 0.3), 3: (0.25, 0.35, 0.9)}


@dataclass
class ShapeSample:
    image_id: str
    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) uint8 class indices
    labels: list[int]  # foreground classes present


def _shape_coords(kind: int, cy: float, cx: float, r: float, shape, rng) -> tuple[np.ndarray, np.ndarray]:
    if kind == 1:
        return draw.disk((cy, cx), r, shape=shape)
    if kind == 2:
        h = r * rng.uniform(0.8, 1.0)
        return draw.rectangle((cy - h, cx - h), (cy + h, cx + h), shape=shape)
    a = rng.uniform(0, 2 * np.pi)
    angles = a + np.array([0.0, 2 * np.pi / 3, 4 * np.pi / 3])
    return draw.polygon(cy + 1.25 * r * np.sin(angles), cx + 1.25 * r * np.cos(angles), shape=shape)


def make_shapes(n: int = 48, *, size: int = 128, seed: int = 0) -> list[ShapeSample]:
    """Generate ``n`` images with 1 to 3 coloured shapes on a textured background.

    Parameters
    ----------
    n : int
        Number of images.
    size : int
        Side of each square image in pixels.
    seed : int
        Seed; the same seed gives the same images.

    Returns
    -------
    list of ShapeSample
        Images ``(size, size, 3)`` uint8, masks ``(size, size)`` uint8 with classes of
        :data:`SHAPES_CLASSES` (0 = background), and the image-level labels.
    """
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        shape = (size, size)
        tex = filters.gaussian(rng.normal(size=shape), sigma=3)
        tex = (tex - tex.min()) / (np.ptp(tex) + 1e-9)
        image = np.stack([0.35 + 0.3 * tex] * 3, axis=-1) * rng.uniform(0.8, 1.1, size=3)
        mask = np.zeros(shape, np.uint8)
        n_obj = rng.integers(1, 4)
        kinds = rng.choice([1, 2, 3], size=n_obj, replace=False)
        for kind in kinds:
            r = rng.uniform(0.1, 0.18) * size
            cy, cx = rng.uniform(r + 2, size - r - 2, size=2)
            rr, cc = _shape_coords(int(kind), cy, cx, r, shape, rng)
            colour = np.clip(np.array(_COLOURS[int(kind)]) + rng.normal(0, 0.06, 3), 0, 1)
            shade = 0.85 + 0.15 * tex[rr, cc, None]
            image[rr, cc] = colour * shade
            mask[rr, cc] = kind
        image = np.clip(image + rng.normal(0, 0.02, image.shape), 0, 1)
        labels = sorted(int(c) for c in np.unique(mask) if c != 0)
        out.append(ShapeSample(f"shape_{i:03d}", (image * 255).round().astype(np.uint8), mask, labels))
    return out


def write_shapes(root: Path, n: int = 48, *, size: int = 128, seed: int = 0) -> Path:
    """Write the shapes set as ``images/``, ``masks/``, ``labels.csv`` and ``classes.txt``."""
    from skimage.io import imsave

    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    samples = make_shapes(n, size=size, seed=seed)
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", *SHAPES_CLASSES[1:]])
        for s in samples:
            imsave(root / "images" / f"{s.image_id}.png", s.image, check_contrast=False)
            imsave(root / "masks" / f"{s.image_id}.png", s.mask, check_contrast=False)
            w.writerow([s.image_id, *(int(c in s.labels) for c in range(1, len(SHAPES_CLASSES)))])
    (root / "classes.txt").write_text("\n".join(SHAPES_CLASSES) + "\n")
    return root


@dataclass
class PhotoSample:
    image_id: str
    image: np.ndarray  # (H, W, 3) uint8
    labels: list[int]  # indices into the photo class list


def load_photos() -> tuple[list[str], dict[str, list[int]], list[PhotoSample]]:
    """The scikit-image photos named in ``sample_data/photos.csv``.

    Returns
    -------
    classes : list of str
        Project classes (no background class).
    imagenet_rows : dict
        Class name -> ImageNet-1k indices whose classifier rows are summed to explain it.
    samples : list of PhotoSample
    """
    import skimage.data

    classes: list[str] = []
    rows: dict[str, list[int]] = {}
    with open(SAMPLE_DIR / "photo_classes.csv", newline="") as f:
        for rec in csv.DictReader(f):
            classes.append(rec["class"])
            rows[rec["class"]] = [int(v) for v in rec["imagenet_indices"].split(";")]
    samples = []
    with open(SAMPLE_DIR / "photos.csv", newline="") as f:
        for rec in csv.DictReader(f):
            image = getattr(skimage.data, rec["skimage_name"])()
            labels = sorted(classes.index(name) for name in rec["labels"].split(";"))
            samples.append(PhotoSample(rec["skimage_name"], image, labels))
    return classes, rows, samples
