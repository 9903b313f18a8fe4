"""What a stage hands the shared loop, and helpers the stages share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

__all__ = ["Stage", "TrainingModule", "freeze_batchnorm", "open_project", "TrainingDataError"]


class TrainingDataError(ValueError):
    """The source has nothing this stage can learn from; the message names the project."""


@dataclass
class Stage:
    """Everything stage-specific that :func:`trainer.run.fit` needs.

    Attributes
    ----------
    name : str
    model : nn.Module
        The model whose ``state_dict`` goes into checkpoints (what ``load_*`` rebuilds).
    module : nn.Module
        The training module: ``module(images)`` returns the loss function's outputs
        (wraps ``model``; shares its parameters).
    loss_fn : callable
    param_groups : list of dict
        Optimizer parameter groups; ``"lr_mult"`` scales the stage learning rate.
    train_set, val_set : Dataset
        ``val_set`` may be None.
    metric : callable
        Returns a fresh metric (``update(outputs, batch)``, ``compute()``).
    backbone : str
    classes : list of str
    background : int or None
    """

    name: str
    model: nn.Module
    module: nn.Module
    loss_fn: Callable
    param_groups: list[dict]
    train_set: Any
    val_set: Any
    metric: Callable
    backbone: str
    classes: list[str]
    background: int | None
    extra: dict = field(default_factory=dict)


def freeze_batchnorm(module: nn.Module) -> list[nn.Module]:
    """Freeze the affine parameters of every BatchNorm in ``module``; return the layers
    (the training module keeps them in eval mode in ``train()``)."""
    layers = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in layers:
        for p in m.parameters():
            p.requires_grad_(False)
    return layers


class TrainingModule(nn.Module):
    """Training view of a model: ``forward`` calls it; the BatchNorm layers of
    ``frozen_part`` (if given) have frozen affine parameters and stay in eval mode."""

    def __init__(self, net: nn.Module, *, frozen_part: nn.Module | None = None):
        super().__init__()
        self.net = net
        frozen = {id(m) for m in freeze_batchnorm(frozen_part)} if frozen_part is not None else set()
        # by name, so the layers stay frozen when replaced (SyncBatchNorm conversion)
        self._frozen = [name for name, m in self.named_modules() if id(m) in frozen]

    def train(self, mode: bool = True):
        super().train(mode)
        for name in self._frozen:
            self.get_submodule(name).eval()
        return self

    def forward(self, x: torch.Tensor):
        return self.net(x)


def open_project(path: str | Path, mode: str = "r"):
    """``napari_wsss.store.Project.open`` (imported lazily)."""
    from napari_wsss.store import Project

    return Project.open(path, mode=mode)
