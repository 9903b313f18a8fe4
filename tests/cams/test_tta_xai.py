"""Test-time augmentation and masked-input confidences on models whose CAM is known."""

import numpy as np
import pytest
import torch

from cams_helpers import FirstChannelCAM, seeded_images
from napari_wsss import cams


def test_flip_views_are_unflipped_before_merging():
    # CAM of class 0 is the first input channel, of class 1 its negative: the
    # flipped view's map, un-flipped, is the original channel again.
    model = FirstChannelCAM().eval()
    x = seeded_images(2, 8, seed=9)
    x0 = x[:, 0]
    out = cams.compute_tta(model, x, [[0, 1], [1]], method="cam", scales=(1.0,), flip=True, merge="sum")
    torch.testing.assert_close(out[0, 0], 2 * torch.relu(x0[0]))
    torch.testing.assert_close(out[0, 1], 2 * torch.relu(-x0[0]))
    torch.testing.assert_close(out[1, 0], 2 * torch.relu(-x0[1]))
    assert torch.all(out[1, 1] == 0)
    for merge in ("max", "mean"):
        m = cams.compute_tta(model, x, [[0, 1], [1]], method="cam", scales=(1.0,), flip=True, merge=merge)
        torch.testing.assert_close(m[0, 0], torch.relu(x0[0]))
    raw = cams.compute_tta(model, x, [[0], [0]], method="cam", scales=(1.0,), flip=False, relu=False)
    torch.testing.assert_close(raw[:, 0], x0)


def test_scales_are_resized_to_a_common_size_and_summed():
    model = FirstChannelCAM().eval()
    x = torch.zeros(2, 3, 8, 12)
    x[0, 0] = 0.7
    x[1, 0] = -0.3
    out = cams.compute_tta(model, x, [[0, 1], [0, 1]], method="cam", scales=(1.0, 0.5, 1.5), flip=True)
    assert out.shape == (2, 2, 8, 12)
    # 3 scales x 2 flips of a constant map.
    torch.testing.assert_close(out[0], torch.stack([torch.full((8, 12), 6 * 0.7), torch.zeros(8, 12)]))
    torch.testing.assert_close(out[1], torch.stack([torch.zeros(8, 12), torch.full((8, 12), 6 * 0.3)]))
    small = cams.compute_tta(model, x, [[0], [0]], method="cam", scales=(2.0,), flip=False, size=(4, 6), merge="max")
    assert small.shape == (2, 1, 4, 6)
    torch.testing.assert_close(small[0, 0], torch.full((4, 6), 0.7))


def test_tta_rejects_unknown_merge_and_bad_scales():
    model = FirstChannelCAM().eval()
    with pytest.raises(ValueError, match="valid: sum, mean, max"):
        cams.compute_tta(model, seeded_images(1, 8), [[0]], method="cam", merge="median")
    with pytest.raises(ValueError, match="positive"):
        cams.compute_tta(model, seeded_images(1, 8), [[0]], method="cam", scales=(1.0, 0.0))


def test_masked_confidences_on_a_hand_computed_case():
    # logit_0 = mean of channel 0, logit_1 = -logit_0; channel 0 is 2 everywhere and
    # the map keeps the left half: both x*M and x*(1-M) have logit_0 = 1.
    model = FirstChannelCAM().eval()
    x = torch.zeros(1, 3, 4, 4)
    x[0, 0] = 2.0
    maps = torch.zeros(1, 2, 4, 4)
    maps[0, 0, :, :2] = 1.0
    maps[0, 1] = 0.25  # second target keeps a quarter everywhere
    p, o, o_inv = cams.masked_confidences(model, x, maps, [[0, 1]])
    s = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    np.testing.assert_allclose(p, [[s(2.0), s(-2.0)]])
    np.testing.assert_allclose(o[0, 0], [s(1.0), s(-1.0)])
    np.testing.assert_allclose(o_inv[0, 0], [s(1.0), s(-1.0)])
    np.testing.assert_allclose(o[0, 1], [s(0.5), s(-0.5)])
    np.testing.assert_allclose(o_inv[0, 1], [s(1.5), s(-1.5)])
    with pytest.raises(ValueError, match="normalise"):
        cams.masked_confidences(model, x, maps * 3, [[0, 1]])
