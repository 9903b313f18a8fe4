"""XAI metrics (MinMax-CAM paper definitions) on cases worked out by hand."""

import numpy as np
import pytest

from napari_wsss.metrics import (
    average_drop,
    average_drop_of_others,
    average_retention,
    average_retention_of_others,
    increase_in_confidence,
    xai_scores,
)

# Three images, three classes; image 0 explains labels 0 and 1, image 1 label 2, image 2 label 0.
P = np.array([[0.8, 0.5, 0.1], [0.4, 0.9, 0.6], [0.5, 0.2, 0.2]])
TARGETS = [[0, 1], [2], [0]]
NAN = np.nan
O = np.array(  # confidences on x * M (slot k = k-th target)
    [
        [[0.6, 0.25, 0.3], [0.2, 0.7, 0.1]],
        [[0.1, 0.9, 0.9], [NAN, NAN, NAN]],
        [[0.75, 0.2, 0.2], [NAN, NAN, NAN]],
    ]
)
O_INV = np.array(  # confidences on x * (1 - M)
    [
        [[0.2, 0.5, 0.1], [0.6, 0.1, 0.1]],
        [[0.4, 0.9, 0.3], [NAN, NAN, NAN]],
        [[0.1, 0.2, 0.2], [NAN, NAN, NAN]],
    ]
)


def test_increase_in_confidence():
    # Pairs (image, label): (0,0) 0.6 < 0.8 no; (0,1) 0.7 > 0.5 yes; (1,2) 0.9 > 0.6 yes; (2,0) 0.75 > 0.5 yes.
    np.testing.assert_allclose(increase_in_confidence(P, O, TARGETS, per_class=True), [50, 100, 100])
    assert increase_in_confidence(P, O, TARGETS) == pytest.approx(250 / 3)
    assert increase_in_confidence(P, O, TARGETS, average="sample") == pytest.approx(75)


def test_average_drop():
    # (0,0): (0.8 - 0.6) / 0.8 = 25 %; the three others rose: 0.
    np.testing.assert_allclose(average_drop(P, O, TARGETS, per_class=True), [12.5, 0, 0])
    assert average_drop(P, O, TARGETS) == pytest.approx(12.5 / 3)
    assert average_drop(P, O, TARGETS, average="sample") == pytest.approx(6.25)


def test_average_drop_of_others():
    # (0,0): other label 1 drops (0.5 - 0.25) / 0.5 = 50 %; (0,1): label 0 drops (0.8 - 0.2) / 0.8 = 75 %;
    # images 1 and 2 have a single label: 0.
    np.testing.assert_allclose(average_drop_of_others(P, O, TARGETS, per_class=True), [25, 75, 0])
    assert average_drop_of_others(P, O, TARGETS) == pytest.approx(100 / 3)
    assert average_drop_of_others(P, O, TARGETS, average="sample") == pytest.approx(31.25)


def test_average_retention():
    # Drops of the explained label with the map removed: 75, 80, 50, 80 %.
    np.testing.assert_allclose(average_retention(P, O_INV, TARGETS, per_class=True), [77.5, 80, 50])
    assert average_retention(P, O_INV, TARGETS) == pytest.approx(207.5 / 3)
    assert average_retention(P, O_INV, TARGETS, average="sample") == pytest.approx(71.25)


def test_average_retention_of_others():
    # (0,0): label 1 stays at 0.5: 0; (0,1): label 0 drops (0.8 - 0.6) / 0.8 = 25 %.
    np.testing.assert_allclose(average_retention_of_others(P, O_INV, TARGETS, per_class=True), [0, 25, 0])
    assert average_retention_of_others(P, O_INV, TARGETS) == pytest.approx(25 / 3)


def test_others_are_averaged_over_the_other_labels_and_rises_count_as_zero():
    p = np.array([[0.5, 0.4, 0.8, 0.9]])
    o = np.array([[[0.9, 0.2, 0.4, 0.0], [0.5, 0.9, 0.8, 0.0], [0.6, 0.1, 0.9, 0.0]]])
    per = average_drop_of_others(p, o, [[0, 1, 2]], per_class=True)
    # c=0: (0.2/0.4 + 0.4/0.8) / 2 = 50 %; c=1: no drop; c=2: (0 + 0.3/0.4) / 2 = 37.5 %; label 3 never explained.
    np.testing.assert_allclose(per[:3], [50, 0, 37.5])
    assert np.isnan(per[3])


def test_multi_hot_targets_and_summary():
    hot = np.zeros((3, 3), dtype=int)
    hot[0, [0, 1]] = 1
    hot[1, 2] = 1
    hot[2, 0] = 1
    s = xai_scores(P, O, O_INV, hot)
    assert s.increase_in_confidence == pytest.approx(250 / 3)
    assert s.average_drop == pytest.approx(12.5 / 3)
    assert s.average_drop_of_others == pytest.approx(100 / 3)
    assert s.average_retention == pytest.approx(207.5 / 3)
    assert s.average_retention_of_others == pytest.approx(25 / 3)
    assert set(s.as_dict()) == {"IC%", "AD%", "ADO%", "AR%", "ARO%"}


def test_bad_inputs_are_explained():
    with pytest.raises(ValueError, match="confidence of label 0 is 0.0"):
        average_drop(np.array([[0.0, 0.5]]), np.ones((1, 1, 2)), [[0]])
    with pytest.raises(ValueError, match=r"\(N=3, K>=2, C=3\)"):
        average_drop(P, O[:, :1], TARGETS)
    with pytest.raises(ValueError, match="outside 0..2"):
        average_drop(P, O, [[0, 3], [2], [0]])
    with pytest.raises(ValueError, match="valid: 'class', 'sample'"):
        average_drop(P, O, TARGETS, average="macro")
    with pytest.raises(ValueError, match="multi-hot"):
        average_drop(P, O, np.array([[0, 2, 0], [0, 0, 1], [1, 0, 0]]))
