"""The Explainer's losses (Stalder et al. 2022): hand-computed values and the behaviour the paper
describes, on tiny tensors and a hand-built classifier whose evidence is known exactly."""

import math

import numpy as np
import pytest
import torch

from napari_wsss.models.explainer import (
    ExplainerLoss,
    aggregate_masks,
    area_constraint_loss,
    classification_loss,
    entropy_loss,
    total_variation,
)


def test_aggregate_masks_max_over_present_and_absent_classes():
    masks = torch.tensor([[[[0.2, 0.9]], [[0.5, 0.1]], [[0.7, 0.3]]],
                          [[[0.4, 0.6]], [[0.8, 0.2]], [[0.1, 0.5]]]])  # (2, 3, 1, 2)
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    m, n = aggregate_masks(masks, targets)
    np.testing.assert_allclose(m.numpy(), [[[0.7, 0.9]], [[0.0, 0.0]]])  # no label: nothing kept
    np.testing.assert_allclose(n.numpy(), [[[0.5, 0.1]], [[0.8, 0.6]]])
    with pytest.raises(ValueError, match=r"targets must be \(B, C\) = \(2, 3\)"):
        aggregate_masks(masks, targets[:, :2])


def test_classification_loss_is_mean_binary_cross_entropy():
    logits = torch.tensor([[0.0, 2.0]])
    targets = torch.tensor([[1.0, 0.0]])
    # -log(sigmoid(0)) = log 2 and -log(1 - sigmoid(2)) = log(1 + e^2), averaged.
    expected = (math.log(2) + math.log(1 + math.e**2)) / 2
    assert classification_loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_entropy_term_is_minimal_at_the_uniform_prediction():
    c = 4
    uniform = torch.zeros(1, c, requires_grad=True)
    value = entropy_loss(uniform)
    assert value.item() == pytest.approx(-math.log(c) / c, rel=1e-6)  # (1/C) sum (1/C) log(1/C)
    value.backward()
    np.testing.assert_allclose(uniform.grad.numpy(), 0.0, atol=1e-7)  # a stationary point
    assert entropy_loss(torch.tensor([[100.0, 0.0, 0.0, 0.0]])).item() == pytest.approx(0.0, abs=1e-6)
    # p = (1/2, 1/2, 0, 0) exactly representable: (1/4) * 2 * (1/2) log(1/2) = -log(2) / 4.
    half = torch.tensor([[0.0, 0.0, -float("inf"), -float("inf")]])
    assert entropy_loss(half).item() == pytest.approx(-math.log(2) / 4, rel=1e-6)
    others = torch.randn(50, c, generator=torch.Generator().manual_seed(0))
    assert all(entropy_loss(row[None]).item() > -math.log(c) / c for row in others)


def test_area_constraint_hand_values():
    # 10 pixels; min_area 0.2 -> the two largest values should be 1; max_area 0.4 -> at most 4 on.
    zeros = torch.zeros(1, 1, 2, 5)
    ones = torch.ones(1, 1, 2, 5)
    three = torch.zeros(1, 1, 2, 5)
    three[0, 0, 0, :3] = 1
    y = torch.ones(1, 1)
    kw = dict(min_area=0.2, max_area=0.4)
    assert area_constraint_loss(zeros, y, **kw).item() == pytest.approx(2 / 10)  # two pixels short of 1
    assert area_constraint_loss(ones, y, **kw).item() == pytest.approx(6 / 10)  # six pixels too many
    assert area_constraint_loss(three, y, **kw).item() == 0.0
    assert area_constraint_loss(ones, torch.zeros(1, 1), **kw).item() == 0.0  # absent class: free
    two = torch.cat([zeros, ones], 1)
    assert area_constraint_loss(two, torch.ones(1, 2), **kw).item() == pytest.approx(0.8)  # summed
    with pytest.raises(ValueError, match="min_area <= max_area"):
        area_constraint_loss(zeros, y, min_area=0.5, max_area=0.3)


def test_area_terms_shrink_a_mask_that_is_too_large():
    logits = torch.full((1, 1, 8, 8), 3.0, requires_grad=True)
    y = torch.ones(1, 1)
    s = torch.sigmoid(logits)
    m, n = aggregate_masks(s, y)
    (area_constraint_loss(s, y) + 0.1 * m.mean()).backward()
    grad = logits.grad[0, 0].flatten()
    # Descent lowers all pixels but the floor(0.05 * 64) = 3 largest, which the minimum-area
    # part pulls towards 1 (their gradient is -(1 - 0.1) / 64 * sigmoid'(3) < 0).
    assert int((grad < 0).sum()) == 3 and int((grad > 0).sum()) == 61
    with torch.no_grad():
        after = torch.sigmoid(logits - 10.0 * logits.grad)
    assert after.sum() < s.sum()


def test_total_variation_hand_values():
    assert total_variation(torch.full((2, 4, 5), 0.7)).item() == 0.0
    stripes = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])  # two horizontal jumps of 1, over 4 pixels
    assert total_variation(stripes).item() == pytest.approx(2 / 4)
    checker = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])  # two horizontal + two vertical jumps
    assert total_variation(checker).item() == pytest.approx(4 / 4)


# -- a classifier whose evidence is known: mean of colour detectors (GAP, like napari_wsss's) ----
MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
COLOURS = torch.tensor([[230, 30, 30], [30, 200, 30], [40, 60, 230]]) / 255.0


class ColourClassifier(torch.nn.Module):
    """``logit_c = 30 * mean_pixels relu(<x, u_c> - 1) - 3`` on normalised images: only
    pixels of colour ``c`` count (their projection is >= 2.5, the noise's <= 0.87), and all
    of them are needed for the full score."""

    def __init__(self):
        super().__init__()
        u = torch.sign((COLOURS[:, :, None, None] - MEAN) / STD)[:, :, 0, 0]
        self.u = u / u.norm(dim=1, keepdim=True)

    def forward(self, x):
        score = torch.relu(torch.einsum("bchw,kc->bkhw", x, self.u) - 1.0)
        return 30.0 * score.mean((2, 3)) - 3.0


def _square_image(size=32, *, cls=0, box=(8, 20, 10, 22), seed=0):
    rng = np.random.default_rng(seed)
    img = torch.from_numpy(rng.uniform(80, 110, (3, size, size)) / 255.0).float()
    y0, y1, x0, x1 = box
    img[:, y0:y1, x0:x1] = COLOURS[cls][:, None, None]
    truth = torch.zeros(size, size, dtype=torch.bool)
    truth[y0:y1, x0:x1] = True
    return ((img - MEAN) / STD)[None], truth


def _optimise(x, targets, loss: ExplainerLoss, steps=300):
    # Start from masks of 0.73: a pixel of the square dimmed below 0.4 gives the detector
    # nothing (ReLU), so a start at 0.5 would leave little gradient to climb.
    logits = torch.full((x.shape[0], targets.shape[1], *x.shape[-2:]), 1.0, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.1)
    clf = ColourClassifier()
    for _ in range(steps):
        value, parts = loss(logits, x, targets, clf)
        opt.zero_grad()
        value.backward()
        opt.step()
    return logits.detach(), parts, clf


def test_classifier_evidence_is_the_square():
    x, truth = _square_image()
    clf = ColourClassifier()
    logits = clf(x)[0]
    assert logits[0] > 2 and logits[1] == -3 and logits[2] == -3
    assert torch.allclose(clf(x * truth), clf(x))  # the square alone is all the evidence
    assert torch.equal(clf(x * ~truth), torch.full((1, 3), -3.0))  # without it: uniform


def test_full_objective_finds_the_evidence_region():
    """Mask logits optimised directly (no network) under the paper's default weights: the
    class mask (> 0.5) is the 12 x 12 square. IoU > 0.9 allows at most ~14 pixels of error
    (a 1-pixel rim on one side of the square is 12): the square's area (14 % of the image)
    lies inside [min_area, max_area], so nothing in the objective pulls the optimum off it."""
    x, truth = _square_image()
    y = torch.tensor([[1.0, 0.0, 0.0]])
    logits, parts, clf = _optimise(x, y, ExplainerLoss(), steps=150)
    mask = torch.sigmoid(logits[0, 0]) > 0.5
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.9, float(iou)
    assert torch.sigmoid(logits[0, 1:]).max() < 0.1  # absent classes get no mask
    m = torch.sigmoid(logits[0, 0])
    assert clf(x * m)[0, 0] > 2.0  # the masked image keeps the class


def test_entropy_term_makes_the_inverse_masked_prediction_uniform():
    x, truth = _square_image()
    y = torch.tensor([[1.0, 0.0, 0.0]])
    only_entropy = ExplainerLoss(tv_weight=0, area_constraint_weight=0, target_area_weight=0,
                                 nontarget_area_weight=0)
    before = torch.softmax(ColourClassifier()(x), 1)
    logits, parts, clf = _optimise(x, y, only_entropy, steps=100)
    m = torch.sigmoid(logits[0, 0])
    after = torch.softmax(clf(x * (1 - m)), 1)
    assert before[0, 0] > 0.9
    np.testing.assert_allclose(after.numpy(), 1 / 3, atol=0.01)
    assert parts["entropy"].item() == pytest.approx(-math.log(3) / 3, abs=1e-3)


def test_area_term_alone_shrinks_the_masks():
    x, _ = _square_image()
    y = torch.tensor([[1.0, 0.0, 0.0]])
    only_area = ExplainerLoss(entropy_weight=0, tv_weight=0)

    class Blind(torch.nn.Module):  # a constant prediction: classification gives no gradient
        def forward(self, x):
            return torch.zeros(x.shape[0], 3) + 0 * x.sum()

    logits = torch.full((1, 3, 32, 32), 2.0, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.1)
    areas = []
    for _ in range(60):
        value, parts = only_area(logits, x, y, Blind())
        areas.append(torch.sigmoid(logits.detach()).mean().item())
        opt.zero_grad()
        value.backward()
        opt.step()
    assert areas[-1] < 0.5 * areas[0]
    # The present class keeps between floor(0.05 * 1024) = 51 and floor(0.3 * 1024) = 307
    # pixels; the absent classes, pushed only by the non-target area term, vanish.
    on = int((torch.sigmoid(logits[0, 0]) > 0.5).sum())
    assert 51 <= on <= 307
    assert torch.sigmoid(logits[0, 1:]).max() < 0.5
