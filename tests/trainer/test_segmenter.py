import io

import numpy as np
import pytest
import torch
import torchvision

from napari_wsss.models import build_segmenter, load_segmenter, predict_segmenter
from trainer import DirectoryCheckpoints, TrainingDataError, fit, train
from trainer.segmenter import build_segmenter_stage

from conftest import synthetic_source, tiny_config, to_project


def test_segmenter_loss_falls(tmp_path):
    src = synthetic_source(4, masks=True)
    res = fit(src, "segmenter", tiny_config(segmenter__epochs=5),
              checkpoints=DirectoryCheckpoints(tmp_path), log_dir=tmp_path / "log", stream=io.StringIO())
    assert len(res.losses) == 5
    assert res.losses[-1] < 0.7 * res.losses[0]


def test_torchvision_imagenet_weights_fill_the_encoder():
    net = build_segmenter("mobilenet_v2", 3, weights="IMAGENET1K_V1")
    tv = torchvision.models.mobilenet_v2(weights="IMAGENET1K_V1").state_dict()
    enc = net.encoder.state_dict()
    for key in ("features.0.0.weight", "features.18.1.running_var", "features.7.conv.1.0.weight"):
        assert torch.equal(enc[key], tv[key])
    with pytest.raises(ValueError, match="valid encoders: mobilenet_v2"):
        build_segmenter("efficientnet-b0", 3, weights="IMAGENET1K_V1")


def test_corrections_override_pseudo_masks_and_stage_preference():
    src = synthetic_source(2, masks=False)
    ids = src.image_ids()
    src.masks[(ids[0], "crf")] = np.full((64, 64), 2, np.uint8)
    src.masks[(ids[0], "rw")] = np.full((64, 64), 1, np.uint8)
    corr = np.full((64, 64), 255, np.uint8)
    corr[10:20, 10:20] = 0
    src.corrections[ids[0]] = corr
    cfg = tiny_config().segmenter
    cfg.pseudo_stages = ("rw", "crf")
    st = build_segmenter_stage(src, cfg, ids, [])
    assert st.train_set.ids == [ids[0]]  # the other image has nothing to learn from
    mask = st.train_set[0]["mask"].numpy()
    expected = np.ones((64, 64), np.int64)
    expected[10:20, 10:20] = 0
    np.testing.assert_array_equal(mask, expected)


def test_no_pseudo_masks_is_a_clear_error():
    src = synthetic_source(2)
    with pytest.raises(TrainingDataError, match=r"no pseudo-masks of stages \['rw', 'crf', 'cam'\]"):
        build_segmenter_stage(src, tiny_config().segmenter, src.image_ids(), [])


def test_predict_any_size_and_restrict_to_labels():
    torch.manual_seed(0)
    net = build_segmenter("mobilenet_v2", 4, weights=None).eval()
    img = np.random.default_rng(0).integers(0, 255, (50, 70, 3)).astype(np.uint8)
    out = predict_segmenter(net, img)
    assert out.shape == (50, 70) and out.dtype == np.uint8 and out.max() < 4
    only = predict_segmenter(net, img, labels=[2])
    assert np.all(only == 2)
    two = predict_segmenter(net, img, labels=[3], background=0)
    assert set(np.unique(two)) <= {0, 3}


def test_segmenter_project_round_trip(tmp_path):
    src = synthetic_source(4, masks=True, background=True)
    project = to_project(src, tmp_path / "p")
    train(project.path, "segmenter", tiny_config(segmenter__epochs=1), stream=io.StringIO())
    net = load_segmenter(project, "cpu")
    assert net.classes == project.classes and net.background == 0 and not net.training
    out = predict_segmenter(net, project.image("img00"))
    assert out.shape == (64, 64)
