"""Parity with pytorch-grad-cam (package ``grad-cam``) for Grad-CAM, Grad-CAM++, Layer-CAM, Score-CAM.

Our raw maps are ReLU'd, min-max normalised, upsampled bilinearly to the input and
normalised again, which is what pytorch-grad-cam does to its maps; the two must
correlate at r >= 0.999 per image and class.
"""

import numpy as np
import pytest
import torch
import torchvision
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from cams_helpers import pearson, seeded_images
from napari_wsss import cams

TARGETS = [[1, 5, 7], [3, 19]]
CASES = [("resnet18", "layer4"), ("resnet18", "layer3"), ("mobilenet_v3_small", "features")]
THEIRS = {"gradcam": (GradCAM, {}), "gradcam++": (GradCAMPlusPlus, {"eps": 1e-6}), "layercam": (LayerCAM, {})}


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {name: torchvision.models.get_model(name, num_classes=20).eval() for name in ("resnet18", "mobilenet_v3_small")}


def _their_style(maps: torch.Tensor, size) -> np.ndarray:
    return cams.normalize(cams.upsample(cams.normalize(maps), size)).numpy()


def _compare(ours: np.ndarray, theirs_fn, targets) -> int:
    """Assert r >= 0.999 for every (image, slot); return how many maps were non-constant."""
    compared = 0
    for k in range(max(len(t) for t in targets)):
        rows = [b for b in range(len(targets)) if k < len(targets[b])]
        theirs = theirs_fn(rows, [ClassifierOutputTarget(targets[b][k]) for b in rows])
        for j, b in enumerate(rows):
            if np.ptp(theirs[j]) == 0:  # all-negative map: both must be flat
                assert np.ptp(ours[b, k]) == 0
                continue
            assert pearson(ours[b, k], theirs[j]) >= 0.999, (b, k)
            compared += 1
    return compared


@pytest.mark.parametrize("method", list(THEIRS))
@pytest.mark.parametrize("name,layer", CASES)
def test_gradient_cams_match_pytorch_grad_cam(models, name, layer, method):
    model = models[name]
    x = seeded_images(2, 96, seed=1)
    theirs_cls, opts = THEIRS[method]
    raw = cams.compute(model, x, TARGETS, method=method, layer=layer, **opts)
    ours = _their_style(raw, (96, 96))
    module = dict(model.named_modules())[layer]
    with theirs_cls(model, [module]) as cam:
        compared = _compare(ours, lambda rows, t: cam(input_tensor=x[rows], targets=t), TARGETS)
    assert compared >= 3


def test_scorecam_softmax_weighting_matches_pytorch_grad_cam(models):
    # A 64-channel layer keeps their per-class loop of masked forwards small.
    model = models["resnet18"]
    x = seeded_images(1, 32, seed=2)
    targets = [[2, 9, 11]]
    raw = cams.compute(model, x, targets, method="scorecam", layer="layer1", weighting="softmax",
                       align_corners=True, batch_size=64)
    ours = _their_style(raw, (32, 32))
    with ScoreCAM(model, [model.layer1]) as cam:
        cam.batch_size = 64
        compared = _compare(ours, lambda rows, t: cam(input_tensor=x[rows], targets=t), targets)
    assert compared == 3
