"""CAM, Grad-CAM and the MinMax variants against formulas worked out independently."""

import pytest
import torch
import torchvision
from torch import nn

from cams_helpers import GapLinear, seeded_images
from napari_wsss import cams
from napari_wsss.models import Classifier


def test_cam_is_head_weights_dot_features_and_gradcam_is_proportional():
    torch.manual_seed(0)
    model = Classifier("resnet18", 6).eval()
    x = seeded_images(2, 64)
    targets = [[0, 4], [5]]
    cam = cams.compute(model, x, targets, method="cam")
    with torch.no_grad():
        feats = model.backbone(x)  # (2, 512, 2, 2)
        analytic = torch.einsum("cd,bdhw->bchw", model.head.weight[:, :, 0, 0], feats)
        logits = model(x)
    assert cam.shape == (2, 2, 2, 2)
    torch.testing.assert_close(cam[0], analytic[0, [0, 4]], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cam[1, 0], analytic[1, 5], rtol=1e-5, atol=1e-5)
    assert torch.all(cam[1, 1] == 0)  # padded slot
    # Bias-free head: the spatial mean of the CAM is the logit.
    torch.testing.assert_close(cam[0].mean((1, 2)), logits[0, [0, 4]], rtol=1e-4, atol=1e-5)
    # GAP + linear: dS_c/dA_kij = W_ck / (h w), so Grad-CAM = CAM / (h w).
    grad = cams.compute(model, x, targets, method="gradcam")
    torch.testing.assert_close(grad * 4, cam, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "efficientnet_lite0"])
def test_cam_mean_plus_bias_is_the_logit_for_registry_models(name):
    from napari_wsss.models import build_torchvision_model

    torch.manual_seed(0)
    model = build_torchvision_model(name).eval()
    x = seeded_images(1, 64, seed=3)
    targets = [[7, 123, 999]]
    cam = cams.compute(model, x, targets, method="cam")
    with torch.no_grad():
        logits = model(x)[0, targets[0]]
    head = {"resnet18": lambda m: m.fc, "mobilenet_v2": lambda m: m.classifier[-1],
            "efficientnet_lite0": lambda m: m._fc}[name](model)
    torch.testing.assert_close(cam[0].mean((1, 2)) + head.bias[targets[0]].detach(), logits, rtol=1e-4, atol=1e-4)


def test_cam_refuses_a_head_that_is_not_gap_linear():
    model = torchvision.models.mobilenet_v3_small(num_classes=4).eval()
    with pytest.raises(ValueError, match="single linear head"):
        cams.compute(model, seeded_images(1, 32), [[1]], method="cam")


def _gap_linear_case():
    model = GapLinear(channels=6, classes=5).eval()
    x = seeded_images(2, 8, seed=4)
    targets = [[0, 2, 3], [4]]
    with torch.no_grad():
        feats = model.features(x)
    return model, x, targets, model.fc.weight.detach(), feats


def test_minmax_cam_equals_weight_form_for_gap_linear_head():
    model, x, targets, w, feats = _gap_linear_case()
    maps = cams.compute(model, x, targets, method="minmax-cam")
    # Image 0, labels {0, 2, 3}: w^c = W_c - (sum of the two other rows) / 2.
    for k, c in enumerate(targets[0]):
        others = [l for l in targets[0] if l != c]
        wc = w[c] - w[others].sum(0) / 2
        torch.testing.assert_close(maps[0, k], torch.einsum("d,dhw->hw", wc, feats[0]), rtol=1e-4, atol=1e-4)
    # Image 1 has one label: MinMax-CAM is plain CAM.
    torch.testing.assert_close(maps[1, 0], torch.einsum("d,dhw->hw", w[4], feats[1]), rtol=1e-4, atol=1e-4)
    assert torch.all(maps[1, 1:] == 0)


def test_d_minmax_gradcam_equals_hand_formula_for_gap_linear_head():
    model, x, targets, w, feats = _gap_linear_case()
    maps = cams.compute(model, x, targets, method="d-minmax-gradcam")
    # Gradients are W_ck / (h w) at every pixel, so summing over pixels gives
    # w^c = ReLU(W_c) - ReLU(mean of the other rows) + min(0, mean of all rows).
    labels = targets[0]
    for k, c in enumerate(labels):
        others = [l for l in labels if l != c]
        wc = torch.relu(w[c]) - torch.relu(w[others].mean(0)) + torch.clamp(w[labels].mean(0), max=0)
        torch.testing.assert_close(maps[0, k], torch.einsum("d,dhw->hw", wc, feats[0]), rtol=1e-4, atol=1e-4)
    single = torch.relu(w[4]) - 0 + torch.clamp(w[4], max=0)  # one label: no "others" term
    torch.testing.assert_close(maps[1, 0], torch.einsum("d,dhw->hw", single, feats[1]), rtol=1e-4, atol=1e-4)


def test_gradcampp_equals_eq19_for_gap_linear_head():
    model, x, targets, w, feats = _gap_linear_case()
    maps = cams.compute(model, x, targets, method="gradcam++")
    hw = feats.shape[-1] * feats.shape[-2]
    for b, labels in enumerate(targets):
        for k, c in enumerate(labels):
            g = w[c] / hw  # constant gradient per channel
            alpha = g**2 / (2 * g**2 + feats[b].sum((1, 2)) * g**3)
            wc = hw * alpha * torch.relu(g)
            torch.testing.assert_close(maps[b, k], torch.einsum("d,dhw->hw", wc, feats[b]), rtol=1e-4, atol=1e-5)


def _split_resnet(model):
    lower = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool, model.layer1, model.layer2, model.layer3)

    def upper(a):
        return model.fc(torch.flatten(model.avgpool(model.layer4(a)), 1))

    return lower, upper


@pytest.mark.parametrize("method", ["gradcam", "layercam", "minmax-cam", "d-minmax-gradcam"])
def test_spatially_varying_gradients_match_per_class_autograd(method):
    # At layer3 of a ResNet the gradients vary over space; the reference runs one
    # backward per class on an explicitly split network.
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=8).eval()
    x = seeded_images(1, 64, seed=5)
    labels = [1, 4, 6]
    maps = cams.compute(model, x, [labels], method=method, layer="layer3")
    lower, upper = _split_resnet(model)
    a = lower(x).detach().requires_grad_(True)
    logits = upper(a)
    grads = [torch.autograd.grad(logits[0, c], a, retain_graph=True)[0][0] for c in labels]
    a = a.detach()[0]
    for k, c in enumerate(labels):
        g = grads[k]
        others = sum(grads[j] for j in range(3) if j != k) / 2
        every = sum(grads) / 3
        if method == "gradcam":
            ref = torch.einsum("d,dhw->hw", g.mean((1, 2)), a)
        elif method == "layercam":
            ref = (torch.relu(g) * a).sum(0)
        elif method == "minmax-cam":
            ref = torch.einsum("d,dhw->hw", (g - others).sum((1, 2)), a)
        else:
            wd = (torch.relu(g) - torch.relu(others) + torch.clamp(every, max=0)).sum((1, 2))
            ref = torch.einsum("d,dhw->hw", wd, a)
        torch.testing.assert_close(maps[0, k], ref, rtol=1e-4, atol=1e-5)
