"""The CAM classifier and its ImageNet-head constructor."""

import numpy as np
import pytest
import torch
import torchvision

from napari_wsss.models import Classifier, get_spec, to_rgb_float, to_tensor


def test_cam_mean_is_the_logit():
    torch.manual_seed(0)
    model = Classifier("resnet18", 4, weights=None).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        logits, cams = model.forward_with_cams(x)
        assert cams.shape == (2, 4, 2, 3)
        torch.testing.assert_close(cams.mean((2, 3)), logits)
        torch.testing.assert_close(model(x), logits)


def test_from_imagenet_sums_the_named_imagenet_rows():
    rows = [[281, 285], [504]]
    ours = Classifier.from_imagenet("mobilenet_v2", rows).eval()
    ref = torchvision.models.mobilenet_v2(weights="IMAGENET1K_V1").eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        full = ref(x) - ref.classifier[1].bias  # our head has no bias
        expected = torch.stack([full[:, r].sum(1) for r in rows], 1)
        torch.testing.assert_close(ours(x), expected, rtol=1e-4, atol=1e-4)


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(ValueError, match="unknown backbone 'resnet7'.*mobilenet_v2"):
        get_spec("resnet7")


@pytest.mark.parametrize(
    "image",
    [
        np.array([[0, 65535], [1000, 2000]], np.uint16),  # 16-bit grayscale: own range
        np.dstack([np.full((2, 2), 255, np.uint8)] * 3 + [np.zeros((2, 2), np.uint8)]),  # RGBA
    ],
)
def test_to_rgb_float_handles_stored_images(image):
    rgb = to_rgb_float(image)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.float32
    assert rgb.min() >= 0 and rgb.max() == pytest.approx(1.0)
    assert to_tensor(image).shape == (1, 3, 2, 2)
