import numpy as np
import pytest

from napari_wsss.refine import labels_from_scores, scores_with_background


def _cams():
    cams = np.zeros((2, 2, 3), np.float32)
    cams[0] = [[0.5, 0.0, 1.0], [0.25, 0.0, 0.1]]
    cams[1] = [[0.2, 0.0, 0.3], [0.75, 0.5, 0.1]]
    return cams


def test_power_background_is_first_slice_with_hand_values():
    scores, classes = scores_with_background(_cams(), [4, 9], background=0, alpha=2.0)
    assert classes.tolist() == [0, 4, 9]
    # max over classes: [[0.5, 0, 1], [0.75, 0.5, 0.1]] -> (1 - max)^2
    expected_bg = np.array([[0.25, 1.0, 0.0], [0.0625, 0.25, 0.81]], np.float32)
    np.testing.assert_allclose(scores[0], expected_bg, rtol=1e-6)
    np.testing.assert_array_equal(scores[1:], _cams())
    assert scores.dtype == np.float32


def test_threshold_background_is_constant():
    scores, classes = scores_with_background(_cams(), [4, 9], background=0, method="threshold", threshold=0.3)
    assert classes.tolist() == [0, 4, 9]
    np.testing.assert_array_equal(scores[0], np.full((2, 3), 0.3, np.float32))


def test_no_background_keeps_cams_and_classes():
    scores, classes = scores_with_background(_cams(), [4, 9], background=None)
    assert classes.tolist() == [4, 9]
    np.testing.assert_array_equal(scores, _cams())


def test_background_project_with_no_labels_is_all_background():
    scores, classes = scores_with_background(np.zeros((0, 2, 2)), [], background=0)
    assert classes.tolist() == [0]
    np.testing.assert_array_equal(scores, np.ones((1, 2, 2), np.float32))


def test_bad_inputs_give_clear_errors():
    with pytest.raises(ValueError, match="background index 0"):
        scores_with_background(_cams(), [0, 9], background=0)
    with pytest.raises(ValueError, match="power, threshold"):
        scores_with_background(_cams(), [4, 9], background=0, method="median")
    with pytest.raises(ValueError, match=r"normalised to \[0, 1\]"):
        scores_with_background(_cams() * 3, [4, 9], background=0)
    with pytest.raises(ValueError, match="at least one label"):
        scores_with_background(np.zeros((0, 2, 2)), [], background=None)
    with pytest.raises(ValueError, match="2 class indices for 3"):
        scores_with_background(np.zeros((3, 2, 2)), [1, 2], background=None)


def test_labels_from_scores_maps_to_project_indices_with_void():
    scores = np.array([[[0.9, 0.1], [0.4, 0.5]], [[0.1, 0.8], [0.45, 0.5]]], np.float32)
    mask = labels_from_scores(scores, [0, 7])
    # pixel (1, 1) is a tie: the first slice wins
    np.testing.assert_array_equal(mask, np.array([[0, 7], [7, 0]], np.uint8))
    assert mask.dtype == np.uint8
    void = np.array([[False, True], [False, False]])
    np.testing.assert_array_equal(labels_from_scores(scores, [0, 7], void=void), [[0, 255], [7, 0]])
    np.testing.assert_array_equal(labels_from_scores(scores, [0, 7], min_score=0.47), [[0, 7], [255, 0]])
