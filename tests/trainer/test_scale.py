"""One scale rule for training and inference: every checkpoint stores the scale its model was
trained at, and the pipeline runs each model there, so an image at full size gets what the same
image gets at its training scale."""

import io

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from napari_wsss.models.scale import ScaleRule
from napari_wsss.transforms import to_rgb_float
from napari_wsss.pipeline import Pipeline, PipelineConfig
from trainer import DirectoryCheckpoints, fit, load_classifier, load_segmenter
from trainer.data import build_transform

from conftest import synthetic_source, tiny_config

SIDE = 48  # training crop box; the images are 96 px: trained at half their size


def _at_training_scale(image: np.ndarray) -> np.ndarray:
    """The image as the trainer's evaluation transform shows it to a model (long side SIDE)."""
    x = tv_tensors.Image(torch.from_numpy(to_rgb_float(image)).permute(2, 0, 1))
    out = build_transform(SIDE, train=False)({"image": x})["image"].as_subclass(torch.Tensor)
    return out.permute(1, 2, 0).numpy()  # square images: no padding


def _trained(tmp_path, stage, src, epochs=1, **extra):
    kw = {f"{stage}__crop_size": SIDE, f"{stage}__epochs": epochs, f"{stage}__batch_size": 4, **extra}
    fit(src, stage, tiny_config(**kw), checkpoints=DirectoryCheckpoints(tmp_path), log_dir=tmp_path / "log",
        stream=io.StringIO())
    return DirectoryCheckpoints(tmp_path).latest_checkpoint(stage)


def _near_boundary(small: np.ndarray, shape) -> np.ndarray:
    """Pixels of a ``shape`` image whose nearest ``small`` pixel has another class in its 3x3
    neighbourhood: the only places where bilinearly upsampled class scores can pick another
    class than the small grid (elsewhere every interpolated score vector is a convex
    combination of vectors whose arg-max is that one class)."""
    pad = np.pad(small, 1, mode="edge")
    h, w = small.shape
    mixed = np.zeros_like(small, bool)
    for dy in range(3):
        for dx in range(3):
            mixed |= pad[dy:dy + h, dx:dx + w] != small
    ys = np.clip(np.floor((np.arange(shape[0]) + 0.5) * h / shape[0]).astype(int), 0, h - 1)
    xs = np.clip(np.floor((np.arange(shape[1]) + 0.5) * w / shape[1]).astype(int), 0, w - 1)
    return mixed[ys][:, xs]


def test_segmenter_predicts_the_same_mask_at_full_size_as_at_training_scale(tmp_path):
    from napari_wsss.models import predict_segmenter

    src = synthetic_source(4, size=2 * SIDE, masks=True, background=True)
    # enough steps to segment the blobs (a one-class mask would pass trivially; without the
    # rule this model's full-size masks differ on 5-14 % of the pixels, mostly off boundaries)
    net = load_segmenter(_trained(tmp_path, "segmenter", src, 10, segmenter__lr=0.05), "cpu")
    assert net.scale == ScaleRule(SIDE, "long_side")
    for iid in src.image_ids():
        full = src.image(iid)
        small = predict_segmenter(net, _at_training_scale(full))
        big = predict_segmenter(net, full)
        assert small.shape == (SIDE, SIDE) and big.shape == full.shape[:2]
        assert len(np.unique(small)) >= 2  # background and a blob
        nearest = np.arange(2 * SIDE) // 2  # the small pixel nearest to each full-size pixel
        differ = big != small[nearest][:, nearest]
        assert not (differ & ~_near_boundary(small, big.shape)).any(), iid


def test_every_model_sees_the_image_at_its_training_scale(tmp_path):
    """Classifier (CAMs), Explainer and AffinityNet get bit for bit the tensor they get for
    the image at training scale, whatever the image's size."""
    src = synthetic_source(4, size=2 * SIDE, background=True)
    model = load_classifier(_trained(tmp_path / "c", "classifier", src), "cpu")
    assert model.scale == ScaleRule(SIDE)
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    pipe = Pipeline(model, src.classes, src.background, PipelineConfig(scales=(1.0,), flip=False, refine=()),
                    model_version="test")
    full = src.image("img00")
    cams_full = pipe.cams(full, src.labels["img00"])
    cams_small = pipe.cams(_at_training_scale(full), src.labels["img00"])
    assert cams_full.shape[1:] == full.shape[:2] and cams_small.shape[1:] == (SIDE, SIDE)
    assert seen[0].shape[-2:] == (SIDE, SIDE) and torch.equal(seen[0], seen[1])
    # without the stored rule (scale="config") the full-size image goes in at full size
    seen.clear()
    Pipeline(model, src.classes, src.background, pipe.config.replace(scale="config", max_side=None),
             model_version="test").cams(full, src.labels["img00"])
    assert seen[0].shape[-2:] == full.shape[:2]


@pytest.mark.parametrize("attr", ["affinity", "explainer"])
def test_affinity_and_explainer_inputs_follow_their_rule(attr):
    from napari_wsss.models import Classifier
    from napari_wsss.models.affinity import AffinityNet
    from napari_wsss.models import build_segmenter

    src = synthetic_source(1, size=2 * SIDE, background=True)
    torch.manual_seed(0)
    other = AffinityNet("mobilenet_v2", None) if attr == "affinity" else build_segmenter(
        "mobilenet_v2", len(src.classes))
    other.scale = ScaleRule(SIDE)
    seen = []
    other.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    pipe = Pipeline(Classifier("mobilenet_v3_small", len(src.classes), weights=None), src.classes,
                    src.background, PipelineConfig(scales=(1.0,), flip=False, refine=("rw", "explainer")),
                    model_version="test", **{attr: other})
    full = src.image("img00")
    out = [pipe.run(img, src.labels["img00"]) for img in (full, _at_training_scale(full))]
    side = SIDE if attr == "affinity" else 64  # the Explainer pads its input to a multiple of 32
    assert len(seen) == 2 and seen[0].shape[-2:] == (side, side) and torch.equal(seen[0], seen[1])
    assert out[0].masks[{"affinity": "rw", "explainer": "explainer"}[attr]].shape == full.shape[:2]
