"""Pipeline: proposals follow the class evidence; prelabel is resumable and goes past failures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import draw
from torch import nn

from napari_wsss.metrics import confusion_matrix, segmentation_scores
from napari_wsss.models import Classifier
from napari_wsss.pipeline import Pipeline, PipelineConfig, prelabel, save_proposals
from napari_wsss.store import Project


class _ColourBackbone(nn.Module):
    """Features = the normalised image itself, undone to [0, 1] RGB (stride 1)."""

    def forward(self, x):
        mean = x.new_tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
        std = x.new_tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
        return x * std + mean


def colour_classifier() -> Classifier:
    """A classifier whose CAM of class 1 is the red channel and of class 2 the blue one."""
    model = Classifier("resnet18", 3, weights=None)
    model.backbone = _ColourBackbone()
    model.head = nn.Conv2d(3, 3, 1, bias=False)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.weight[1, 0] = 1.0  # red
        model.head.weight[2, 2] = 1.0  # blue
    return model.eval()


def two_objects(size=72, seed=0):
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), 0.1) + rng.normal(0, 0.02, (size, size, 3))
    gt = np.zeros((size, size), np.uint8)
    rr, cc = draw.disk((20, 22), 12, shape=gt.shape)
    img[rr, cc] = (0.9, 0.1, 0.1)
    gt[rr, cc] = 1
    rr, cc = draw.rectangle((40, 38), (62, 64), shape=gt.shape)
    img[rr, cc] = (0.1, 0.1, 0.9)
    gt[rr, cc] = 2
    return (np.clip(img, 0, 1) * 255).astype(np.uint8), gt


def iou_per_class(mask, gt, n):
    return segmentation_scores(confusion_matrix(mask, gt, n)).iou


def test_every_stage_recovers_the_objects_of_a_background_project():
    image, gt = two_objects()
    pipe = Pipeline(colour_classifier(), ["background", "red", "blue"], 0,
                    PipelineConfig(scales=(1.0,), flip=False, refine=("crf", "rw"), cam_threshold=0.5),
                    model_version="toy")
    props = pipe.run(image, [1, 2])
    assert props.cams.shape == (2, 72, 72)
    assert list(props.cam_classes) == [1, 2]
    assert set(props.masks) == {"cam", "crf", "rw"}
    for stage, mask in props.masks.items():
        assert mask.shape == gt.shape and mask.dtype == np.uint8
        assert iou_per_class(mask, gt, 3).min() > 0.85, stage


def test_without_background_every_pixel_goes_to_a_label_of_the_image():
    image, gt = two_objects()
    pipe = Pipeline(colour_classifier(), ["grey", "red", "blue"], None,
                    PipelineConfig(scales=(1.0,), flip=False, refine=("crf",)), model_version="toy")
    props = pipe.run(image, [1, 2])
    for mask in props.masks.values():
        assert set(np.unique(mask)) <= {1, 2}
    # The disc and the square are still told apart.
    assert (props.masks["crf"][gt == 1] == 1).mean() > 0.9
    assert (props.masks["crf"][gt == 2] == 2).mean() > 0.9


def test_unknown_method_and_stage_are_named():
    with pytest.raises(ValueError, match="unknown CAM method 'gradkam'.*gradcam"):
        PipelineConfig(method="gradkam")
    with pytest.raises(ValueError, match="unknown refinement stage"):
        PipelineConfig(refine=("crf", "snake"))


def test_config_options_are_typed_and_checked_before_any_image():
    with pytest.raises(ValueError, match=r"unknown pipeline option\(s\) \['treshold'\]; valid: method, .*cam_threshold"):
        PipelineConfig.from_dict({"treshold": 0.3})
    with pytest.raises(ValueError, match=r"unknown crf option\(s\) \['n_iters'\]; valid: n_iter, "):
        PipelineConfig(crf={"n_iters": 5})
    with pytest.raises(ValueError, match="rw option 't' must be an integer, got 2.5"):
        PipelineConfig.from_dict({"rw": {"t": 2.5}})
    with pytest.raises(ValueError, match="cam_threshold must be a number in"):
        PipelineConfig(cam_threshold="0.3")
    cfg = PipelineConfig.from_dict({"scales": [1, 0.5], "refine": ["crf"], "crf": {"n_iter": 3},
                                    "rw": {"beta": 4}})
    assert cfg.scales == (1.0, 0.5) and cfg.refine == ("crf",)
    assert dict(cfg.crf) == {"n_iter": 3}  # only what was set: the rest is the project kind's default
    assert dict(cfg.rw) == {"radius": 5, "beta": 4.0, "t": 64, "stride": 4}
    assert PipelineConfig.from_dict(cfg.to_dict()) == cfg


def test_crf_options_go_over_the_project_kinds_defaults():
    from napari_wsss.refine.crf import NO_BACKGROUND_CRF

    cfg = PipelineConfig(crf={"n_iter": 3, "bilateral_srgb": 7})
    no_bg = Pipeline(colour_classifier(), ["grey", "red", "blue"], None, cfg, model_version="toy")
    with_bg = Pipeline(colour_classifier(), ["background", "red", "blue"], 0, cfg, model_version="toy")
    assert no_bg.crf_kwargs == {**NO_BACKGROUND_CRF, "n_iter": 3, "bilateral_srgb": 7.0}
    assert with_bg.crf_kwargs == {"n_iter": 3, "bilateral_srgb": 7.0}


def _toy_project(tmp_path, n=4):
    project = Project.create(tmp_path / "p.zarr", ["red", "blue"], background=True)
    for i in range(n):
        image, _ = two_objects(seed=i)
        project.add_image(f"img{i}", image, [1, 2])
    return project


def test_prelabel_is_resumable_and_reports_a_failing_image(tmp_path):
    project = _toy_project(tmp_path)
    # An image whose CAMs cannot be computed: a label outside the model's 3 outputs.
    project.add_image("broken", two_objects()[0], [1])
    pipe = Pipeline(colour_classifier(), project.classes, project.background,
                    PipelineConfig(scales=(1.0,), flip=False, refine=("crf",), cam_threshold=0.5),
                    model_version="toy-1")
    bad = Pipeline(colour_classifier(), project.classes, project.background, pipe.config,
                   model_version="toy-1")
    bad.model.head = nn.Conv2d(3, 1, 1, bias=False)  # only one output: class 1 is out of range

    report = prelabel(project, pipeline=pipe, ids=["img0", "img1"], progress=False)
    assert report.done == ["img0", "img1"] and not report.failed
    first = project.read_mask("img0", "crf").copy()

    report = prelabel(project, pipeline=pipe, progress=False)
    assert report.skipped == ["img0", "img1"]
    assert report.done == ["img2", "img3", "broken"]
    assert project.status("img3").status == "prelabelled"
    assert project.status("img3").model_version == "toy-1"

    report = prelabel(project, pipeline=bad, ids=["broken", "img0"], force=True, progress=False)
    assert set(report.failed) == {"broken", "img0"}
    assert "FAILED broken" in report.summary()
    # A failed recompute leaves the earlier proposals in place.
    np.testing.assert_array_equal(project.read_mask("img0", "crf"), first)


def test_save_proposals_keeps_the_annotators_status(tmp_path):
    project = _toy_project(tmp_path, n=1)
    pipe = Pipeline(colour_classifier(), project.classes, project.background,
                    PipelineConfig(scales=(1.0,), flip=False, refine=()), model_version="toy-2")
    project.set_status("img0", "accepted")
    save_proposals(project, "img0", pipe.run(project.image("img0"), [1, 2]))
    assert project.status("img0").status == "accepted"
    cams, classes = project.read_cams("img0", "cam")
    assert cams.shape == (2, 72, 72) and list(classes) == [1, 2]


def test_batched_cams_match_one_image_at_a_time():
    torch.manual_seed(0)
    model = Classifier("resnet18", 4, weights=None).eval()
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, shape, dtype=np.uint8)
              for shape in [(48, 64, 3), (64, 48, 3), (48, 64, 3), (48, 64, 3)]]
    labels = [[1, 3], [2], [], [1, 2, 3]]
    for method in ("cam", "gradcam"):
        pipe = Pipeline(model, ["bg", "a", "b", "c"], 0,
                        PipelineConfig(method=method, scales=(1.0, 0.5), flip=True, refine=()),
                        model_version="toy")
        batched = pipe.cams_batch(images, labels)
        for image, lab, got in zip(images, labels, batched):
            alone = pipe.cams(image, lab)
            assert got.shape == (len(lab), *image.shape[:2])
            np.testing.assert_allclose(got, alone, atol=1e-5, err_msg=method)
    # The empty label list of a background project gives no maps, the rest are real maps.
    assert batched[2].shape == (0, 48, 64)
    assert all(m.max() == pytest.approx(1.0) for m in batched[3])


def test_prelabel_in_batches_isolates_a_broken_image(tmp_path):
    project = Project.create(tmp_path / "p.zarr", ["red", "blue", "green"], background=True)
    for i in range(3):
        project.add_image(f"img{i}", two_objects(seed=i)[0], [1, 2])
    # The toy classifier has 3 outputs: class 3 ("green") cannot be explained.
    project.add_image("broken", two_objects(seed=9)[0], [3])
    order = ["img0", "broken", "img1", "img2"]
    pipe = Pipeline(colour_classifier(), project.classes, project.background,
                    PipelineConfig(scales=(1.0,), flip=False, refine=("crf",), cam_threshold=0.5),
                    model_version="toy-3")
    report = prelabel(project, pipeline=pipe, ids=order, batch_size=3, progress=False)
    assert report.done == ["img0", "img1", "img2"]
    assert list(report.failed) == ["broken"] and "class 3 out of range" in report.failed["broken"]
    assert project.status("broken").status == "new"
    for image_id in ("img0", "img1", "img2"):
        alone = pipe.run(project.image(image_id), [1, 2])
        np.testing.assert_array_equal(project.read_mask(image_id, "crf"), alone.masks["crf"])
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        prelabel(project, pipeline=pipe, batch_size=0, progress=False)
