import pytest
import torch
from torch import nn

from trainer.classifier import MeanAveragePrecision
from trainer.loop import evaluate
from trainer.segmenter import MeanIoU


class RedIsClassOne(nn.Module):
    """Logits (class 0, class 1) = (-red, red) of the normalised image."""

    def forward(self, x):
        return torch.cat([-x[:, :1], x[:, :1]], 1)


def test_evaluate_miou_by_hand():
    image = torch.zeros(1, 3, 4, 4)
    image[:, 0, :, :2] = 1.0  # red left half -> predicted class 1 (normalised red > 0)
    mask = torch.zeros(1, 4, 4, dtype=torch.long)
    mask[:, :, :2] = 1
    mask[:, :2, 2:] = 1        # 4 pixels of class 1 predicted as 0
    model = RedIsClassOne().train()
    got = evaluate(model, [{"image": image, "mask": mask}], MeanIoU(2), device=torch.device("cpu"))
    # class 1: TP 8, FN 4 -> 8/12; class 0: TP 4, FP 4 -> 1/2
    assert got["mIoU"] == pytest.approx((8 / 12 + 0.5) / 2)
    assert got["pixel_accuracy"] == pytest.approx(12 / 16)
    assert model.training  # evaluate restores the mode


def test_mean_average_precision_by_hand():
    m = MeanAveragePrecision([0, 1])
    m.update({"logits": torch.tensor([[0.9, 0.1], [0.8, 0.2]])}, {"labels": torch.tensor([[1.0, 0], [0, 0]])})
    m.update({"logits": torch.tensor([[0.1, 0.3]])}, {"labels": torch.tensor([[1.0, 0]])})
    # class 0 ranks (pos, neg, pos): AP = (1/1 + 2/3) / 2; class 1 has no positive: left out
    ap0 = pytest.approx((1 + 2 / 3) / 2)
    assert m.compute() == {"mAP": ap0, "images": 3, "AP": {"0": ap0}}
