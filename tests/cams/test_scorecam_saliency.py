"""Score-CAM and the input-space methods against per-channel / per-class references."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cams_helpers import GapLinear, seeded_images
from napari_wsss import cams


def _minmax(t):
    lo, hi = t.min(), t.max()
    return (t - lo) / (hi - lo) if hi > lo else torch.zeros_like(t)


class StridedNet(nn.Module):
    """Target layer ``features`` at half resolution, then a conv, GAP and fc."""

    target_layer = "features"

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, 6)

    def forward(self, x):
        return self.fc(self.head(self.features(x)).mean((2, 3)))


@pytest.mark.parametrize("output,baseline,dead", [("logit", False, False), ("sigmoid", True, False),
                                                  ("logit", False, True)])
def test_scorecam_follows_wang_equation(output, baseline, dead):
    # alpha_k^c = f_c(X o s(Up(A_k))) [- f_c(0)],  M^c = sum_k alpha_k^c A_k; one channel at a time.
    model = StridedNet().eval()
    if dead:  # channels 0 and 5 are 0 everywhere: their mask is 0 and they score f_c(0)
        with torch.no_grad():
            model.features[0].bias[[0, 5]] = -1e3
    x = seeded_images(1, 16, seed=6)
    labels = [0, 3]
    maps = cams.compute(model, x, [labels], method="scorecam", output=output, baseline=baseline, batch_size=3)
    read = torch.sigmoid if output == "sigmoid" else (lambda t: t)
    with torch.no_grad():
        a = model.features(x)[0]  # (8, 8, 8)
        base = read(model(torch.zeros_like(x)))[0] if baseline else torch.zeros(6)
        ref = torch.zeros(2, 8, 8)
        for k in range(a.shape[0]):
            h = _minmax(F.interpolate(a[k][None, None], size=(16, 16), mode="bilinear", align_corners=False)[0, 0])
            score = read(model(x * h))[0]
            for j, c in enumerate(labels):
                ref[j] += (score[c] - base[c]) * a[k]
    assert ref.abs().max() > 0
    assert (a.flatten(1).amax(1) == 0).sum() == (2 if dead else 0)
    torch.testing.assert_close(maps[0], ref, rtol=1e-4, atol=1e-5)


def test_scorecam_shares_masked_forwards_across_classes():
    model = GapLinear(channels=6, classes=5).eval()
    calls = []
    handle = model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        cams.compute(model, seeded_images(1, 8), [[0, 1, 2, 3]], method="scorecam", batch_size=4)
    finally:
        handle.remove()
    # One plain forward, then 6 channels in batches of 4: independent of the 4 classes.
    assert calls == [1, 4, 2]
    with torch.no_grad():
        model.features[0].bias[[1, 2]] = -1e3  # two dead channels are one zero-image forward
    calls.clear()
    handle = model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        cams.compute(model, seeded_images(1, 8), [[0, 1, 2, 3]], method="scorecam", batch_size=4)
    finally:
        handle.remove()
    assert calls == [1, 1, 4]


def test_gradients_match_per_class_autograd():
    model = GapLinear(channels=4, classes=3).eval()
    x = seeded_images(2, 6, seed=7)
    targets = [[2, 0], [1]]
    maps = cams.compute(model, x, targets, method="gradients")
    assert maps.shape == (2, 2, 6, 6)
    for b, labels in enumerate(targets):
        for k, c in enumerate(labels):
            xb = x[b : b + 1].clone().requires_grad_(True)
            (g,) = torch.autograd.grad(model(xb)[0, c], xb)
            torch.testing.assert_close(maps[b, k], g[0].abs().amax(0))
    assert torch.all(maps[1, 1] == 0)


def test_smoothgrad_of_a_linear_model_is_its_weight_whatever_the_noise():
    lin = nn.Linear(3 * 4 * 4, 2)
    model = nn.Sequential(nn.Flatten(), lin).eval()
    maps = cams.compute(model, seeded_images(1, 4), [[1, 0]], method="smoothgrad", n_samples=5, noise=0.5,
                        batch_size=2, seed=0)
    w = lin.weight.detach().view(2, 3, 4, 4).abs().amax(1)
    torch.testing.assert_close(maps[0], w[[1, 0]])


def test_smoothgrad_without_noise_is_vanilla_gradients():
    model = GapLinear().eval()
    x = seeded_images(1, 6)
    plain = cams.compute(model, x, [[1, 3]], method="gradients")
    smooth = cams.compute(model, x, [[1, 3]], method="smoothgrad", n_samples=3, noise=0.0)
    torch.testing.assert_close(smooth, plain)


class BiasNet(nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 5, 3, stride=2, padding=1)
        self.fc = nn.Linear(5, 3)
        with torch.no_grad():
            for t in list(self.parameters()) + [self.bn.running_mean]:
                t.copy_(torch.randn(t.shape, generator=g))
            self.bn.running_var.copy_(torch.rand(4, generator=g) + 0.5)

    def forward(self, x):
        z = torch.relu(self.conv2(torch.relu(self.bn(self.conv1(x)))))
        return self.fc(z.mean((2, 3)))


def _psi(t):
    t = t.abs()
    t = t - t.min()
    return t / (t.max() + 1e-6)


def test_fullgrad_matches_the_papers_decomposition():
    model = BiasNet().eval()
    x = seeded_images(1, 8, seed=8)
    labels = [2, 0]
    maps = cams.compute(model, x, [labels], method="fullgrad")
    xr = x.clone().requires_grad_(True)
    z1 = model.conv1(xr)
    z2 = model.bn(z1)
    z3 = model.conv2(torch.relu(z2))
    logits = model.fc(torch.relu(z3).mean((2, 3)))
    bn = model.bn
    b2 = (bn.bias - bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
    for k, c in enumerate(labels):
        gx, g1, g2, g3 = torch.autograd.grad(logits[0, c], [xr, z1, z2, z3], retain_graph=True)
        ref = _psi(gx[0] * x[0]).sum(0)
        ref = ref + _psi(g1[0] * model.conv1.bias.detach()[:, None, None]).sum(0)
        ref = ref + _psi(g2[0] * b2[:, None, None]).sum(0)
        t3 = _psi(g3[0] * model.conv2.bias.detach()[:, None, None])
        ref = ref + F.interpolate(t3[None], size=(8, 8), mode="bilinear", align_corners=True)[0].sum(0)
        torch.testing.assert_close(maps[0, k], ref.detach(), rtol=1e-4, atol=1e-5)
