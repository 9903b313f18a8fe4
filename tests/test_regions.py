"""Region tools: region under a point, fill, accept all but a class, erase a class."""

import numpy as np
import pytest

from napari_wsss.regions import accept_all_but, erase_class, fill_region, region_at, superpixels


def test_segment_region_is_the_connected_component_under_the_point():
    prop = np.zeros((6, 8), np.uint8)
    prop[1:3, 1:3] = 2  # component A
    prop[4:6, 5:8] = 2  # component B, same class, not connected
    reg = region_at((1.4, 2.2), mode="segment", proposal=prop)
    assert reg.sum() == 4 and reg[1:3, 1:3].all()
    assert not reg[4:, 5:].any()
    corr = np.full(prop.shape, 255, np.uint8)
    filled = fill_region(corr, reg, 5)
    assert np.all(filled[1:3, 1:3] == 5) and np.count_nonzero(filled != 255) == 4
    assert np.all(corr == 255)  # input unchanged


def test_superpixel_region_follows_the_image():
    image = np.zeros((40, 40, 3), np.uint8)
    image[:, 20:] = 255
    seg = superpixels(image, n_segments=4, compactness=0.1)
    reg = region_at((10, 30), mode="superpixel", segments=seg)
    assert reg[10, 30] and not reg[:, :20].any()  # never crosses the black/white edge
    with pytest.raises(ValueError, match="outside"):
        region_at((50, 1), mode="superpixel", segments=seg)


def test_accept_all_but_and_erase():
    prop = np.array([[0, 1, 2], [1, 1, 0]], np.uint8)
    corr = np.array([[255, 254, 255], [3, 255, 255]], np.uint8)
    got = accept_all_but(prop, corr, 1)
    np.testing.assert_array_equal(got, [[0, 254, 2], [3, 255, 0]])
    np.testing.assert_array_equal(accept_all_but(prop, corr, [0, 2]), [[255, 254, 255], [3, 1, 255]])
    np.testing.assert_array_equal(erase_class(got, 0), [[255, 254, 2], [3, 255, 255]])
