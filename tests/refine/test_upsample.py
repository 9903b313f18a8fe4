import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_wsss.refine.upsample import Guide, area_downsample, edge_aware_upsample, upsample_labels, working_shape


def _step_image(rng, shape, edge_col):
    """Dark left, bright right of column ``edge_col``, light noise."""
    img = np.zeros((*shape, 3), np.float64)
    img[:, edge_col:] = (210, 190, 90)
    img[:, :edge_col] = (30, 50, 110)
    img += rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _first_fg_col(labels):
    return np.array([int(np.argmax(row == 1)) for row in labels])


def test_edge_aware_puts_a_step_edge_within_one_pixel_where_bilinear_is_off():
    # Full 240 x 400, scores at 1/8 (30 x 50): the hard label map a CRF gives at the working
    # resolution. Low-res pixel 25 covers columns 200..207 and is mostly (5/8) right of the
    # edge at 203, so it is foreground; pixel 24 (192..199) is background. Bilinear
    # upsampling crosses 0.5 half-way between their centres 196 and 204, i.e. at column 200:
    # 3 px off. The guided filter puts it at the colour edge.
    rng = np.random.default_rng(0)
    h, w, edge = 240, 400, 203
    img = _step_image(rng, (h, w), edge)
    fg = np.zeros((30, 50), np.float32)
    fg[:, 25:] = 1.0
    scores = np.stack([1 - fg, fg])
    bilinear = _first_fg_col(upsample_labels(scores, [0, 1], shape=(h, w)))
    guided = _first_fg_col(upsample_labels(scores, [0, 1], img))
    assert np.all(np.abs(bilinear - edge) == 3)
    assert np.all(np.abs(guided - edge) <= 1), np.unique(guided)


def test_edge_aware_follows_a_diagonal_edge():
    # Edge x = 0.6 y + 50 on a 256 x 256 image, scores at 1/8 binarised at each low-res
    # pixel's centre: the guided boundary stays within 1 px on every row, bilinear's does not.
    rng = np.random.default_rng(1)
    n, f = 256, 8
    yy, xx = np.mgrid[:n, :n]
    truth = xx >= 0.6 * yy + 50
    img = np.where(truth[..., None], [200, 60, 60], [40, 90, 200]).astype(np.float64)
    img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    cy, cx = np.mgrid[:n // f, :n // f] * f + (f - 1) / 2
    fg = (cx >= 0.6 * cy + 50).astype(np.float32)
    scores = np.stack([1 - fg, fg])
    edge = np.ceil(0.6 * np.arange(n) + 50)
    guided = _first_fg_col(upsample_labels(scores, [3, 1], img, radius=2))
    bilinear = _first_fg_col(upsample_labels(scores, [3, 1], shape=(n, n)))
    assert np.abs(guided - edge).max() <= 1
    assert np.abs(bilinear - edge).max() >= 3


def test_bilinear_labels_match_interpolate_and_tiles_do_not_change_anything():
    rng = np.random.default_rng(2)
    scores = rng.random((4, 23, 31)).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(scores)[None], size=(157, 203), mode="bilinear",
                        align_corners=False)[0].numpy()
    got = upsample_labels(scores, [7, 2, 9, 4], shape=(157, 203), tile=50)
    want = np.array([7, 2, 9, 4], np.uint8)[ref.argmax(0)]
    # Our sampling positions are computed in float64, torch's in float32: a label may
    # differ only where the two best upsampled scores are within float32 rounding.
    top2 = np.sort(ref, 0)[-2:]
    assert np.all((got == want) | (top2[1] - top2[0] < 1e-5))
    img = rng.integers(0, 256, (157, 203, 3), dtype=np.uint8)
    one = edge_aware_upsample(scores, img, tile=4096)
    np.testing.assert_array_equal(edge_aware_upsample(scores, img, tile=37), one)
    np.testing.assert_array_equal(upsample_labels(scores, [7, 2, 9, 4], img, tile=37),
                                  np.array([7, 2, 9, 4], np.uint8)[one.argmax(0)])


def test_constant_scores_stay_constant_and_grayscale_guides_work():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 65535, (90, 120), dtype=np.uint16)  # grayscale, 16 bit
    scores = np.stack([np.full((9, 12), 0.25), np.full((9, 12), 0.75)]).astype(np.float32)
    up = edge_aware_upsample(scores, img)
    assert up.shape == (2, 90, 120) and up.dtype == np.float32
    # Zero covariance with the guide: a = 0, b = the constant. The coefficients are float32:
    # the window covariance carries ~1e-7 of rounding, which the inverse colour covariance
    # (at most 1 / eps = 1e3 along the grey guide's flat colour directions) amplifies to
    # |a| <= 1e-4 per channel, times colours <= 1 in 3 channels: 3e-4.
    np.testing.assert_allclose(up, np.broadcast_to(scores[:, :1, :1], up.shape), atol=3e-4)


def test_area_downsample_matches_area_interpolation():
    rng = np.random.default_rng(4)
    img = rng.integers(0, 256, (301, 411, 3), dtype=np.uint8)
    ref = F.interpolate(torch.from_numpy(img).permute(2, 0, 1)[None].float(), size=(37, 53),
                        mode="area")[0].permute(1, 2, 0).numpy()
    got = area_downsample(img, (37, 53), band=17)
    assert got.dtype == np.uint8 and got.shape == (37, 53, 3)
    # Summation order differs (separable, in bands): only values within float32 rounding of
    # a .5 may round the other way.
    diff = np.abs(got.astype(np.float64) - np.rint(ref))
    assert diff.max() <= 1 and np.all((diff == 0) | (np.abs(ref % 1 - 0.5) < 1e-3))


@pytest.mark.parametrize("bad", [dict(shape=(10, 10)), dict(eps=0.0)])
def test_bad_arguments_say_what_is_wrong(bad):
    img = np.zeros((20, 20, 3), np.uint8)
    scores = np.ones((1, 5, 5), np.float32)
    with pytest.raises(ValueError, match="shape|eps"):
        upsample_labels(scores, [0], img, **bad)


def test_working_shape():
    assert working_shape(12000, 12000, 1024) == (1024, 1024)
    assert working_shape(2000, 3000, 1024) == (683, 1024)
    assert working_shape(800, 600, 1024) == (800, 600)
    assert working_shape(5000, 4000, None) == (5000, 4000)


def test_a_guide_is_reused_for_several_score_stacks_of_one_image():
    rng = np.random.default_rng(5)
    img = _step_image(rng, (120, 200), 77)
    a, b = rng.random((2, 15, 25)).astype(np.float32), rng.random((3, 15, 25)).astype(np.float32)
    guide = Guide(img, (15, 25), radius=3, eps=1e-2)
    np.testing.assert_array_equal(edge_aware_upsample(a, guide), edge_aware_upsample(a, img, radius=3, eps=1e-2))
    np.testing.assert_array_equal(upsample_labels(b, [0, 1, 2], guide),
                                  upsample_labels(b, [0, 1, 2], img, radius=3, eps=1e-2))
    with pytest.raises(ValueError, match="guide's score shape"):
        upsample_labels(rng.random((2, 16, 25)).astype(np.float32), [0, 1], guide)
