"""Stroke-seeded refinement: seeds are hard, the walk is Grady's linear system, strokes spread."""

import numpy as np
import pytest

from napari_wsss.refine.upsample import edge_aware_upsample
from napari_wsss.refine.seeded import (
    PAINTED_IGNORE,
    NOT_PAINTED,
    SeededRefiner,
    seeded_random_walk,
    seeded_refine,
)


def _dense_reference(image, prior, seeds, gamma, beta):
    """Grady 2005 written out with dense matrices and explicit neighbour loops."""
    img = np.asarray(image, np.float64)
    if img.ndim == 2:
        img = img[..., None]
    h, w = img.shape[:2]
    edges = []
    for y in range(h):
        for x in range(w):
            if x + 1 < w:
                edges.append((y * w + x, y * w + x + 1, np.sum((img[y, x] - img[y, x + 1]) ** 2)))
            if y + 1 < h:
                edges.append((y * w + x, (y + 1) * w + x, np.sum((img[y, x] - img[y + 1, x]) ** 2)))
    mean_d = np.mean([e[2] for e in edges])
    n = h * w
    lap = np.zeros((n, n))
    for i, j, d in edges:
        wt = max(np.exp(-beta * d / mean_d), 1e-6)
        lap[i, j] -= wt
        lap[j, i] -= wt
        lap[i, i] += wt
        lap[j, j] += wt
    k = prior.shape[0]
    p = prior.reshape(k, n).T / prior.reshape(k, n).T.sum(1, keepdims=True)
    s = seeds.reshape(-1)
    m, u = np.flatnonzero(s >= 0), np.flatnonzero(s < 0)
    xm = np.eye(k)[s[m]]
    x = np.zeros((n, k))
    x[m] = xm
    a = lap[np.ix_(u, u)] + gamma * np.eye(u.size)
    x[u] = np.linalg.solve(a, gamma * p[u] - lap[np.ix_(u, m)] @ xm)
    return x.T.reshape(k, h, w)


@pytest.mark.parametrize("gamma", [0.01, 0.5])
def test_seeded_walk_equals_dense_reference(gamma):
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (6, 7, 3)).astype(np.uint8)
    prior = rng.random((3, 6, 7)) + 0.01
    seeds = np.full((6, 7), -1)
    seeds[0, 0], seeds[5, 6], seeds[2, 3], seeds[2, 4] = 0, 1, 2, 2
    got = seeded_random_walk(image, prior, seeds, gamma=gamma, beta=3.0)
    ref = _dense_reference(image, prior, seeds, gamma, 3.0)
    # Both are direct float64 solves of a system with condition number <= (8 + gamma) / gamma
    # (<= 801): agreement to ~1e-13; 1e-9 leaves room for any LAPACK / SuperLU ordering.
    np.testing.assert_allclose(got, ref, atol=1e-9)
    np.testing.assert_allclose(got.sum(0), 1.0, atol=1e-9)


def test_every_seed_kept_and_ignore_is_void():
    rng = np.random.default_rng(0)
    h, w = 90, 130
    image = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
    cams = rng.random((3, h // 4, w // 4)).astype(np.float32)
    seed_map = np.full((h, w), NOT_PAINTED, np.uint8)
    # Scattered single pixels (thinner than a working cell) of the labels and of a class
    # that is not among them, plus a patch of painted ignore.
    ys, xs = rng.integers(0, h, 200), rng.integers(0, w, 200)
    seed_map[ys, xs] = rng.choice([2, 5, 9, 11], 200).astype(np.uint8)
    seed_map[10:20, 10:20] = PAINTED_IGNORE
    for method in ("rw", "crf"):
        res = seeded_refine(image, cams, [2, 5, 9], seed_map, method=method, work_side=48)
        painted = seed_map < PAINTED_IGNORE
        np.testing.assert_array_equal(res.mask[painted], seed_map[painted])
        assert np.all(res.mask[seed_map == PAINTED_IGNORE] == 255)
        assert 11 in res.classes.tolist()
        assert res.mask.shape == (h, w)


def _two_region_image(h=60, w=80):
    """Dark left part, bright right part with an edge at x = 47 (not on the working grid)."""
    image = np.full((h, w, 3), 40, np.uint8)
    image[:, 47:] = 210
    return image


def test_stroke_inside_wrong_region_flips_it():
    image = _two_region_image()
    h, w = image.shape[:2]
    # The CAMs say class 4 everywhere (0.8 vs 0.3 for class 7): the right region is wrong.
    cams = np.stack([np.full((h, w), 0.8), np.full((h, w), 0.3)]).astype(np.float32)
    before = seeded_refine(image, cams, [4, 7], np.full((h, w), NOT_PAINTED, np.uint8), work_side=40)
    assert np.all(before.mask == 4)
    strokes = np.full((h, w), NOT_PAINTED, np.uint8)
    strokes[28:32, 60:64] = 7  # one small dab in the right region
    strokes[28:32, 20:24] = 4  # and one confirming the left region
    # A stroke's influence decays over about 1 / sqrt(gamma) working pixels inside a uniform
    # region (the screened Laplace equation): gamma = 1e-3 reaches ~32 cells, more than the
    # right region's 16 x 30 cells at work_side 40; the edge weight across x = 47 is ~1e-6.
    after = seeded_refine(image, cams, [4, 7], strokes, work_side=40, gamma=1e-3)
    assert np.all(after.mask[:, 47:] == 7)
    assert np.all(after.mask[:, :47] == 4)


def test_painted_ignore_is_not_a_seed():
    image = _two_region_image()
    h, w = image.shape[:2]
    cams = np.stack([np.full((h, w), 0.8), np.full((h, w), 0.3)]).astype(np.float32)
    strokes = np.full((h, w), NOT_PAINTED, np.uint8)
    strokes[28:32, 20:24] = 4
    ignore = strokes.copy()
    ignore[10:50, 55:75] = PAINTED_IGNORE  # a big ignore patch in the right region
    refine = SeededRefiner(image, cams, [4, 7], work_side=40, gamma=0.01)
    plain, with_ignore = refine(strokes), refine(ignore)
    np.testing.assert_array_equal(with_ignore.scores, plain.scores)
    np.testing.assert_array_equal(with_ignore.mask[ignore != PAINTED_IGNORE], plain.mask[ignore != PAINTED_IGNORE])
    assert np.all(with_ignore.mask[ignore == PAINTED_IGNORE] == 255)


def test_edge_aware_upsample_follows_the_image_edge():
    # A bright 3-pixel line (x = 30..32) of class 1 on a dark class-0 image; at 1/4 resolution
    # it covers at most half of a cell, so bilinear upsampling loses it and the guided filter,
    # which fits the scores to the image's grey levels, gets it back.
    image = np.full((64, 64, 3), 40, np.uint8)
    image[:, 30:33] = 210
    truth = np.zeros((2, 64, 64), np.float32)
    truth[0], truth[1, :, 30:33] = 1.0, 1.0
    truth[0, :, 30:33] = 0.0
    coarse = truth.reshape(2, 16, 4, 16, 4).mean((2, 4))
    target = truth.argmax(0)
    bilinear_wrong = np.sum(resize_scores_np(coarse, (64, 64)).argmax(0) != target)
    up = edge_aware_upsample(coarse, image)
    assert bilinear_wrong >= 64 * 2  # at least two of the line's three columns lost
    assert np.sum(up.argmax(0) != target) < bilinear_wrong / 4
    # The filter is linear in the scores and maps a constant to itself: scores summing to 1
    # per pixel still do (float32 rounding of a few terms ~ 1e-6).
    np.testing.assert_allclose(up.sum(0), 1.0, atol=1e-5)


def resize_scores_np(scores, shape):
    from napari_wsss.refine._utils import resize_scores

    return resize_scores(scores, shape)


def test_bad_seed_maps_are_reported():
    image = _two_region_image()
    cams = np.ones((1, 60, 80), np.float32)
    with pytest.raises(ValueError, match="seed map: expected shape"):
        seeded_refine(image, cams, [0], np.full((10, 10), NOT_PAINTED, np.uint8))
    with pytest.raises(ValueError, match="gamma"):
        seeded_random_walk(image, np.ones((1, 60, 80)), np.full((60, 80), -1), gamma=0.0)
