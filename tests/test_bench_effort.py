"""bench/effort.py's simulated annotator: stroke placement, stopping rule, determinism."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from _annotator import image_iou, next_stroke, noc, simulate  # noqa: E402


def test_stroke_goes_to_the_interior_of_the_largest_error_region():
    gt = np.zeros((20, 30), np.uint8)
    pred = gt.copy()
    pred[5:15, 5:15] = 1  # 100 wrong pixels
    pred[2:5, 20:23] = 1  # 9 wrong pixels
    gt[0, :] = 255  # void is never an error
    pred[0, :] = 3
    # Inside the 10 x 10 square the distance to the nearest correct pixel is
    # min(r - 4, 15 - r, c - 4, 15 - c): largest (5) at rows/cols 9..10, first in raster order (9, 9).
    assert next_stroke(pred, gt) == (9, 9)
    assert next_stroke(gt, gt) is None


def test_image_iou_by_hand():
    gt = np.array([[0, 0, 1, 1], [0, 0, 1, 255]], np.uint8)
    pred = np.array([[0, 1, 1, 1], [0, 0, 255, 2]], np.uint8)
    # class 0: inter 3, union 4; class 1: inter 2 (pred 1 at (0,1),(0,2),(0,3); gt 1 at (0,2),(0,3),(1,2)),
    # union 4; class 2 only on void ground truth: not counted.
    assert image_iou(pred, gt) == pytest.approx((3 / 4 + 2 / 4) / 2)


def test_noc_counts_strokes_until_the_target():
    assert noc([0.5, 0.8, 0.86, 0.91], 0.85) == 2
    assert noc([0.5, 0.8, 0.86, 0.91], 0.90) == 3
    assert noc([0.95], 0.90) == 0
    assert noc([0.1] * 21, 0.90) == 20


def _blobs(seed=1, shape=(48, 64)):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    gt = np.zeros(shape, np.uint8)
    for c in (1, 2, 3):
        cy, cx, r = rng.integers(8, 40), rng.integers(8, 56), rng.integers(6, 14)
        gt[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = c
    return gt


def test_brush_stroke_is_a_disk_of_the_ground_truth_class():
    gt = _blobs()
    start = np.full(gt.shape, 255, np.uint8)
    res = simulate(gt, start, radius=5, max_strokes=1, target=1.0)
    (y, x), = res["strokes"]
    yy, xx = np.mgrid[: gt.shape[0], : gt.shape[1]]
    inside = (yy - y) ** 2 + (xx - x) ** 2 <= 25
    assert res["pixels"] == 81 == inside.sum()  # lattice points of a radius-5 disk, away from the border
    assert np.all(res["mask"][inside] == gt[y, x])
    assert np.all(res["mask"][~inside] == 255)


def test_simulated_annotator_is_deterministic_and_stops_at_the_target():
    gt = _blobs()
    start = np.zeros(gt.shape, np.uint8)

    def refine(strokes):  # a stand-in propagation: every pixel of a painted class's blob
        out = start.copy()
        for c in np.unique(strokes[strokes != 255]):
            out[gt == c] = c
        return out

    for kw in ({}, {"refine": refine}):
        a = simulate(gt, start, radius=4, **kw)
        b = simulate(gt.copy(), start.copy(), radius=4, **kw)
        assert a["strokes"] == b["strokes"] and a["ious"] == b["ious"] and a["pixels"] == b["pixels"]
        assert a["ious"][-1] >= 0.90 or len(a["strokes"]) == 20
        assert all(i < 0.90 for i in a["ious"][:-1])
    # The propagating annotator needs one stroke per blob class (3).
    assert len(simulate(gt, start, radius=4, refine=refine)["strokes"]) == 3
