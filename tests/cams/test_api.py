"""compute(): targets, layers, errors, differentiability, devices and hook hygiene."""

import gc

import numpy as np
import pytest
import torch
import torchvision

from cams_helpers import GapLinear, seeded_images
from napari_wsss import cams
from napari_wsss.models import Classifier


@pytest.fixture(scope="module")
def model():
    return GapLinear(channels=6, classes=5).eval()


def test_multi_hot_targets_equal_index_lists(model):
    x = seeded_images(3, 8)
    hot = torch.zeros(3, 5, dtype=torch.bool)
    hot[0, [1, 3]] = True
    hot[2, 4] = True
    lists = [[1, 3], [], [4]]
    a = cams.compute(model, x, hot, method="gradcam")
    b = cams.compute(model, x, lists, method="gradcam")
    c = cams.compute(model, x, hot.float().numpy(), method="gradcam")
    assert a.shape == (3, 2, 8, 8)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
    assert torch.all(a[1] == 0) and torch.all(a[2, 1] == 0)
    assert a[0].abs().sum() > 0 and a[2, 0].abs().sum() > 0


def test_no_targets_gives_an_empty_class_axis(model):
    out = cams.compute(model, seeded_images(2, 8), [[], []], method="layercam")
    assert out.shape == (2, 0, 8, 8)


def test_unknown_method_lists_valid_methods(model):
    with pytest.raises(ValueError) as err:
        cams.compute(model, seeded_images(1, 8), [[0]], method="grad-cam")
    for name in ("cam", "gradcam", "gradcam++", "scorecam", "layercam", "minmax-cam", "d-minmax-gradcam",
                 "gradients", "smoothgrad", "fullgrad"):
        assert f"{name}," in str(err.value) or str(err.value).endswith(name)


def test_unknown_option_and_layer_for_input_methods_are_errors(model):
    with pytest.raises(TypeError, match="valid options: eps"):
        cams.compute(model, seeded_images(1, 8), [[0]], method="gradcam++", epsilon=1)
    with pytest.raises(ValueError, match="takes no layer"):
        cams.compute(model, seeded_images(1, 8), [[0]], method="gradients", layer="features")


@pytest.mark.parametrize(
    "targets,match",
    [([[0], [1]], "2 target lists for 1 images"), ([[7]], "out of range"), ([[-1]], "negative"),
     ([3], "list of class indices"), (np.array([[0, 2, 0, 0, 0]]), "multi-hot")],
)
def test_bad_targets_are_explained(model, targets, match):
    with pytest.raises(ValueError, match=match):
        cams.compute(model, seeded_images(1, 8), targets, method="gradcam")


def test_bad_images_are_explained(model):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        cams.compute(model, torch.zeros(3, 8, 8), [[0]], method="cam")


def test_unknown_layer_lists_valid_layers():
    m = torchvision.models.resnet18(num_classes=3)
    with pytest.raises(ValueError) as err:
        cams.compute(m, seeded_images(1, 32), [[0]], method="gradcam", layer="layer5")
    msg = str(err.value)
    assert "Did you mean" in msg and "layer4" in msg and "layer3.1.conv2" in msg


def test_layer_as_name_or_module_gives_the_same_map():
    m = torchvision.models.resnet18(num_classes=3).eval()
    x = seeded_images(1, 64)
    by_name = cams.compute(m, x, [[0, 2]], method="gradcam", layer="layer3.1")
    by_module = cams.compute(m, x, [[0, 2]], method="gradcam", layer=m.layer3[1])
    default = cams.compute(m, x, [[0, 2]], method="gradcam")
    torch.testing.assert_close(by_name, by_module)
    assert by_name.shape[-1] == 4 and default.shape[-1] == 2  # layer3 is stride 16, layer4 stride 32


@pytest.mark.parametrize(
    "build,expected",
    [
        (lambda: torchvision.models.resnet18(), "layer4"),
        (lambda: torchvision.models.mobilenet_v2(), "features"),
        (lambda: torchvision.models.mobilenet_v3_small(), "features"),
        (lambda: torchvision.models.efficientnet_b0(), "features"),
        (lambda: torchvision.models.convnext_tiny(), "features"),
        (lambda: __import__("efficientnet_lite_pytorch").EfficientNet.from_name("efficientnet-lite0"), "_bn1"),
        (lambda: Classifier("mobilenet_v2", 3), "backbone"),
    ],
)
def test_default_layers_of_supported_backbones(build, expected):
    name, module = cams.resolve_layer(build())
    assert name == expected
    assert isinstance(module, torch.nn.Module)


def test_differentiable_maps_train_the_model():
    torch.manual_seed(0)
    model = Classifier("resnet18", 4).eval()
    x = seeded_images(2, 32)
    targets = [[0, 1], [3]]
    for method in ("cam", "gradcam", "gradcam++", "layercam", "minmax-cam", "d-minmax-gradcam"):
        model.zero_grad()
        maps = cams.compute(model, x, targets, method=method, differentiable=True)
        plain = cams.compute(model, x, targets, method=method)
        assert maps.requires_grad and not plain.requires_grad
        torch.testing.assert_close(maps.detach(), plain, rtol=1e-5, atol=1e-6)
        maps.clamp_min(0).sum().backward()
        assert model.backbone[0].weight.grad.abs().sum() > 0, method  # reaches the first conv
        assert model.head.weight.grad.abs().sum() > 0, method


def test_works_under_no_grad_and_inference_mode(model):
    x = seeded_images(1, 8)
    ref = cams.compute(model, x, [[2]], method="gradcam")
    with torch.no_grad():
        a = cams.compute(model, x, [[2]], method="gradcam")
    with torch.inference_mode():
        b = cams.compute(model, x.clone(), [[2]], method="gradcam")
    torch.testing.assert_close(a, ref)
    torch.testing.assert_close(b, ref)
    assert torch.is_grad_enabled()


def _hook_count(m):
    return sum(len(mod._forward_hooks) + len(mod._backward_hooks) + len(mod._forward_pre_hooks) for mod in m.modules())


def _live_tensors():
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))


def test_no_hook_or_tensor_leak_over_1000_calls(model):
    x = seeded_images(2, 8)
    before_hooks = _hook_count(model)
    # Every hook path: LayerCapture in its three modes (gradcam/cam/scorecam), MultiCapture (fullgrad).
    methods = ["gradcam", "cam", "layercam", "d-minmax-gradcam", "fullgrad", "scorecam"]
    for i in range(20):  # warm-up
        cams.compute(model, x, [[0, 1], [2]], method=methods[i % len(methods)])
    before_tensors = _live_tensors()
    for i in range(1000):
        cams.compute(model, x, [[0, 1], [2]], method=methods[i % len(methods)])
    assert _hook_count(model) == before_hooks == 0
    assert _live_tensors() - before_tensors <= 5
    assert torch.is_grad_enabled()


def test_hooks_are_removed_when_the_method_fails(model):
    with pytest.raises(ValueError):
        cams.compute(model, seeded_images(1, 8), [[9]], method="gradcam")  # class 9 of 5: fails after forward
    assert _hook_count(model) == 0 and torch.is_grad_enabled()


def test_maps_follow_the_model_to_its_device(model):
    out = cams.compute(model, seeded_images(1, 8).to(torch.float32), [[0]], method="gradcam")
    assert out.device == next(model.parameters()).device


def test_normalize_and_upsample():
    maps = torch.tensor([[[[-1.0, 1.0], [3.0, 5.0]], [[2.0, 2.0], [2.0, 2.0]]]])
    n = cams.normalize(maps)
    torch.testing.assert_close(n[0, 0], torch.tensor([[0.0, 0.2], [0.6, 1.0]]))
    assert torch.all(n[0, 1] == 0)  # constant map: zero-safe
    torch.testing.assert_close(cams.normalize(maps, relu=False)[0, 0], torch.tensor([[0.0, 1 / 3], [2 / 3, 1.0]]))
    up = cams.upsample(torch.tensor([[[0.0, 1.0]]]), (1, 4))  # (K, h, w) input
    torch.testing.assert_close(up, torch.tensor([[[0.0, 0.25, 0.75, 1.0]]]))


class _BranchyDouble(torch.autograd.Function):
    """x -> 2x with a data-dependent Python branch in backward (no vmap batching rule)."""

    @staticmethod
    def forward(ctx, x):
        return 2 * x

    @staticmethod
    def backward(ctx, g):
        if g.abs().sum() >= 0:  # bool() of a tensor: not batchable under vmap
            return 2 * g
        return g  # pragma: no cover


class _BranchyHead(GapLinear):
    def forward(self, x):
        return self.fc(_BranchyDouble.apply(self.features(x)).mean((2, 3)))


def test_heads_without_batching_rules_fall_back_to_one_backward_per_target():
    model = _BranchyHead(channels=6, classes=5).eval()
    x = seeded_images(2, 8)
    maps = cams.compute(model, x, [[0, 3], [4]], method="gradcam")
    with torch.no_grad():
        feats = model.features(x)
    w = model.fc.weight.detach()
    # d logit_c / dA = 2 W_c / (h w): Grad-CAM = 2 W_c . A / 64
    for b, labels in enumerate([[0, 3], [4]]):
        for k, c in enumerate(labels):
            ref = torch.einsum("d,dhw->hw", 2 * w[c] / 64, feats[b])
            torch.testing.assert_close(maps[b, k], ref, rtol=1e-4, atol=1e-6)


def test_data_parallel_wrapped_models_resolve_through_the_wrapper(model):
    wrapped = torch.nn.DataParallel(model)
    assert cams.resolve_layer(wrapped)[0] == "module.features"
    x = seeded_images(1, 8)
    for method in ("cam", "gradcam"):
        torch.testing.assert_close(cams.compute(wrapped, x, [[1, 2]], method=method),
                                   cams.compute(model, x, [[1, 2]], method=method))


def test_needs_grad_says_which_methods_back_propagate(model):
    """A method declaring ``needs_grad = False`` never sends a gradient through the model
    (the pipeline runs it under ``inference_mode``); every other one does."""
    calls = []

    def watch(module, inputs, output):
        if output.requires_grad:
            output.register_hook(lambda grad: calls.append(1))

    handle = model.fc.register_forward_hook(watch)
    try:
        x = seeded_images(2, 8)
        declared = {}
        for name, cls in cams.METHODS.items():
            calls.clear()
            out = cams.compute(model, x, [[1], [2, 3]], method=name)
            declared[name] = cls.needs_grad
            assert bool(calls) == cls.needs_grad, name
            if not cls.needs_grad:
                with torch.inference_mode():
                    torch.testing.assert_close(cams.compute(model, x, [[1], [2, 3]], method=name), out)
    finally:
        handle.remove()
    assert {n for n, g in declared.items() if not g} == {"cam", "scorecam"}
