import numpy as np
import pytest

from napari_wsss.refine import confident_labels, downsample_labels, pair_targets


def test_background_project_labels_follow_the_two_powers():
    # max CAM 0.5: fg under alpha 4 (0.5 > 0.5^4)            -> class 6
    # max CAM 0.15: bg under alpha 4 (0.85^4 = 0.52 > 0.15), fg under alpha 32 (0.85^32 = 0.0055) -> 255
    # max CAM 0.02: bg under alpha 32 (0.98^32 = 0.52 > 0.02) -> background 0
    # class 8 beats class 6 where its CAM is larger
    cams = np.array([[[0.5, 0.15, 0.02, 0.3]], [[0.1, 0.0, 0.0, 0.9]]], np.float32)
    labels = confident_labels(cams, [6, 8], background=0)
    np.testing.assert_array_equal(labels, [[6, 255, 0, 8]])
    assert labels.dtype == np.uint8


def test_background_project_with_crf_keeps_confident_regions_on_an_image():
    rng = np.random.default_rng(0)
    truth = np.zeros((40, 40), bool)
    truth[10:30, 10:30] = True
    img = np.where(truth[..., None], [200, 60, 60], [50, 50, 140]).astype(np.float64)
    img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    cam = np.zeros((1, 40, 40), np.float32)
    cam[0, 14:26, 14:26] = 1.0
    labels = confident_labels(cam, [3], background=0, image=img)
    assert (labels[14:26, 14:26] == 3).all()
    assert (labels[:5] == 0).all()
    assert set(np.unique(labels).tolist()) <= {0, 3, 255}


def test_no_background_labels_need_one_high_label_and_all_others_low():
    cams = np.array(
        [[[0.8, 0.8, 0.2, 0.04]], [[0.01, 0.2, 0.0, 0.9]]],
        np.float32,
    )
    labels = confident_labels(cams, [4, 9], background=None)
    np.testing.assert_array_equal(labels, [[4, 255, 255, 9]])


def test_no_background_with_crf_labels_where_crf_and_cam_agree_leaving_negative_pairs():
    # Red left half (x < 20), blue right half; the CAMs cross over at x = 26, not at the edge.
    rng = np.random.default_rng(0)
    img = np.zeros((30, 40, 3))
    img[:, :20] = (200, 40, 40)
    img[:, 20:] = (40, 40, 200)
    img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    x = np.arange(40, dtype=np.float32)
    left = 1 / (1 + np.exp((x - 26) / 3))
    cams = np.stack([np.broadcast_to(left, (30, 40)), np.broadcast_to(1 - left, (30, 40))]).astype(np.float32)
    cams /= cams.max(axis=(1, 2), keepdims=True)
    labels = confident_labels(cams, [2, 7], background=None, image=img)
    assert (labels[:, :18] == 2).all() and (labels[:, 28:] == 7).all()
    # Between the colour edge and the CAM crossover the CRF says 7 and the CAMs say 2.
    assert (labels[:, 21:25] == 255).all()
    # The band used alone (no image) leaves no class pair within 8 pixels; the CRF labels do.
    assert pair_targets(confident_labels(cams, [2, 7], background=None), 8).neg.sum() == 0
    assert pair_targets(labels, 8).neg.sum() > 0


def test_unnormalised_cams_are_rejected_in_both_kinds_of_project():
    for background in (0, None):
        with pytest.raises(ValueError, match="normalised"):
            confident_labels(np.full((2, 2, 2), 5.0, np.float32), [3, 4], background=background)


def test_single_label_without_background_is_that_label_everywhere():
    labels = confident_labels(np.zeros((1, 3, 4), np.float32), [12], background=None)
    np.testing.assert_array_equal(labels, np.full((3, 4), 12, np.uint8))


def test_corrections_override_cam_labels():
    cams = np.array([[[0.9, 0.9, 0.0]]], np.float32)
    corr = np.array([[255, 2, 0]], np.uint8)
    np.testing.assert_array_equal(confident_labels(cams, [5], background=0, corrections=corr), [[5, 2, 0]])
    with pytest.raises(ValueError, match="corrections"):
        confident_labels(cams, [5], background=0, corrections=np.zeros((2, 2), np.uint8))


def test_downsample_labels_majority_vote():
    labels = np.array(
        [
            [1, 1, 2, 2],
            [1, 3, 2, 255],
            [255, 255, 0, 0],
            [255, 1, 0, 2],
        ],
        np.uint8,
    )
    np.testing.assert_array_equal(downsample_labels(labels, (2, 2)), [[1, 2], [255, 0]])


def test_pair_targets_on_a_hand_worked_grid():
    # 1 x 3 grid, radius 2: the only offset that fits is (0, 1): pairs (0,1), (1,2)
    t = pair_targets(np.array([[0, 0, 3]], np.uint8), 2, background=0)
    np.testing.assert_array_equal(t.bg_pos.numpy(), [[1, 0]])
    np.testing.assert_array_equal(t.fg_pos.numpy(), [[0, 0]])
    np.testing.assert_array_equal(t.neg.numpy(), [[0, 1]])
    t = pair_targets(np.array([[3, 3, 255]], np.uint8), 2, background=0)
    np.testing.assert_array_equal(t.fg_pos.numpy(), [[1, 0]])
    np.testing.assert_array_equal(t.neg.numpy(), [[0, 0]])
    # without background, same-label pairs of class 0 are foreground-positive
    t = pair_targets(np.array([[0, 0, 3]], np.uint8), 2, background=None)
    np.testing.assert_array_equal(t.bg_pos.numpy(), [[0, 0]])
    np.testing.assert_array_equal(t.fg_pos.numpy(), [[1, 0]])


def test_pair_target_counts_on_a_two_region_grid():
    # 2 x 2 grid, radius 2: offsets (0,1), (1,-1), (1,0), (1,1) -> 6 pairs, all pixels adjacent.
    labels = np.array([[[0, 0], [4, 4]]], np.uint8)
    t = pair_targets(labels, 2, background=0)
    assert t.bg_pos.shape == (1, 6)
    assert (t.bg_pos.sum().item(), t.fg_pos.sum().item(), t.neg.sum().item()) == (1, 1, 4)
