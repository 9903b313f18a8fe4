"""Classifier-stage losses: multi-label BCE, CAM pixel guidance, Puzzle-CAM, KUR.

Every loss is a mean over the images of the batch of a per-image value, so a DDP run
(which averages gradients over processes) optimises exactly what a single process with
the same global batch optimises.

References
----------
- Puzzle-CAM: S. Jo, I.-J. Yu, "Puzzle-CAM: Improved localization via matching partial
  and full features", ICIP 2021. ``L = L_cls(Y^, Y) + L_p-cls(Y^_re, Y) + a * L_re``,
  ``L_re = || A_s - A_re ||_1`` on the CAMs of the image's classes; the authors' code
  averages over all elements and ramps ``a`` linearly over the first half of training.
- Model guidance: X. Yu et al., "Model Guidance via Explanations Turns Image Classifiers
  into Segmentation Models", 2024: segmentation losses on differentiable heatmaps with few
  pixel labels. Here: cross-entropy of upsampled CAMs over the image's classes at labelled
  pixels.
- Kernel Usage Regularisation (L. David et al., P-NOC code ``Conv2dKU``): the head
  weight ``W`` (classes x kernels) is used as ``alpha * W * softmax_c(W)``, the softmax
  over classes, so each kernel is softly assigned to few classes (a parametrisation of the
  model: ``napari_wsss.models.classifier.apply_kernel_usage``, which loading also needs).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from napari_wsss.conventions import IGNORE

__all__ = [
    "multilabel_bce",
    "cam_pixel_loss",
    "tile_images",
    "merge_tiles",
    "puzzle_losses",
    "ClassifierLoss",
    "erase_class",
    "choose_one_label",
]


def multilabel_bce(logits: torch.Tensor, targets: torch.Tensor, class_mask: torch.Tensor):
    """Binary cross-entropy per class, averaged over trained classes, then over images.

    Parameters
    ----------
    logits, targets : Tensor, shape (B, C)
    class_mask : Tensor, shape (C,), bool
        Classes that are trained (the background column is False).
    """
    per = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
    m = class_mask.to(per.dtype)
    return ((per * m).sum(1) / m.sum()).mean()


def cam_pixel_loss(
    cams: torch.Tensor,
    mask: torch.Tensor,
    allowed: torch.Tensor,
    *,
    background: int | None = None,
    background_logit: float = 0.0,
) -> torch.Tensor:
    """Cross-entropy of upsampled CAMs over each image's classes at labelled pixels.

    Parameters
    ----------
    cams : Tensor, shape (B, C, h, w)
        Differentiable CAMs (per-pixel logits; their spatial mean is the image logit).
    mask : Tensor, shape (B, H, W), int
        Pixel labels, ``255`` = unlabeled.
    allowed : Tensor, shape (B, C), bool
        Classes competing at the pixels of each image (its labels).
    background : int or None
        Background class index; its (untrained) CAM is replaced by the constant
        ``background_logit``, i.e. a pixel is background when no class scores above it.

    Returns
    -------
    Tensor, scalar
        Sum over images of the mean CE over the image's labelled pixels, divided by B
        (images without labelled pixels add 0).
    """
    b, c = cams.shape[:2]
    logits = F.interpolate(cams.float(), size=mask.shape[-2:], mode="bilinear", align_corners=False)
    allowed = allowed.clone()
    if background is not None:
        allowed[:, background] = True
        is_bg = torch.zeros(c, dtype=torch.bool, device=cams.device)
        is_bg[background] = True
        logits = torch.where(is_bg.view(1, c, 1, 1), logits.new_tensor(background_logit), logits)
    logits = logits.masked_fill(~allowed.view(b, c, 1, 1), -1e4)
    ce = F.cross_entropy(logits, mask.long(), ignore_index=IGNORE, reduction="none")
    labelled = (mask != IGNORE).flatten(1).sum(1)
    per_image = ce.flatten(1).sum(1) / labelled.clamp(min=1)
    return per_image.sum() / b


def tile_images(x: torch.Tensor, pieces: int) -> torch.Tensor:
    """Split ``(B, C, H, W)`` into ``pieces`` tiles stacked on the batch axis, row-major:
    tile ``t`` of image ``b`` is at index ``t * B + b``."""
    n = math.isqrt(pieces)
    h, w = x.shape[-2] // n, x.shape[-1] // n
    return torch.cat([x[..., i * h:(i + 1) * h, j * w:(j + 1) * w] for i in range(n) for j in range(n)])


def merge_tiles(t: torch.Tensor, pieces: int, batch: int) -> torch.Tensor:
    """Inverse of :func:`tile_images`: ``(pieces * B, C, h, w) -> (B, C, n h, n w)``."""
    n = math.isqrt(pieces)
    parts = t.split(batch)
    rows = [torch.cat(parts[i * n:(i + 1) * n], dim=3) for i in range(n)]
    return torch.cat(rows, dim=2)


def puzzle_losses(cams, merged_cams, targets, class_mask):
    """Puzzle-CAM's two extra terms.

    Returns
    -------
    p_cls : Tensor
        BCE of the spatial mean of the merged tile CAMs (the tile classifier).
    re : Tensor
        ``mean(|A_s - A_re| * y)`` over all elements, ``y`` the image's trained labels.
    """
    p_cls = multilabel_bce(merged_cams.float().mean((2, 3)), targets, class_mask)
    y = (targets * class_mask.to(targets.dtype))[:, :, None, None]
    re = ((cams.float() - merged_cams.float()).abs() * y).mean()
    return p_cls, re


def erase_class(images: torch.Tensor, cams: torch.Tensor, chosen: torch.Tensor, eps: float = 1e-5):
    """OC-CSE soft erasing: ``x * (1 - M)``, ``M`` the ReLU'd CAM of each image's chosen
    class, upsampled and divided by its maximum over the batch (OC-CSE's global norm).

    Parameters
    ----------
    images : Tensor, shape (B, 3, H, W)
        Normalised images (erased pixels become the ImageNet mean).
    cams : Tensor, shape (B, C, h, w)
    chosen : Tensor, shape (B, C)
        One-hot of the class to erase (all zero: nothing erased).
    """
    m = (cams.float() * chosen[:, :, None, None]).sum(1, keepdim=True)
    m = F.relu(F.interpolate(m, size=images.shape[-2:], mode="bilinear", align_corners=False))
    m = m / (m.max() + eps)
    return images * (1 - m)


def choose_one_label(labels: torch.Tensor) -> torch.Tensor:
    """One-hot ``(B, C)`` of one uniformly drawn positive label per image (none if none)."""
    pos = labels > 0.5
    scores = torch.rand(labels.shape, device=labels.device).masked_fill(~pos, -1.0)
    chosen = torch.zeros_like(labels)
    chosen.scatter_(1, scores.argmax(1, keepdim=True), 1.0)
    return chosen * pos.any(1, keepdim=True).to(labels.dtype)


class ClassifierLoss:
    """``bce + pixel_weight * pixel + [p_cls + alpha(t) * re] + [oc_alpha(t) * oc]``.

    Puzzle-CAM terms when the outputs hold ``"merged_cams"``; the OC-CSE term (Kweon et
    al., ICCV 2021, as in P-NOC's ``train_occse.py``) when a frozen ordinary classifier
    ``oc`` is given: erase one random label's CAM region from the image and ask ``oc``
    for the image's *other* labels, ``BCE(oc(x_erased), y - y_k)``, which pushes the CAM
    to cover the whole object.

    Outputs (from :class:`trainer.classifier.ClassifierModule`): ``"logits"`` (B, C),
    ``"cams"`` (B, C, h, w), ``"merged_cams"`` with Puzzle-CAM. Batch: ``"labels"`` (B, C)
    multi-hot, ``"mask"`` (B, H, W) pixel labels, ``"has_pixels"`` (B,) bool (batches
    without any corrected image skip the pixel term).
    """

    def __init__(self, num_classes: int, *, background: int | None = None,
                 pixel_weight: float = 0.1, puzzle_alpha: float = 0.0, puzzle_warmup: float = 0.5,
                 oc: nn.Module | None = None, oc_alpha: float = 1.0, oc_warmup: float = 0.0):
        self.background = background
        self.oc = oc
        if oc is not None:
            oc.eval().requires_grad_(False)
        self.oc_max = oc_alpha
        self.oc_warmup = oc_warmup
        self.oc_alpha = oc_alpha if oc_warmup == 0 else 0.0
        mask = torch.ones(num_classes, dtype=torch.bool)
        if background is not None:
            mask[background] = False
        self.class_mask = mask
        self.pixel_weight = pixel_weight
        self.puzzle_alpha = puzzle_alpha
        self.puzzle_warmup = puzzle_warmup
        self.alpha = puzzle_alpha if puzzle_warmup == 0 else 0.0

    def to(self, device) -> "ClassifierLoss":
        if self.oc is not None:
            self.oc.to(device)
        return self

    def set_step(self, step: int, total_steps: int) -> None:
        """Ramp the Puzzle-CAM / OC-CSE weights: ``min(alpha * t / (T * warmup), alpha)``."""
        if self.puzzle_warmup > 0:
            ramp = step / max(total_steps * self.puzzle_warmup, 1e-12)
            self.alpha = min(self.puzzle_alpha * ramp, self.puzzle_alpha)
        if self.oc_warmup > 0:
            ramp = step / max(total_steps * self.oc_warmup, 1e-12)
            self.oc_alpha = min(self.oc_max * ramp, self.oc_max)

    def __call__(self, outputs: dict, batch: dict):
        labels = batch["labels"]
        cm = self.class_mask.to(labels.device)
        loss = bce = multilabel_bce(outputs["logits"], labels, cm)
        parts = {"bce": bce.detach()}
        has_pixels = batch.get("has_pixels")
        if self.pixel_weight > 0 and has_pixels is not None and bool(has_pixels.any()):
            allowed = labels > 0.5
            pix = cam_pixel_loss(outputs["cams"], batch["mask"], allowed, background=self.background)
            loss = loss + self.pixel_weight * pix
            parts["pixel"] = pix.detach()
        if "merged_cams" in outputs:
            p_cls, re = puzzle_losses(outputs["cams"], outputs["merged_cams"], labels, cm)
            loss = loss + p_cls + self.alpha * re
            parts.update(p_cls=p_cls.detach(), re=re.detach(), alpha=self.alpha)
        if self.oc is not None:
            chosen = choose_one_label(labels * cm.to(labels.dtype))
            erased = erase_class(batch["image"], outputs["cams"], chosen)
            oc = multilabel_bce(self.oc(erased.to(batch["image"].dtype)), labels - chosen, cm)
            loss = loss + self.oc_alpha * oc
            parts.update(oc=oc.detach(), oc_alpha=self.oc_alpha)
        return loss, parts
