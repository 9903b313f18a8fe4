"""Small models and helpers shared by the CAM tests (not a test module)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class GapLinear(nn.Module):
    """conv -> ReLU ("features", the target layer) -> global average pool -> fc."""

    target_layer = "features"  # the attribute napari_wsss.models.Classifier also uses

    def __init__(self, channels: int = 6, classes: int = 5, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.features = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(channels, classes)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


class FirstChannelCAM(nn.Module):
    """A model whose CAM of class 0 is the image's first channel (weight 1, no bias)."""

    target_layer = "features"

    def __init__(self):
        super().__init__()
        self.features = nn.Conv2d(3, 1, 1, bias=False)
        self.fc = nn.Linear(1, 2, bias=False)
        with torch.no_grad():
            self.features.weight.zero_()
            self.features.weight[0, 0] = 1.0
            self.fc.weight.copy_(torch.tensor([[1.0], [-1.0]]))

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


def pearson(a, b) -> float:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def seeded_images(b: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.randn((b, 3, size, size), generator=torch.Generator().manual_seed(seed))
