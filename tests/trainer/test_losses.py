import math

import pytest
import torch
from torch import nn

from napari_wsss.models.classifier import KernelUsage, apply_kernel_usage
from trainer.losses import (
    ClassifierLoss,
    cam_pixel_loss,
    choose_one_label,
    erase_class,
    merge_tiles,
    multilabel_bce,
    puzzle_losses,
    tile_images,
)


def softplus(x):
    return math.log1p(math.exp(x))


def test_bce_averages_trained_classes_only():
    logits = torch.tensor([[0.0, 2.0]])
    targets = torch.tensor([[1.0, 0.0]])
    assert multilabel_bce(logits, targets, torch.tensor([True, False])).item() == pytest.approx(math.log(2))
    both = (math.log(2) + softplus(2.0)) / 2
    assert multilabel_bce(logits, targets, torch.tensor([True, True])).item() == pytest.approx(both)


def test_pixel_loss_by_hand():
    cams = torch.tensor([1.0, 2.0, 5.0]).view(1, 3, 1, 1).repeat(2, 1, 1, 1)
    mask = torch.tensor([[[0, 1], [255, 255]], [[255, 255], [255, 255]]])
    allowed = torch.tensor([[True, True, False], [True, True, False]])
    # class 2 is not among the image's labels, so its large score does not compete
    first = math.log(1 + math.e)          # -log softmax([1, 2])[0]
    second = math.log(1 + math.e) - 1.0   # -log softmax([1, 2])[1]
    expected = (first + second) / 2 / 2   # image 2 has no labelled pixel and adds 0
    assert cam_pixel_loss(cams, mask, allowed).item() == pytest.approx(expected, rel=1e-5)


def test_pixel_loss_background_is_a_constant_logit():
    cams = torch.tensor([9.0, 2.0, 5.0]).view(1, 3, 1, 1)
    mask = torch.zeros(1, 2, 2, dtype=torch.long)  # all background
    allowed = torch.tensor([[False, True, False]])
    loss = cam_pixel_loss(cams, mask, allowed, background=0)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(2.0)), rel=1e-5)
    cams.requires_grad_(True)
    cam_pixel_loss(cams, mask, allowed, background=0).backward()
    assert cams.grad[0, 0].abs().sum() == 0 and cams.grad[0, 1].abs().sum() > 0


def test_tiles_row_major_and_merge_inverts():
    x = torch.arange(32.0).view(2, 1, 4, 4)
    t = tile_images(x, 4)
    assert t.shape == (8, 1, 2, 2)
    assert t[1 * 2 + 0, 0].tolist() == [[2.0, 3.0], [6.0, 7.0]]    # tile 1 (top right) of image 0
    assert t[2 * 2 + 1, 0].tolist() == [[24.0, 25.0], [28.0, 29.0]]  # tile 2 (bottom left) of image 1
    assert torch.equal(merge_tiles(t, 4, 2), x)


def test_puzzle_terms_by_hand():
    cams = torch.tensor([[[[1.0, 3.0]], [[0.0, 0.0]]]])     # (1, 2, 1, 2)
    merged = torch.tensor([[[[2.0, 1.0]], [[5.0, 5.0]]]])
    targets = torch.tensor([[1.0, 0.0]])
    p_cls, re = puzzle_losses(cams, merged, targets, torch.tensor([True, True]))
    assert re.item() == pytest.approx((1 + 2) / 4)  # class 1 is absent: masked, still counted in the mean
    # merged means: class 0 -> 1.5 (target 1), class 1 -> 5 (target 0)
    assert p_cls.item() == pytest.approx((softplus(-1.5) + softplus(5.0)) / 2, rel=1e-5)


def test_puzzle_weight_ramps_over_half_the_run():
    loss = ClassifierLoss(3, puzzle_alpha=4.0, puzzle_warmup=0.5)
    loss.set_step(25, 100)
    assert loss.alpha == pytest.approx(2.0)
    loss.set_step(80, 100)
    assert loss.alpha == 4.0


def test_kernel_usage_formula():
    w = torch.tensor([1.0, 2.0]).view(2, 1, 1, 1)
    e1, e2 = math.exp(1), math.exp(2)
    got = KernelUsage(alpha=3.0)(w).flatten().tolist()
    assert got == pytest.approx([3 * 1 * e1 / (e1 + e2), 3 * 2 * e2 / (e1 + e2)])


def test_kernel_usage_leaves_background_row_alone():
    head = nn.Conv2d(1, 3, 1, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([7.0, 1.0, 2.0]).view(3, 1, 1, 1))
    apply_kernel_usage(head, alpha=1.0, background=0)
    e1, e2 = math.exp(1), math.exp(2)
    assert head.weight.flatten().tolist() == pytest.approx([7.0, e1 / (e1 + e2), 2 * e2 / (e1 + e2)])
    out = head(torch.ones(1, 1, 1, 1)).flatten()
    assert out.tolist() == pytest.approx(head.weight.flatten().tolist())


def test_classifier_loss_skips_pixels_without_corrections():
    loss = ClassifierLoss(2, pixel_weight=10.0)
    outputs = {"logits": torch.zeros(1, 2), "cams": torch.randn(1, 2, 2, 2)}
    batch = {"labels": torch.tensor([[1.0, 1.0]]), "mask": torch.full((1, 4, 4), 255),
             "has_pixels": torch.tensor([False])}
    value, parts = loss(outputs, batch)
    assert value.item() == pytest.approx(math.log(2)) and "pixel" not in parts


def test_choose_one_label_picks_a_positive_or_nothing():
    torch.manual_seed(0)
    labels = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    seen = set()
    for _ in range(50):
        c = choose_one_label(labels)
        assert c.sum(1).tolist() == [1.0, 0.0, 1.0]
        assert torch.all(c <= labels)
        seen.add(int(c[0].argmax()))
    assert seen == {0, 1}


def test_erase_class_normalises_by_the_batch_maximum():
    images = torch.ones(2, 3, 4, 4)
    cams = torch.tensor([[2.0, -1.0], [1.0, 4.0]]).view(2, 2, 1, 1)
    chosen = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    out = erase_class(images, cams, chosen)
    torch.testing.assert_close(out[0], torch.full((3, 4, 4), 0.5), atol=1e-5, rtol=0)  # 1 - 2/4
    torch.testing.assert_close(out[1], torch.zeros(3, 4, 4), atol=1e-5, rtol=0)        # 1 - 4/4
    none = erase_class(images, cams, torch.zeros(2, 2))
    assert torch.equal(none, images)
