"""AffinityNet (Ahn & Kwak, CVPR 2018): pixel-pair semantic affinities and their loss.

Architecture. The paper's AffinityNet (ResNet-38 backbone, code
``psa/network/resnet38_aff.py``) takes feature maps of three stages (``conv4``, ``conv5``,
``conv6``, all at stride 8 thanks to dilation), reduces each with a bias-free 1x1
convolution + ELU to 64, 128 and 256 channels, concatenates them (448) and mixes them with
a final bias-free 1x1 convolution (448 -> 448) + ELU. The affinity of pixels ``i, j`` closer
than the radius (5) is ``W_ij = exp(-||f_i - f_j||_1)`` (the code averages over channels
instead of summing, which we follow).

Here the backbone is any entry of the registry (:mod:`napari_wsss.models.backbones`)
without dilation: when it is an ``nn.Sequential`` (ResNets, MobileNets, EfficientNet-B*,
ConvNeXt) we tap the last output at each of the strides in ``stage_strides``
(default 8, 16, 32), upsample the deeper maps bilinearly to the stride-8 grid and apply the
paper's head; other backbones (``efficientnet_lite0``) give their final map only
(``stage_strides=(32,)``). The initialisation follows the code: Kaiming-normal stage convs,
Xavier-uniform (gain 4) for the last one.

Loss (paper Eq. 7-9, code ``psa/train_aff.py``): cross-entropy of the affinity against
pair labels, each term averaged over its own pairs,
``L = L_bg+ / 4 + L_fg+ / 4 + L_neg / 2`` with ``L_+ = -mean log W_ij`` and
``L_neg = -mean log(1 - W_ij)``. A project without background has no background-positive
pairs; its loss is ``L_fg+ / 2 + L_neg / 2`` (same positive/negative balance).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..device import resolve_device
from ..refine.affinity_labels import AffinityTargets
from ..refine.graph import AffinityGraph, pairwise
from ..store import CheckpointError, resolve_checkpoint
from ._loading import load_weights
from .backbones import build_backbone

__all__ = ["AffinityNet", "pair_affinity", "affinity_loss", "affinity_loss_terms", "load_affinity"]

#: Channels of the 1x1 reductions of the three stages in the paper (sum 448).
PAPER_STAGE_CHANNELS = (64, 128, 256)


def pair_affinity(features: torch.Tensor, radius: int = 5) -> torch.Tensor:
    """``exp(-mean_d |f_i - f_j|)`` for every pair of ``pair_indices((h, w), radius)``.

    Parameters
    ----------
    features : Tensor, shape (B, D, h, w)
    radius : int

    Returns
    -------
    Tensor, shape (B, P)
        Differentiable affinities in ``(0, 1]``.
    """
    return pairwise(features, radius, lambda a, b: torch.exp(-(a - b).abs().mean(1)))


class AffinityNet(nn.Module):
    """Backbone stages -> 1x1 convs -> affinity features at stride 8.

    Parameters
    ----------
    backbone : str
        A name from ``napari_wsss.models.BACKBONES``.
    weights : str or None
        Backbone weights (``"IMAGENET1K_V1"``, ``"DEFAULT"``, None).
    radius : int
        Pair radius at feature resolution (paper: 5).
    stage_strides : tuple of int
        Strides of the tapped stages (paper: three stages; we use 8, 16, 32).
    stage_channels : tuple of int
        1x1 reduction widths per stage (paper: 64, 128, 256).
    """

    def __init__(
        self,
        backbone: str,
        weights: str | None = None,
        *,
        radius: int = 5,
        stage_strides: tuple[int, ...] = (8, 16, 32),
        stage_channels: tuple[int, ...] = PAPER_STAGE_CHANNELS,
    ):
        super().__init__()
        if len(stage_strides) != len(stage_channels):
            raise ValueError(
                f"stage_strides {stage_strides} and stage_channels {stage_channels} differ in length"
            )
        self.backbone_name = backbone
        self.radius = int(radius)
        self.stage_strides = tuple(int(s) for s in stage_strides)
        self.stage_channels = tuple(int(c) for c in stage_channels)
        self.backbone, _ = build_backbone(backbone, weights)
        self._taps, in_channels = self._find_stages(self.stage_strides)
        self.stride = min(self.stage_strides)
        self.reduce = nn.ModuleList(
            nn.Conv2d(c_in, c_out, 1, bias=False) for c_in, c_out in zip(in_channels, stage_channels)
        )
        width = sum(stage_channels)
        self.mix = nn.Conv2d(width, width, 1, bias=False)
        self.out_channels = width
        for conv in self.reduce:
            nn.init.kaiming_normal_(conv.weight)
        nn.init.xavier_uniform_(self.mix.weight, gain=4)

    @torch.no_grad()
    def _find_stages(self, strides):
        """Indices of the Sequential children whose outputs are the last at each stride."""
        was_training = self.backbone.training
        self.backbone.eval()
        size = 128
        x = torch.zeros(1, 3, size, size)
        found: dict[int, tuple[int, int]] = {}
        if isinstance(self.backbone, nn.Sequential):
            for i, layer in enumerate(self.backbone):
                x = layer(x)
                found[size // x.shape[-1]] = (i, x.shape[1])
        else:
            x = self.backbone(x)
            found[size // x.shape[-1]] = (-1, x.shape[1])
        self.backbone.train(was_training)
        missing = [s for s in strides if s not in found]
        if missing:
            raise ValueError(
                f"backbone {self.backbone_name!r} has no stage at stride(s) {missing}; "
                f"available strides: {sorted(found)}"
            )
        return [found[s][0] for s in strides], [found[s][1] for s in strides]

    def _stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self._taps == [-1]:
            return [self.backbone(x)]
        outs: dict[int, torch.Tensor] = {}
        last = max(self._taps)
        for i, layer in enumerate(self.backbone):
            x = layer(x)
            if i in self._taps:
                outs[i] = x
            if i == last:
                break
        return [outs[i] for i in self._taps]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Affinity features ``(B, D, h, w)`` at ``self.stride`` (``D = 448`` by default)."""
        stages = self._stages(x)
        size = stages[0].shape[-2:]
        feats = []
        for conv, f in zip(self.reduce, stages):
            f = F.elu(conv(f))
            if f.shape[-2:] != size:
                f = F.interpolate(f, size=size, mode="bilinear", align_corners=False)
            feats.append(f)
        return F.elu(self.mix(torch.cat(feats, dim=1)))

    @property
    def config(self) -> dict:
        """Constructor arguments (without weights), for checkpoints: ``AffinityNet(**config)``."""
        return {
            "backbone": self.backbone_name,
            "radius": self.radius,
            "stage_strides": list(self.stage_strides),
            "stage_channels": list(self.stage_channels),
        }

    def pair_affinity(self, features: torch.Tensor) -> torch.Tensor:
        """Affinities ``(B, P)`` of the pairs within ``self.radius`` (see :func:`pair_affinity`)."""
        return pair_affinity(features, self.radius)

    @torch.inference_mode()
    def affinity_graph(self, x: torch.Tensor) -> AffinityGraph:
        """The sparse affinity graph of one normalised image ``(1, 3, H, W)`` for the walk."""
        if x.ndim != 4 or x.shape[0] != 1:
            raise ValueError(f"expected one image of shape (1, 3, H, W), got {tuple(x.shape)}")
        was_training = self.training
        self.eval()
        feats = self(x)
        self.train(was_training)
        return AffinityGraph.from_pair_weights(feats.shape[-2:], self.radius, self.pair_affinity(feats)[0])

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """``(backbone, head)`` parameters: the paper trains the new head with 10x the lr."""
        head = [p for m in (self.reduce, self.mix) for p in m.parameters()]
        return list(self.backbone.parameters()), head


def affinity_loss_terms(
    affinity: torch.Tensor, targets: AffinityTargets, *, eps: float = 1e-5
) -> dict[str, torch.Tensor]:
    """The three averaged terms of the AffinityNet loss and their pair counts.

    Parameters
    ----------
    affinity : Tensor, shape (B, P)
        Predicted ``W_ij`` in ``(0, 1]``.
    targets : AffinityTargets
        Pair labels of the same shape (see :func:`napari_wsss.refine.pair_targets`).
    eps : float
        Added inside the logarithms and to the counts (the paper's code uses 1e-5).

    Returns
    -------
    dict
        ``bg_pos``, ``fg_pos``, ``neg`` (scalar losses) and ``bg_count``, ``fg_count``,
        ``neg_count``.
    """
    bg, fg, neg = (t.to(affinity.device, affinity.dtype) for t in targets)
    if not (bg.shape == fg.shape == neg.shape == affinity.shape):
        raise ValueError(
            f"affinity shape {tuple(affinity.shape)} does not match targets "
            f"{tuple(bg.shape)}: compute both on the same feature grid and radius"
        )
    log_pos = torch.log(affinity + eps)
    log_neg = torch.log(1.0 + eps - affinity)
    counts = [bg.sum(), fg.sum(), neg.sum()]
    return {
        "bg_pos": -(bg * log_pos).sum() / (counts[0] + eps),
        "fg_pos": -(fg * log_pos).sum() / (counts[1] + eps),
        "neg": -(neg * log_neg).sum() / (counts[2] + eps),
        "bg_count": counts[0],
        "fg_count": counts[1],
        "neg_count": counts[2],
    }


def affinity_loss(
    affinity: torch.Tensor,
    targets: AffinityTargets,
    *,
    background: bool = True,
    eps: float = 1e-5,
) -> torch.Tensor:
    """AffinityNet loss ``L_bg+/4 + L_fg+/4 + L_neg/2`` (``L_fg+/2 + L_neg/2`` without background).

    Parameters
    ----------
    affinity : Tensor, shape (B, P)
    targets : AffinityTargets
    background : bool
        Whether the project has a background class.
    eps : float

    Returns
    -------
    Tensor
        Scalar loss.
    """
    terms = affinity_loss_terms(affinity, targets, eps=eps)
    if background:
        return terms["bg_pos"] / 4 + terms["fg_pos"] / 4 + terms["neg"] / 2
    return terms["fg_pos"] / 2 + terms["neg"] / 2


def load_affinity(project_or_checkpoint, device=None, *, classes=None) -> AffinityNet:
    """The trained AffinityNet of a project (latest checkpoint) or from a checkpoint file.

    Arguments and errors as :func:`napari_wsss.models.load_classifier` (plus a
    `CheckpointError` for a checkpoint without ``model_config``). Returns the net rebuilt
    from the checkpoint's ``model_config``, in eval mode on ``device``, with ``classes`` and
    ``background`` attributes; use it with ``napari_wsss.refine.build_affinity(image, model=net)``.
    """
    state, path = resolve_checkpoint(project_or_checkpoint, "affinity", classes=classes)
    config = state.get("model_config")
    if not isinstance(config, dict):
        raise CheckpointError(f"checkpoint {path} lacks the AffinityNet config ('model_config')")
    net = AffinityNet(**config, weights=None)
    load_weights(net, state["model"], path=path)
    net.classes = list(state["classes"])
    net.background = state.get("background")
    return net.to(resolve_device(device)).eval()
