"""evaluate_project on tiny projects whose scores are worked out by hand."""

import json

import numpy as np
import pytest
from PIL import Image

from napari_wsss.evaluate import cam_threshold_sweep, evaluate_project
from napari_wsss.metrics import confusion_matrix
from napari_wsss.store import Project

V = 255


def _gt(gt_dir, image_id, mask):
    gt_dir.mkdir(exist_ok=True)
    Image.fromarray(np.asarray(mask, np.uint8)).save(gt_dir / f"{image_id}.png")


@pytest.fixture
def nobg(tmp_path):
    """No background (MSRC-like), classes a, b, c; two 4x4 images with ground truth, one without."""
    p = Project.create(tmp_path / "p.zarr", ["a", "b", "c"])
    img = np.zeros((4, 4, 3), np.uint8)
    p.add_image("i1", img, ["a", "b"])
    p.add_image("i2", img, ["c"])
    p.add_image("i3", img, ["c"])
    gt1 = np.array([[0, 0, 1, 1]] * 4, np.uint8)
    gt1[0, 0] = V
    _gt(tmp_path / "gt", "i1", gt1)
    _gt(tmp_path / "gt", "i2", np.full((4, 4), 2, np.uint8))
    # crf: i1 predicts class 0 in columns 0-2 and 1 in column 3; i2 all 2 but one void pixel
    p.write_mask("i1", "crf", np.array([[0, 0, 0, 1]] * 4, np.uint8), model_version="v")
    crf2 = np.full((4, 4), 2, np.uint8)
    crf2[3, 3] = V
    p.write_mask("i2", "crf", crf2, model_version="v")
    p.write_mask("i1", "rw", np.array([[0, 0, 1, 1]] * 4, np.uint8), model_version="v")
    p.write_mask("i3", "rw", np.zeros((4, 4), np.uint8), model_version="v")  # i3 has no GT
    return p, tmp_path / "gt"


def test_mask_stages_scored_by_hand_and_missing_gt_warned(nobg):
    project, gt_dir = nobg
    with pytest.warns(UserWarning, match=r"no ground truth for 1 image\(s\): i3"):
        rep = evaluate_project(project, gt_dir)
    assert rep.evaluated == ["i1", "i2"] and rep.missing_gt == ["i3"]
    assert set(rep.stages) == {"crf", "rw"}
    crf = rep.stages["crf"]
    # class a: TP 7 (column 0-1 minus the void), FP 4 (column 2 of i1), FN 0 -> 7/11
    # class b: TP 4, FN 4 -> 4/8;  class c: TP 15, FN 1 (void prediction) -> 15/16
    assert crf.n_images == 2
    np.testing.assert_allclose(crf.scores.iou, [7 / 11, 0.5, 15 / 16])
    assert crf.scores.miou == pytest.approx((7 / 11 + 0.5 + 15 / 16) / 3)
    assert crf.scores.pixel_accuracy == pytest.approx(26 / 31)
    np.testing.assert_allclose(crf.scores.f1, [14 / 18, 8 / 12, 30 / 31])
    # rw only on i1 (i3 has no ground truth): perfect on a and b, c absent
    assert rep.stages["rw"].n_images == 1
    np.testing.assert_allclose(rep.stages["rw"].scores.iou[:2], [1.0, 1.0])
    assert np.isnan(rep.stages["rw"].scores.iou[2])


def test_report_table_and_json(nobg):
    project, gt_dir = nobg
    with pytest.warns(UserWarning):
        rep = evaluate_project(project, gt_dir, stages=["crf", "segmenter"])
    table = rep.as_table()
    assert "| crf | 2 | 69.1 | 83.9 |" in table  # mIoU (7/11+1/2+15/16)/3, acc 26/31
    assert "| c | 93.8 |" in table and "No ground truth for: i3" in table
    assert "'segmenter': none of the 2 evaluated" in table
    d = json.loads(json.dumps(rep.as_dict()))
    assert d["stages"]["crf"]["IoU"]["b"] == pytest.approx(0.5)
    assert d["missing_gt"] == ["i3"] and d["images"] == 2


def test_gt_of_another_shape_is_an_error_naming_the_file(nobg):
    project, gt_dir = nobg
    _gt(gt_dir, "i2", np.zeros((4, 5), np.uint8))
    msg = r"i2\.png: ground truth of shape \(4, 5\) does not match image 'i2' of shape \(4, 4\)"
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=msg):
        evaluate_project(project, gt_dir)


def test_bad_gt_files_and_options(nobg, tmp_path):
    project, gt_dir = nobg
    _gt(gt_dir, "i2", np.full((4, 4), 7, np.uint8))
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=r"i2\.png: .*class 7 .* 3 classes"):
        evaluate_project(project, gt_dir)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(gt_dir / "i2.png")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=r"i2\.png: .*RGB colour image"):
        evaluate_project(project, gt_dir)
    with pytest.raises(ValueError, match="unknown stage.*valid: cam, crf"):
        evaluate_project(project, gt_dir, stages=["crff"])
    with pytest.raises(FileNotFoundError, match="no ground-truth mask for any"):
        evaluate_project(project, tmp_path)


def test_corrected_stage_fills_from_proposals_and_ignores_skipped(nobg):
    project, gt_dir = nobg
    corr = np.full((4, 4), V, np.uint8)
    corr[:, 2] = 1  # the annotator fixes column 2 of i1; the rest comes from rw, then crf
    project.write_corrections("i1", corr)
    project.write_corrections("i2", np.full((4, 4), 2, np.uint8))
    project.set_status("i2", "skipped")
    with pytest.warns(UserWarning):
        rep = evaluate_project(project, gt_dir, stages=["corrected"], fallback=("crf",))
    # i1 only (i2 skipped): column 2 corrected, column 3 from crf (class 1) -> matches GT
    res = rep.stages["corrected"]
    assert res.n_images == 1
    np.testing.assert_allclose(res.scores.iou[:2], [1.0, 1.0])


def test_cam_argmax_without_background_upsampled_bilinear(nobg):
    project, gt_dir = nobg
    # (2, 2, 2) CAMs, columns [1, 0] and [0, 1]; bilinear (align_corners=False) to width 4
    # gives [1, .75, .25, 0] and [0, .25, .75, 1]: arg-max a, a, b, b = the ground truth
    cams = np.array([[[1, 0], [1, 0]], [[0, 1], [0, 1]]], np.float32)
    project.write_cams("i1", "gradcam", cams, [0, 1], model_version="v")
    project.write_cams("i2", "gradcam", np.ones((1, 2, 2), np.float32), [2], model_version="v")
    with pytest.warns(UserWarning):
        rep = evaluate_project(project, gt_dir, stages=["cams"])
    res = rep.cams["gradcam"]
    assert res.n_images == 2 and res.thresholds is None and res.best_threshold is None
    assert res.scores.miou == pytest.approx(1.0) and res.scores.pixel_accuracy == pytest.approx(1.0)
    assert "no background class" in res.note
    assert "sweep, CAMs gradcam: n/a" in rep.as_table()
    assert rep.as_dict()["stages"]["cams/gradcam"]["sweep"] is None


@pytest.fixture
def withbg(tmp_path):
    p = Project.create(tmp_path / "bg.zarr", ["cat"], background=True)
    p.add_image("x", np.zeros((4, 4), np.uint8), ["cat"])
    p.add_image("empty", np.zeros((2, 2), np.uint8), [])
    _gt(tmp_path / "gt", "x", np.array([[0, 0, 1, 1]] * 4, np.uint8))
    _gt(tmp_path / "gt", "empty", np.array([[0, 0], [0, V]], np.uint8))
    cam = np.array([[[0.1, 0.3, 0.5, 0.7]] * 4], np.float32)
    p.write_cams("x", "cam", cam, [1], model_version="v")
    p.write_cams("empty", "cam", np.zeros((0, 2, 2), np.float32), [], model_version="v")
    return p, tmp_path / "gt"


def test_threshold_sweep_picks_the_constructed_threshold(withbg):
    project, gt_dir = withbg
    rep = evaluate_project(project, gt_dir, thresholds=[0.6, 0.2, 0.4, 0.5])
    res = rep.cams["cam"]
    assert res.thresholds == (0.2, 0.4, 0.5, 0.6)
    # 3 background pixels of "empty" (no labels: all background) are always right.
    # t=0.2: columns 1-3 cat -> bg IoU 7/11, cat 8/12;  t=0.4: perfect;
    # t=0.5: the 0.5 column ties with the threshold -> background (argmax over [t, cam]),
    # as t=0.6 -> bg 11/15, cat 4/8
    np.testing.assert_allclose(res.miou, [(7 / 11 + 8 / 12) / 2, 1.0, (11 / 15 + 0.5) / 2,
                                          (11 / 15 + 0.5) / 2])
    assert res.best_threshold == 0.4 and res.scores.miou == pytest.approx(1.0)
    assert "| 0.4 (best) | 100.0 |" in rep.as_table()


def test_sweep_matches_padded_argmax_reference():
    """The one-pass sweep equals P-NOC's per-threshold argmax over [t, cam_1..cam_K]."""
    rng = np.random.default_rng(3)
    cams = rng.random((3, 9, 11)).astype(np.float32)
    cams[:, 0, :4] = 0.25  # exact ties with a threshold
    classes = np.array([1, 3, 4])
    gt = rng.integers(0, 5, (9, 11)).astype(np.uint8)
    gt[rng.random((9, 11)) < 0.2] = V
    thresholds = (0.1, 0.25, 0.5, 0.9)
    got = cam_threshold_sweep(cams, classes, gt, background=0, num_classes=5, thresholds=thresholds)
    for i, t in enumerate(thresholds):
        padded = np.pad(cams, ((1, 0), (0, 0), (0, 0)), constant_values=t)
        pred = np.concatenate([[0], classes])[padded.argmax(0)]
        np.testing.assert_array_equal(got[i], confusion_matrix(pred, gt, 5))


def test_sweep_says_how_far_the_default_threshold_is_from_the_best(withbg):
    project, gt_dir = withbg
    thresholds = [0.2, 0.4, 0.5, 0.6]
    project.write_calibration({"cam_threshold": 0.2})  # as choose_defaults stores it
    res = evaluate_project(project, gt_dir, thresholds=thresholds).cams["cam"]
    assert res.default_threshold == 0.2 and res.default_miou == pytest.approx(res.miou[0])
    rep = evaluate_project(project, gt_dir, thresholds=thresholds)
    below = 100 * (1.0 - res.miou[0])
    assert f"calibrated on corrections: 0.2): mIoU {100 * res.miou[0]:.1f} %, {below:.1f} points below" \
           in rep.as_table()
    assert rep.as_dict()["stages"]["cams/cam"]["default"]["below_best"] == pytest.approx(1.0 - res.miou[0])
    # without a calibration the default is the per-image rule, scored image by image
    project.write_calibration({})
    res = evaluate_project(project, gt_dir, thresholds=thresholds).cams["cam"]
    from napari_wsss.refine.threshold import DEFAULT_RULE

    assert res.default_threshold == DEFAULT_RULE and 0.0 <= res.default_miou <= 1.0
