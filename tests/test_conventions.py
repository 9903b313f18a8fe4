import numpy as np
import pytest

from napari_wsss.conventions import class_to_layer, layer_to_class


def test_round_trip_and_values():
    mask = np.array([[0, 1, 255], [3, 255, 0]], dtype=np.uint8)
    layer = class_to_layer(mask)
    assert layer.tolist() == [[1, 2, 0], [4, 0, 1]]
    assert layer.dtype == np.uint8
    back = layer_to_class(layer)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, mask)


def test_painted_ignore_and_last_class():
    # stored 254 (painted "ignore") <-> layer 255; the last class 253 <-> layer 254
    mask = np.array([[254, 253, 255]], dtype=np.uint8)
    assert class_to_layer(mask).tolist() == [[255, 254, 0]]
    np.testing.assert_array_equal(layer_to_class(class_to_layer(mask)), mask)


def test_layer_to_class_accepts_wider_ints():
    assert layer_to_class(np.array([[0, 5]], dtype=np.int32)).tolist() == [[255, 4]]


def test_bad_input():
    with pytest.raises(TypeError, match="uint8"):
        class_to_layer(np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="0..255"):
        layer_to_class(np.array([[256]], dtype=np.int32))


def test_class_limit_is_the_same_everywhere():
    """254 classes (0..253) fit every consumer; a 255th would collide with painted ignore."""
    from napari_wsss.colors import class_colors
    from napari_wsss.conventions import IGNORE_PAINTED, MAX_CLASSES
    from napari_wsss.refine._utils import check_classes

    assert MAX_CLASSES == IGNORE_PAINTED == 254
    for bg in (0, None):
        assert class_colors(MAX_CLASSES, background=bg).shape == (MAX_CLASSES, 3)
        with pytest.raises(ValueError, match="0..254"):
            class_colors(MAX_CLASSES + 1, background=bg)
    assert check_classes([MAX_CLASSES - 1], 1).tolist() == [253]
    with pytest.raises(ValueError, match="0..253"):
        check_classes([IGNORE_PAINTED], 1)
