import numpy as np
import pydensecrf.densecrf as dcrf
import pytest
from scipy import ndimage

from napari_wsss.refine import crf_refine, dense_crf


def _iou(a, b):
    return np.logical_and(a, b).sum() / np.logical_or(a, b).sum()


def _two_region_image(rng, shape=(48, 64)):
    """Dark background with a bright rectangle (the true mask), light noise."""
    truth = np.zeros(shape, bool)
    truth[12:36, 20:50] = True
    img = np.where(truth[..., None], [200, 180, 60], [40, 60, 120]).astype(np.float64)
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), truth


def test_crf_snaps_a_blurred_shifted_prior_to_the_true_edge():
    rng = np.random.default_rng(0)
    img, truth = _two_region_image(rng)
    shifted = np.roll(truth, (4, -5), axis=(0, 1))
    prior = np.clip(ndimage.gaussian_filter(shifted.astype(float), 4), 0.02, 0.98)
    scores = np.stack([1 - prior, prior]).astype(np.float32)
    before = _iou(scores.argmax(0) == 1, truth)
    probs = dense_crf(img, scores)
    after = _iou(probs.argmax(0) == 1, truth)
    assert before < 0.75
    assert after > 0.95, (before, after)


def test_soft_output_is_a_distribution_and_matches_bare_pydensecrf():
    rng = np.random.default_rng(1)
    img, truth = _two_region_image(rng)
    scores = rng.uniform(0, 1, (3, *truth.shape)).astype(np.float32)
    probs = dense_crf(img, scores, n_iter=5, bilateral_sxy=40, bilateral_srgb=10)
    assert probs.shape == (3, *truth.shape) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    # The same CRF written directly against pydensecrf.
    h, w = truth.shape
    d = dcrf.DenseCRF2D(w, h, 3)
    d.setUnaryEnergy(np.ascontiguousarray(-np.log(np.clip(scores, 1e-5, 1)).reshape(3, -1)))
    d.addPairwiseGaussian(sxy=3, compat=3)
    d.addPairwiseBilateral(sxy=40, srgb=10, rgbim=img, compat=10)
    ref = np.array(d.inference(5)).reshape(3, h, w)
    np.testing.assert_array_equal(probs, ref.astype(np.float32))  # stepped inference: bit for bit


def test_crf_refine_mask_uses_project_indices_background_and_void():
    rng = np.random.default_rng(2)
    img, truth = _two_region_image(rng)
    cam = ndimage.gaussian_filter(truth.astype(float), 3)
    cam = (cam / cam.max()).astype(np.float32)[None]
    # cams at half resolution are resized to the image
    small = cam[:, ::2, ::2]
    res = crf_refine(img, small, [5], background=0)
    assert res.classes.tolist() == [0, 5]
    assert res.scores.shape == (2, *truth.shape)
    assert set(np.unique(res.mask).tolist()) == {0, 5}
    assert _iou(res.mask == 5, truth) > 0.9
    void = np.zeros(truth.shape, bool)
    void[:3] = True
    res_void = crf_refine(img, small, [5], background=0, void=void)
    assert (res_void.mask[:3] == 255).all()
    np.testing.assert_array_equal(res_void.mask[3:], res.mask[3:])


def test_crf_refine_without_background_assigns_every_pixel_to_a_label():
    rng = np.random.default_rng(3)
    img, truth = _two_region_image(rng)
    inside = ndimage.gaussian_filter(truth.astype(float), 5)
    cams = np.stack([1 - inside, inside]).astype(np.float32)
    res = crf_refine(img, cams, [11, 2], background=None)
    assert res.classes.tolist() == [11, 2]
    assert set(np.unique(res.mask).tolist()) == {2, 11}
    assert _iou(res.mask == 2, truth) > 0.9


def test_crf_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="resize the scores"):
        dense_crf(np.zeros((10, 10, 3), np.uint8), np.ones((2, 5, 5), np.float32))
