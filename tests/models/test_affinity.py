import math

import numpy as np
import pytest
import torch

from napari_wsss.models.affinity import AffinityNet, affinity_loss, affinity_loss_terms, pair_affinity
from napari_wsss.refine import AffinityTargets, build_affinity, pair_indices, pair_targets


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return AffinityNet("resnet18", weights=None)


def test_features_are_448_channels_at_stride_8(net):
    assert net.stride == 8 and net.out_channels == 448
    feats = net(torch.randn(2, 3, 64, 96))
    assert feats.shape == (2, 448, 8, 12)


def test_pair_affinity_is_exp_of_minus_mean_l1_at_pair_indices():
    torch.manual_seed(1)
    f = torch.randn(2, 5, 6, 7)
    aff = pair_affinity(f, radius=3)
    ind_from, ind_to = pair_indices((6, 7), 3)
    flat = f.flatten(2).numpy()
    ref = np.exp(-np.abs(flat[:, :, ind_from] - flat[:, :, ind_to]).mean(1))
    np.testing.assert_allclose(aff.numpy(), ref, rtol=1e-6)


def test_loss_matches_hand_computation():
    aff = torch.tensor([[0.5, 0.9, 0.2, 0.6]])
    targets = AffinityTargets(
        bg_pos=torch.tensor([[1.0, 0, 0, 0]]),
        fg_pos=torch.tensor([[0, 1.0, 0, 0]]),
        neg=torch.tensor([[0, 0, 1.0, 1.0]]),
    )
    eps = 1e-5
    bg = -math.log(0.5 + eps) / (1 + eps)
    fg = -math.log(0.9 + eps) / (1 + eps)
    neg = -(math.log(1 + eps - 0.2) + math.log(1 + eps - 0.6)) / (2 + eps)
    assert affinity_loss(aff, targets).item() == pytest.approx(bg / 4 + fg / 4 + neg / 2, rel=1e-6)
    assert affinity_loss(aff, targets, background=False).item() == pytest.approx(fg / 2 + neg / 2, rel=1e-6)
    terms = affinity_loss_terms(aff, targets)
    assert terms["neg_count"].item() == 2


def test_loss_shape_mismatch_is_an_error():
    targets = pair_targets(np.zeros((4, 4), np.uint8), 3, background=0)
    with pytest.raises(ValueError, match="same feature grid"):
        affinity_loss(torch.rand(1, 7), targets)


def test_affinity_loss_decreases_on_a_toy_problem():
    """Two-colour images whose true masks give the pair labels: a few Adam steps on the
    head (backbone frozen, to keep the test fast) must lower the loss."""
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    net = AffinityNet("resnet18", weights=None)
    images, labels = [], []
    for k in range(2):
        mask = np.zeros((48, 48), np.uint8)
        mask[:, 16 + 8 * k :] = 3
        img = np.where(mask[..., None] == 3, 1.0, -1.0) + rng.normal(0, 0.2, (48, 48, 3))
        images.append(img.transpose(2, 0, 1))
        labels.append(mask[::8, ::8])
    x = torch.tensor(np.stack(images), dtype=torch.float32)
    targets = pair_targets(np.stack(labels), net.radius, background=0)
    assert targets.bg_pos.sum() > 0 and targets.fg_pos.sum() > 0 and targets.neg.sum() > 0
    backbone, head = net.parameter_groups()
    for p in backbone:
        p.requires_grad_(False)
    opt = torch.optim.Adam(head, lr=1e-3)
    net.train()
    losses = []
    for _ in range(5):
        loss = affinity_loss(net.pair_affinity(net(x)), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.8 * losses[0], losses


def test_affinity_graph_of_one_image(net):
    graph = net.affinity_graph(torch.randn(1, 3, 48, 64))
    assert graph.shape == (6, 8) and graph.radius == 5
    assert graph.weights.shape == (len(pair_indices((6, 8), 5)[0]),)
    assert float(graph.weights.min()) > 0 and float(graph.weights.max()) <= 1
    assert net.training  # restored


def test_build_affinity_prefers_the_model(net):
    img = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    graph = build_affinity(img, model=net, features=np.ones((4, 3, 3), np.float32))
    assert graph.shape == (6, 8) and graph.radius == net.radius


def test_config_rebuilds_the_same_architecture(net):
    clone = AffinityNet(**net.config)
    clone.load_state_dict(net.state_dict())
    x = torch.randn(1, 3, 32, 32)
    net.eval()
    clone.eval()
    torch.testing.assert_close(clone(x), net(x))
    net.train()


def test_missing_stage_stride_lists_the_available_ones():
    with pytest.raises(ValueError, match=r"available strides: \[2, 4, 8, 16, 32\]"):
        AffinityNet("resnet18", stage_strides=(8, 64), stage_channels=(64, 128))
