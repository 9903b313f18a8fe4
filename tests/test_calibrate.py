"""Pipeline defaults from the project's own data: the background threshold from corrected
pixels (else a per-image rule), refinement stages that hurt there turned off."""

import numpy as np
import pytest
import torch

from napari_wsss.calibrate import DEFAULT_RULE, THRESHOLD_RULES, choose_defaults, image_threshold
from napari_wsss.evaluate import DEFAULT_THRESHOLDS
from napari_wsss.models import Classifier
from napari_wsss.pipeline import Pipeline, PipelineConfig, prelabel
from napari_wsss.store import Project

BG_CAM, FG_CAM = 0.45, 0.8  # CAM of background / object pixels in the synthetic project


def _project(path, n=4, corrected=4, size=32):
    """Background project: a square object of class 1 on each image; stored CAMs FG_CAM on the
    object and BG_CAM elsewhere; the first ``corrected`` images corrected with the truth."""
    rng = np.random.default_rng(0)
    p = Project.create(path, ["square"], background=True)
    for i in range(n):
        img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        truth = np.zeros((size, size), np.uint8)
        y, x = rng.integers(4, size // 2, 2)
        truth[y:y + 12, x:x + 12] = 1
        img[truth == 1] = (200, 60, 60)
        p.add_image(f"im{i}", img, [1])
        cams = np.where(truth == 1, FG_CAM, BG_CAM).astype(np.float32)[None]
        p.write_cams(f"im{i}", "cam", cams, np.array([1]), model_version="synthetic")
        if i < corrected:
            p.write_corrections(f"im{i}", truth)
    return p


def _pipeline(project, **config):
    torch.manual_seed(0)
    model = Classifier("mobilenet_v3_small", len(project.classes), weights=None)
    return Pipeline(model, project.classes, project.background,
                    PipelineConfig(scales=(1.0,), flip=False, **config), model_version="test")


def test_threshold_from_corrected_pixels(tmp_path):
    project = _project(tmp_path / "p.zarr")
    out = choose_defaults(project)  # no classifier: the stored CAMs
    # every threshold in [BG_CAM, FG_CAM) separates the object exactly (background where the
    # top CAM <= t); the sweep keeps the first of the best: the smallest grid value >= BG_CAM
    assert out["cam_threshold"] == min(t for t in DEFAULT_THRESHOLDS if t >= BG_CAM)
    assert out["threshold_source"].startswith("corrections: best of 19 thresholds on")
    ev = out["evidence"]
    assert ev["corrected_images"] == 4 and ev["corrected_pixels"] == 4 * 32 * 32
    assert ev["miou"][ev["thresholds"].index(out["cam_threshold"])] == pytest.approx(1.0)
    assert ev["miou"][0] < 1.0  # 0.05 calls everything the object
    stored = Project.open(project.path, "r").read_calibration()
    assert stored["cam_threshold"] == out["cam_threshold"] and "time" in stored


def test_few_corrections_leave_the_rule(tmp_path):
    project = _project(tmp_path / "p.zarr", corrected=2)
    out = choose_defaults(project, write=False)
    assert out["cam_threshold"] == DEFAULT_RULE and "corrections decide from 3 images" in out["threshold_source"]
    assert project.read_calibration() is None
    # the rule from each image's own CAMs: Otsu splits the two CAM levels
    pipe = _pipeline(project)
    pipe.set_calibration(out)
    cams = project.read_cams("im0", "cam")[0]
    t = pipe.threshold(cams)
    assert BG_CAM <= t < FG_CAM and t == image_threshold(cams, DEFAULT_RULE)
    with pytest.raises(ValueError, match="cam_threshold must be a number in"):
        PipelineConfig(cam_threshold="median")
    assert set(THRESHOLD_RULES) >= {"image-otsu", "otsu", "constant-0.25"}


def test_a_refinement_that_lowers_quality_on_corrections_is_off_by_default(tmp_path):
    project = _project(tmp_path / "p.zarr")
    # a CRF whose pairwise terms swamp the unary: the square drowns in background
    crushing = {"bilateral_compat": 200.0, "gaussian_compat": 200.0, "bilateral_srgb": 200.0, "n_iter": 10}
    pipe = _pipeline(project, crf=crushing)
    out = choose_defaults(project, pipeline=pipe, stored_cams=True)
    stages = out["evidence"]["stages"]
    assert stages["cam"] == pytest.approx(1.0) and stages["crf"] < stages["cam"]
    assert "crf" in out["refine_off"] and "lowers mIoU on the corrected pixels" in out["refine_off"]["crf"]
    # exactly the stages scoring below the CAMs are off (the walk propagates the CRF's output
    # in a background project, so it may drown too)
    assert set(out["refine_off"]) == {s for s in ("crf", "rw") if stages[s] < stages["cam"]}
    pipe.set_calibration(project.read_calibration())
    assert pipe.config.refine == tuple(s for s in PipelineConfig().refine if s not in out["refine_off"])
    kept = _pipeline(project, crf=crushing, apply_calibration=False)
    kept.set_calibration(project.read_calibration())
    assert "crf" in kept.config.refine  # the user's explicit choice stands
    report = prelabel(project, pipeline=pipe, calibrate=False, progress=False)
    assert report.done and "crf" not in project.mask_stages("im0")


def test_two_level_otsu_separates_objects_from_their_halo():
    """CAMs spread beyond the object (the halo measured on the shapes sample): a single Otsu
    split falls between background and halo, the two-level rule between halo and object."""
    from napari_wsss.refine.threshold import threshold_by_rule

    cam = np.full((1, 40, 40), 0.1, np.float32)
    cam[0, 5:35, 5:35] = 0.5   # halo
    cam[0, 15:25, 15:25] = 0.9  # object
    one, two = threshold_by_rule("image-otsu", [cam]), threshold_by_rule("image-otsu2", [cam])
    assert 0.1 <= one < 0.5 <= two < 0.9
    assert threshold_by_rule("constant-0.7", [cam]) == 0.7
    with pytest.raises(ValueError, match="unknown threshold rule 'median'"):
        threshold_by_rule("median", [cam])


def test_prelabel_calibrates_once_per_models_and_corrections(tmp_path):
    from napari_wsss.pipeline import calibrate_project

    project = _project(tmp_path / "p.zarr", n=5, corrected=3)
    pipe = _pipeline(project)
    first = calibrate_project(project, pipe)
    assert first["evidence"]["corrected_images"] == 3 and project.read_calibration()["key"] == first["key"]
    again = calibrate_project(project, pipe)
    assert again["time"] == project.read_calibration()["time"]  # the stored one, not recomputed
    truth = np.asarray(project.read_corrections("im0"))
    project.write_corrections("im3", truth)  # a new corrected image: chosen again
    third = calibrate_project(project, pipe)
    assert third["evidence"]["corrected_images"] == 4 and third["key"] != first["key"]
