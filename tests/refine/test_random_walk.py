import numpy as np
import pytest
import torch

from napari_wsss.refine import (
    AffinityGraph,
    build_affinity,
    colour_affinity,
    feature_affinity,
    pair_indices,
    pair_offsets,
    random_walk,
    random_walk_refine,
)


def _dense_walk(weight, shape, radius, scores, beta, t):
    """Reference: dense W over all pixel pairs closer than radius, T = D^-1 W^beta, T^t M."""
    h, w = shape
    n = h * w
    coords = [(i // w, i % w) for i in range(n)]
    W = np.eye(n)
    for i in range(n):
        for j in range(n):
            d2 = (coords[i][0] - coords[j][0]) ** 2 + (coords[i][1] - coords[j][1]) ** 2
            if 0 < d2 < radius * radius:
                W[i, j] = weight(i, j)
    Wb = W**beta
    T = Wb / Wb.sum(axis=1, keepdims=True)
    Tt = np.linalg.matrix_power(T, t)
    flat = scores.reshape(scores.shape[0], -1).astype(np.float64)
    return (Tt @ flat.T).T.reshape(scores.shape)


def test_pair_indices_are_every_unordered_pair_within_radius_once():
    h, w, r = 7, 9, 4
    ind_from, ind_to = pair_indices((h, w), r)
    got = {tuple(sorted(p)) for p in zip(ind_from.tolist(), ind_to.tolist())}
    want = set()
    for i in range(h * w):
        for j in range(i + 1, h * w):
            if 0 < (i // w - j // w) ** 2 + (i % w - j % w) ** 2 < r * r:
                want.add((i, j))
    assert got == want
    assert len(ind_from) == len(want)  # no duplicates
    assert len(pair_offsets(5)) == 34  # 68 neighbours per interior pixel at radius 5


def test_colour_walk_matches_dense_reference():
    rng = np.random.default_rng(0)
    shape, radius, srgb, beta, t = (9, 11), 3, 40.0, 8.0, 256
    img = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    img[:, 6:] //= 3  # two regions, so the walk has structure to follow
    scores = rng.uniform(0, 1, (3, *shape)).astype(np.float32)
    flat = img.reshape(-1, 3).astype(np.float64)

    def weight(i, j):
        return np.exp(-((flat[i] - flat[j]) ** 2).sum() / (2 * srgb**2))

    ref = _dense_walk(weight, shape, radius, scores, beta, t)
    got = random_walk(scores, colour_affinity(img, radius=radius, srgb=srgb, device="cpu"), beta=beta, t=t)
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    assert not np.allclose(ref, scores, atol=1e-2)  # the walk did something


def test_feature_walk_matches_dense_reference_for_both_metrics():
    rng = np.random.default_rng(1)
    shape, radius, beta, t = (6, 7), 3, 3.0, 20
    feats = rng.normal(0, 1, (5, *shape)).astype(np.float32)
    scores = rng.uniform(0, 1, (2, *shape)).astype(np.float32)
    flat = feats.reshape(5, -1).T.astype(np.float64)

    def l1(i, j):
        return np.exp(-np.abs(flat[i] - flat[j]).mean())

    def cosine(i, j):
        c = flat[i] @ flat[j] / (np.linalg.norm(flat[i]) * np.linalg.norm(flat[j]))
        return max(c, 0.0)

    for metric, weight in (("l1", l1), ("cosine", cosine)):
        graph = feature_affinity(feats, radius=radius, metric=metric, device="cpu")
        ref = _dense_walk(weight, shape, radius, scores, beta, t)
        np.testing.assert_allclose(random_walk(scores, graph, beta=beta, t=t), ref, atol=1e-5, rtol=0)


def test_transition_is_row_normalised_hadamard_power_and_t0_is_identity():
    rng = np.random.default_rng(2)
    shape, radius, beta = (5, 6), 3, 8.0
    ind_from, ind_to = pair_indices(shape, radius)
    weights = rng.uniform(0, 1, len(ind_from))
    graph = AffinityGraph.from_pair_weights(shape, radius, torch.from_numpy(weights))
    W = np.eye(30)
    W[ind_from, ind_to] = weights
    W[ind_to, ind_from] = weights
    expected = W**beta / (W**beta).sum(1, keepdims=True)
    T = graph.transition(beta).to_dense().numpy()
    np.testing.assert_allclose(T, expected, atol=1e-12)
    np.testing.assert_allclose(T.sum(1), 1.0, atol=1e-12)
    scores = rng.uniform(0, 1, (2, *shape)).astype(np.float32)
    np.testing.assert_array_equal(random_walk(scores, graph, t=0), scores)


def test_walk_fills_an_object_from_a_partial_seed_with_colour_affinity():
    rng = np.random.default_rng(3)
    h, w = 48, 64
    yy, xx = np.mgrid[:h, :w]
    obj = ((yy - 24) / 16.0) ** 2 + ((xx - 34) / 22.0) ** 2 < 1  # an ellipse
    img = np.where(obj[..., None], [190, 70, 60], [60, 120, 70]).astype(np.float64)
    img = np.clip(img + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8)
    cam = np.zeros((1, h, w), np.float32)
    cam[0, 16:32, 18:30] = 1.0  # a discriminative part: the left third of the object
    cam[0] *= obj
    before = random_walk_refine(cam, [4], colour_affinity(img, radius=5, device="cpu"),
                                background=0, bg_method="threshold", threshold=0.2, t=0)
    after = random_walk_refine(cam, [4], colour_affinity(img, radius=5, device="cpu"),
                               background=0, bg_method="threshold", threshold=0.2)
    iou_before = _iou(before.mask == 4, obj)
    iou_after = _iou(after.mask == 4, obj)
    assert iou_before < 0.25
    assert iou_after > 0.95, (iou_before, iou_after)
    assert after.classes.tolist() == [0, 4] and after.mask.dtype == np.uint8


def test_walk_without_background_splits_regions_from_two_seeds_at_low_resolution():
    rng = np.random.default_rng(4)
    h, w = 64, 64
    yy, xx = np.mgrid[:h, :w]
    left = xx < 24 + 8 * np.sin(yy / 7.0)  # a wavy boundary
    img = np.where(left[..., None], [30, 30, 160], [170, 160, 40]).astype(np.float64)
    img = np.clip(img + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8)
    cams = np.zeros((2, h, w), np.float32)
    cams[0, 28:36, 4:12] = 1.0  # inside the left region
    cams[1, 20:44, 44:60] = 1.0  # inside the right region
    graph = colour_affinity(img, (32, 32), radius=5, device="cpu")
    res = random_walk_refine(cams, [7, 2], graph, background=None)
    assert res.mask.shape == (h, w) and set(np.unique(res.mask).tolist()) == {2, 7}
    assert _iou(res.mask == 7, left) > 0.9
    assert _iou(res.mask == 2, ~left) > 0.9


def test_build_affinity_falls_back_from_features_to_colour():
    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    feats = rng.normal(0, 1, (4, 3, 4)).astype(np.float32)
    from_feats = build_affinity(img, features=feats, radius=2, device="cpu")
    assert from_feats.shape == (3, 4)
    torch.testing.assert_close(from_feats.weights, feature_affinity(feats, radius=2, metric="cosine").weights)
    from_colour = build_affinity(img, shape=(6, 8), radius=3, device="cpu")
    assert from_colour.shape == (6, 8)
    torch.testing.assert_close(from_colour.weights, colour_affinity(img, (6, 8), radius=3, device="cpu").weights)


def test_bad_walk_parameters_are_errors():
    graph = AffinityGraph.from_pair_weights((4, 4), 2, torch.ones(len(pair_indices((4, 4), 2)[0])))
    with pytest.raises(ValueError, match="beta must be positive"):
        random_walk(np.ones((1, 4, 4)), graph, beta=0)
    with pytest.raises(ValueError, match="non-negative integer"):
        random_walk(np.ones((1, 4, 4)), graph, t=2.5)
    with pytest.raises(ValueError, match="l1, cosine"):
        feature_affinity(np.ones((3, 4, 4)), metric="l2")
    with pytest.raises(ValueError, match="integer >= 2"):
        pair_offsets(1)


def _iou(a, b):
    return np.logical_and(a, b).sum() / np.logical_or(a, b).sum()
