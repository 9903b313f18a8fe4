"""The embedded sample data and the package manifest."""

from __future__ import annotations

import csv
import filecmp
import subprocess
import sys
from pathlib import Path

import numpy as np
from skimage.io import imread

from napari_wsss.sample import SAMPLE_DIR, SHAPES_CLASSES, load_photos, make_shapes, write_shapes

REPO = Path(__file__).resolve().parents[1]


def test_shapes_files_are_what_the_generator_writes(tmp_path):
    write_shapes(tmp_path / "shapes")
    committed = SAMPLE_DIR / "shapes"
    for sub in ("images", "masks"):
        names = sorted(p.name for p in (committed / sub).iterdir())
        assert names == sorted(p.name for p in (tmp_path / "shapes" / sub).iterdir())
        for n in names:
            np.testing.assert_array_equal(imread(committed / sub / n), imread(tmp_path / "shapes" / sub / n))
    assert filecmp.cmp(committed / "labels.csv", tmp_path / "shapes" / "labels.csv", shallow=False)


def test_shape_labels_are_the_classes_present_in_the_masks():
    with open(SAMPLE_DIR / "shapes" / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 48
    for row in rows:
        mask = imread(SAMPLE_DIR / "shapes" / "masks" / f"{row['id']}.png")
        present = {SHAPES_CLASSES[c] for c in np.unique(mask) if c != 0}
        assert present == {name for name in SHAPES_CLASSES[1:] if row[name] == "1"}


def test_make_shapes_is_seeded():
    a, b, c = make_shapes(3, seed=1), make_shapes(3, seed=1), make_shapes(3, seed=2)
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b))
    assert not np.array_equal(a[0].image, c[0].image)


def test_photos_name_imagenet_classes_and_skimage_images():
    classes, rows, samples = load_photos()
    assert classes == ["cat", "cup", "espresso"]
    assert all(0 <= i < 1000 for r in rows.values() for i in r)
    assert [s.image_id for s in samples] == ["chelsea", "coffee"]
    assert samples[1].labels == [1, 2] and samples[0].image.shape == (300, 451, 3)


def test_manifest_validates_and_is_the_repository_file():
    assert (REPO / "napari_wsss" / "napari.yaml").read_text() == (REPO / "napari.yaml").read_text()
    res = subprocess.run([sys.executable, "-m", "npe2", "validate", "napari_wsss"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "valid" in res.stdout.lower()


def test_sample_data_contributions_return_layers():
    from napari_wsss._sample_data import sample_photos, sample_shapes

    layers = sample_shapes()
    (images, _, kind_i), (labels, meta, kind_l) = layers
    assert (kind_i, kind_l) == ("image", "labels")
    assert images.shape == (6, 128, 128, 3) and labels.shape == (6, 128, 128)
    # Labels layer values are class + 1 (0 = unpainted); every pixel has a class here.
    assert labels.min() >= 1 and labels.max() <= len(SHAPES_CLASSES)
    assert [layer[2] for layer in sample_photos()] == ["image", "image"]
