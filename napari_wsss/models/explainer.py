"""The Explainer's losses (Stalder et al., "What You See is What You Classify: Black Box
Attributions", NeurIPS 2022), as pure functions of tensors.

An Explainer network ``E`` (a segmentation network; the trainer builds a DeepLabV3+)
maps an image ``x`` to logits ``S = E(x)`` of shape ``(C, H, W)``: one sigmoid mask
``s_c = sigmoid(S_c)`` per class. A frozen classifier ``F`` (the Explanandum) is explained.
For the image-level labels ``y`` (multi-hot, ``(C,)``):

* target mask ``m = max_{c : y_c = 1} s_c`` and non-target mask
  ``n = max_{c : y_c = 0} s_c`` (pixel-wise; the max over no class is 0);
* ``L_c = BCE(F(m * x), y)``: the masked image must still be classified as ``y``;
* ``L_e = (1/C) sum_c p_c log p_c`` with ``p = softmax(F((1 - m) * x))``: the negative
  entropy of the prediction on the inverse-masked image, minimal (``-log(C) / C``) when
  that prediction is uniform, i.e. when nothing of the classes is left outside ``m``;
* ``L_a = lambda_c * sum_{c : y_c = 1} A(s_c) + lambda_m * mean(m) + lambda_n * mean(n)``:
  each present class's mask covers between ``a_min`` and ``a_max`` of the image (``A``
  compares the sorted mask with the ideal sorted mask of that area, as Extremal
  Perturbations do), and the total target / non-target areas are kept small;
* ``L_tv = TV(m) + TV(n)``: anisotropic total variation, per pixel.

``L_E = L_c + lambda_e L_e + L_a + lambda_tv L_tv``. Images are masked in the classifier's
(ImageNet-normalised) input space, so a removed pixel becomes the dataset mean colour.
Defaults follow the authors' code (``NN-Explainer``, ``src/utils/argparser.py``):
``lambda_e = 1``, ``lambda_tv = 1``, ``lambda_c = 1``, ``lambda_m = 0.1``,
``lambda_n = 0.3``, ``a_min = 0.05``, ``a_max = 0.3``.

The trained network is loaded with :func:`load_explainer` and its masks computed with
:func:`explainer_maps` / :func:`predict_explainer` (training: ``trainer.explainer``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..store import checkpoint_version
from ..transforms import to_tensor
from .segmenter import load_segmentation_net

__all__ = [
    "aggregate_masks",
    "classification_loss",
    "entropy_loss",
    "area_constraint_loss",
    "total_variation",
    "ExplainerLoss",
    "load_explainer",
    "explainer_maps",
    "predict_explainer",
]


def _check(masks: torch.Tensor, targets: torch.Tensor) -> None:
    if masks.ndim != 4:
        raise ValueError(f"masks must be (B, C, H, W), got shape {tuple(masks.shape)}")
    if targets.shape != masks.shape[:2]:
        raise ValueError(f"targets must be (B, C) = {tuple(masks.shape[:2])}, got {tuple(targets.shape)}")


def aggregate_masks(masks: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Target and non-target masks: the pixel-wise max over present / absent classes.

    Parameters
    ----------
    masks : Tensor, shape (B, C, H, W)
        Per-class masks in ``[0, 1]`` (sigmoid of the Explainer's logits).
    targets : Tensor, shape (B, C)
        Multi-hot image labels.

    Returns
    -------
    target, non_target : Tensor, shape (B, H, W)
        ``0`` where an image has no class of that kind.
    """
    _check(masks, targets)
    present = (targets > 0.5).to(masks.dtype)[:, :, None, None]
    # Masks are >= 0, so multiplying by 0 removes a class from the max without changing it.
    return (masks * present).amax(1), (masks * (1 - present)).amax(1)


def classification_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``L_c``: multi-label BCE of the classifier's logits on the masked image, mean over ``(B, C)``."""
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float())


def entropy_loss(logits: torch.Tensor) -> torch.Tensor:
    """``L_e``: mean over the batch of ``(1/C) sum_c p_c log p_c``, ``p = softmax(logits)``.

    The negative entropy divided by ``C``: minimising it makes the prediction on the
    inverse-masked image uniform. Minimum ``-log(C) / C``, maximum ``0`` (one-hot).

    Parameters
    ----------
    logits : Tensor, shape (B, C)
    """
    p = torch.softmax(logits.float(), dim=1)
    return torch.special.xlogy(p, p).mean()


def area_constraint_loss(masks: torch.Tensor, targets: torch.Tensor, *, min_area: float = 0.05,
                         max_area: float = 0.3) -> torch.Tensor:
    """Per-class area constraint of the present classes' masks.

    For a mask with ``N`` pixels sorted in decreasing order ``v``, and ``r_a`` the vector of
    ``floor(a N)`` ones followed by zeros,
    ``A(s) = mean(relu(r_{a_min} - v)) + mean(relu(v - r_{a_max}))``: zero when at least
    ``a_min N`` pixels are fully on and at most ``a_max N`` pixels are on at all. Summed
    over an image's present classes, averaged over the batch.

    Parameters
    ----------
    masks : Tensor, shape (B, C, H, W)
        Per-class masks in ``[0, 1]``.
    targets : Tensor, shape (B, C)
        Multi-hot labels; only present classes are constrained.
    min_area, max_area : float
        Fractions of the image, ``0 <= min_area <= max_area <= 1``.
    """
    _check(masks, targets)
    if not 0.0 <= min_area <= max_area <= 1.0:
        raise ValueError(f"need 0 <= min_area <= max_area <= 1, got min_area={min_area}, max_area={max_area}")
    b, c, h, w = masks.shape
    n = h * w
    v = masks.float().reshape(b, c, n).sort(dim=2, descending=True).values
    index = torch.arange(n, device=masks.device)
    r_min = (index < int(n * min_area)).float()
    r_max = (index < int(n * max_area)).float()
    per_mask = F.relu(r_min - v).mean(2) + F.relu(v - r_max).mean(2)  # (B, C)
    return (per_mask * (targets > 0.5).float()).sum(1).mean()


def total_variation(mask: torch.Tensor) -> torch.Tensor:
    """``TV``: ``sum |m[i, j] - m[i, j+1]| + |m[i, j] - m[i+1, j]|`` over pixel pairs, divided
    by ``H W``, averaged over the batch.

    Parameters
    ----------
    mask : Tensor, shape (B, H, W)
    """
    if mask.ndim != 3:
        raise ValueError(f"mask must be (B, H, W), got shape {tuple(mask.shape)}")
    m = mask.float()
    dx = (m[:, :, 1:] - m[:, :, :-1]).abs().sum((1, 2))
    dy = (m[:, 1:, :] - m[:, :-1, :]).abs().sum((1, 2))
    return ((dx + dy) / (m.shape[1] * m.shape[2])).mean()


@dataclass
class ExplainerLoss:
    """The Explainer's objective ``L_E`` for a frozen classifier.

    Attributes
    ----------
    entropy_weight : float
        ``lambda_e``.
    tv_weight : float
        ``lambda_tv``.
    area_constraint_weight : float
        ``lambda_c`` of the per-class area constraint.
    target_area_weight, nontarget_area_weight : float
        ``lambda_m`` / ``lambda_n`` of the mean target / non-target mask.
    min_area, max_area : float
        ``a_min`` / ``a_max`` of the per-class area constraint.
    classes : sequence of int, optional
        The class indices explained (a project's foreground); the logits of the other
        columns (an untrained background column) are ignored everywhere. Default: all.
    """

    entropy_weight: float = 1.0
    tv_weight: float = 1.0
    area_constraint_weight: float = 1.0
    target_area_weight: float = 0.1
    nontarget_area_weight: float = 0.3
    min_area: float = 0.05
    max_area: float = 0.3
    classes: Sequence[int] | None = None

    def __call__(self, seg_logits: torch.Tensor, images: torch.Tensor, targets: torch.Tensor,
                 classifier: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, dict]:
        """Loss and its terms.

        Parameters
        ----------
        seg_logits : Tensor, shape (B, C, H, W)
            The Explainer's output at image size.
        images : Tensor, shape (B, 3, H, W)
            The classifier's input (normalised).
        targets : Tensor, shape (B, C)
            Multi-hot image labels.
        classifier : callable
            ``(B, 3, H, W) -> (B, C)`` logits; frozen (its parameters get no update here).

        Returns
        -------
        loss : Tensor, 0-d
        parts : dict of str to Tensor (detached)
            ``classification`` (``L_c``), ``entropy`` (``L_e``), ``area`` (``L_a``, its
            own weights included), ``tv`` (``L_tv``) and ``target_area`` (mean of ``m``).
        """
        if seg_logits.shape[-2:] != images.shape[-2:]:
            raise ValueError(f"explainer output {tuple(seg_logits.shape[-2:])} does not match the "
                             f"image size {tuple(images.shape[-2:])}")
        keep = list(range(seg_logits.shape[1])) if self.classes is None else list(self.classes)
        masks = torch.sigmoid(seg_logits.float()[:, keep])
        y = targets.float()[:, keep]
        m, n = aggregate_masks(masks, y)
        x = images.float()
        logits_kept = classifier(m[:, None] * x)[:, keep]
        logits_removed = classifier((1 - m[:, None]) * x)[:, keep]
        l_c = classification_loss(logits_kept, y)
        l_e = entropy_loss(logits_removed)
        l_a = (self.area_constraint_weight * area_constraint_loss(masks, y, min_area=self.min_area,
                                                                   max_area=self.max_area)
               + self.target_area_weight * m.mean() + self.nontarget_area_weight * n.mean())
        l_tv = total_variation(m) + total_variation(n)
        loss = l_c + self.entropy_weight * l_e + l_a + self.tv_weight * l_tv
        parts = {"classification": l_c, "entropy": l_e, "area": l_a, "tv": l_tv, "target_area": m.mean()}
        return loss, {k: v.detach() for k, v in parts.items()}


def load_explainer(project_or_checkpoint, device=None, *, classes=None) -> nn.Module:
    """The trained Explainer of a project (latest checkpoint) or from a checkpoint file.

    Returns the DeepLabV3+ in eval mode on ``device`` with ``classes``, ``background`` and
    ``classifier_version`` (the classifier it explains) attributes. Errors as
    :func:`napari_wsss.models.load_classifier`.
    """
    net, state = load_segmentation_net(project_or_checkpoint, "explainer", device, classes=classes)
    net.classifier_version = explained_classifier(state)
    return net


def explained_classifier(state: dict) -> str | None:
    """The version of the classifier an Explainer checkpoint dict explains (or None): its
    ``classifier_version``, else the one of its config's ``classifier_checkpoint``."""
    if state.get("classifier_version"):
        return state["classifier_version"]
    path = (state.get("config") or {}).get("explainer", {}).get("classifier_checkpoint")
    return checkpoint_version(path) if path else None


@torch.inference_mode()
def explainer_maps(model: nn.Module, x: torch.Tensor, labels) -> torch.Tensor:
    """Sigmoid masks of ``labels`` for a normalised image tensor.

    Parameters
    ----------
    model : nn.Module
        From :func:`load_explainer` (any ``(B, 3, H, W) -> (B, C, H, W)`` logits model).
    x : Tensor, shape (1, 3, H, W)
        ImageNet-normalised (:func:`napari_wsss.transforms.to_tensor`), on the model's device.
    labels : sequence of int or None
        Class indices; slot ``k`` of the result is ``labels[k]``. None: every output.

    Returns
    -------
    Tensor, shape (K, H, W), float32, in ``[0, 1]``
    """
    h, w = x.shape[-2:]
    # Pad to the encoder's stride with 0 = the mean colour, as the training crops are padded.
    x = F.pad(x, (0, (-w) % 32, 0, (-h) % 32), value=0.0)
    logits = model(x)[0, :, :h, :w].float()
    if labels is None:
        return torch.sigmoid(logits)
    index = torch.as_tensor([int(c) for c in labels], dtype=torch.long, device=logits.device)
    return torch.sigmoid(logits[index])


def predict_explainer(model: nn.Module, image: np.ndarray, *, labels=None, device=None) -> np.ndarray:
    """Per-class masks of one image in a single forward pass.

    Parameters
    ----------
    model : nn.Module
        From :func:`load_explainer`.
    image : ndarray, shape (H, W[, C])
        As stored.
    labels : sequence of int, optional
        Classes to return (default: all of the model's outputs).
    device : optional
        Default: the model's device.

    Returns
    -------
    ndarray, shape (K, H, W), float32, in ``[0, 1]``
    """
    if device is None:
        device = next(model.parameters()).device
    x = to_tensor(image, device)
    return explainer_maps(model, x, None if labels is None else list(labels)).cpu().numpy()
