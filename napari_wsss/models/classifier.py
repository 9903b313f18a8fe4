"""Multi-label classifier: backbone features, then a bias-free 1x1 convolution and GAP.

Because the head is linear and has no bias, the class activation map of class ``c`` is
exactly ``head.weight[c] . features`` and its spatial mean is the logit of ``c``:
CAMs are differentiable by-products of the forward pass (what the trainer's heatmap
losses and ``napari_wsss.cams``'s ``cam`` method use).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..device import resolve_device
from ..store import resolve_checkpoint
from ._loading import load_weights
from .backbones import build_backbone, build_torchvision_model, get_spec

__all__ = ["Classifier", "KernelUsage", "apply_kernel_usage", "load_classifier"]


class Classifier(nn.Module):
    """Backbone + GAP + bias-free linear head.

    Parameters
    ----------
    backbone : str
        A name from ``napari_wsss.models.BACKBONES``.
    num_classes : int
        Number of classes ``C``: the project's whole class list (a background column, if any,
        is never trained nor explained).
    weights : str or None
        Backbone weights as torchvision names them (``"IMAGENET1K_V1"``, ``"DEFAULT"``).
    """

    target_layer = "backbone"

    def __init__(self, backbone: str, num_classes: int, weights: str | None = None):
        super().__init__()
        self.backbone_name = backbone
        self.num_classes = num_classes
        self.backbone, channels = build_backbone(backbone, weights)
        self.stride = get_spec(backbone).stride
        self.head = nn.Conv2d(channels, num_classes, kernel_size=1, bias=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W) -> (B, D, h, w)``."""
        return self.backbone(x)

    def cams(self, features: torch.Tensor) -> torch.Tensor:
        """Class activation maps ``(B, C, h, w)`` from features (differentiable)."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, C)``: the spatial mean of the CAMs."""
        return self.head(self.features(x).mean((2, 3), keepdim=True)).flatten(1)

    def forward_with_cams(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, C)`` and CAMs ``(B, C, h, w)`` from one forward pass."""
        cams = self.cams(self.features(x))
        return cams.mean((2, 3)), cams

    @classmethod
    def from_imagenet(
        cls, backbone: str, class_rows: list[list[int]], weights: str = "IMAGENET1K_V1"
    ) -> "Classifier":
        """A classifier whose classes are sums of ImageNet-1k classes, with no training.

        Class ``k``'s head row is the sum of the ImageNet classifier rows ``class_rows[k]``
        (e.g. all five domestic-cat classes for "cat"). The ImageNet bias is dropped: it
        shifts a logit by a constant and leaves the CAM's shape unchanged.
        """
        full = build_torchvision_model(backbone, weights)
        fc = _final_linear(full)
        model = cls(backbone, len(class_rows), weights=None)
        model.backbone.load_state_dict(get_spec(backbone).features_of(full).state_dict())
        with torch.no_grad():
            w = torch.stack([fc.weight[list(rows)].sum(0) for rows in class_rows])
            model.head.weight.copy_(w[:, :, None, None])
        return model


def _final_linear(model: nn.Module) -> nn.Linear:
    """The last ``nn.Linear`` of a torchvision-style classifier (``fc``, ``classifier[-1]``, ``_fc``)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no linear classification layer")
    return linears[-1]


class KernelUsage(nn.Module):
    """Parametrisation ``W -> alpha * W * softmax(W, dim=0)`` over the given class rows."""

    def __init__(self, alpha: float = 1.0, rows: list[int] | None = None):
        super().__init__()
        self.alpha = alpha
        self.rows = None if rows is None else list(rows)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.rows is None:
            return self.alpha * w * torch.softmax(w, dim=0)
        idx = torch.as_tensor(self.rows, device=w.device)
        sub = w.index_select(0, idx)
        return w.index_copy(0, idx, self.alpha * sub * torch.softmax(sub, dim=0))


def apply_kernel_usage(head: nn.Conv2d, *, alpha: float = 1.0, background: int | None = None):
    """Register KUR on a classifier head; the background row (if any) is left out."""
    rows = None
    if background is not None:
        rows = [i for i in range(head.out_channels) if i != background]
    parametrize.register_parametrization(head, "weight", KernelUsage(alpha, rows))
    return head


def load_classifier(project_or_checkpoint, device=None, *, classes=None) -> Classifier:
    """The trained classifier of a project (latest checkpoint) or from a checkpoint file.

    Parameters
    ----------
    project_or_checkpoint : Project, path to a project directory, or path to a ``.pt`` file
    device : str or torch.device, optional
        Default: CUDA when present, else CPU.
    classes : list of str, optional
        Expected class list (checked in any case against a project's).

    Returns
    -------
    Classifier
        In eval mode, on ``device``. KUR-trained heads are returned with the effective
        weight ``alpha * W * softmax(W)`` baked in, so CAMs are ``head(features)`` as usual.

    Raises
    ------
    FileNotFoundError, CheckpointError, ValueError
        Missing/corrupted file, wrong stage, or a class list differing from the project's.
    """
    state, path = resolve_checkpoint(project_or_checkpoint, "classifier", classes=classes)
    cfg = state["config"].get("classifier", {})
    net = Classifier(state["backbone"], len(state["classes"]), weights=None)
    if cfg.get("kur"):
        apply_kernel_usage(net.head, alpha=cfg.get("kur_alpha", 1.0), background=state.get("background"))
    load_weights(net, state["model"], path=path)
    if cfg.get("kur"):
        parametrize.remove_parametrizations(net.head, "weight", leave_parametrized=True)
    net.classes = list(state["classes"])
    return net.to(resolve_device(device)).eval()
