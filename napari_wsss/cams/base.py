"""The base class of every CAM method and the shared forward/backward machinery.

A method receives the batch, the target indices ``index (B, K)`` with a validity
mask ``valid (B, K)`` (images with fewer than ``K`` targets have padded slots) and
returns raw maps ``(B, K, h, w)`` whose padded slots are zero.

All classes of an image are explained from one forward pass; the gradients of the
``K`` target scores come from one batched backward
(``torch.autograd.grad(..., is_grads_batched=True)``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from torch import nn

from ._hooks import LayerCapture
from .layers import resolve_layer

__all__ = ["BaseCAM", "LayerCAMBase", "parse_targets", "forward_capture", "target_gradients", "batched_grad"]


class BaseCAM:
    """One explaining method.

    Subclasses set ``name``, ``uses_layer``, ``needs_grad`` and ``options`` (keyword
    options with their defaults) and implement :meth:`explain`.
    """

    name: ClassVar[str] = ""
    uses_layer: ClassVar[bool] = True
    #: Whether the method back-propagates (the pipeline runs the others under
    #: ``torch.inference_mode``).
    needs_grad: ClassVar[bool] = True
    options: ClassVar[dict[str, Any]] = {}

    def __init__(self, **options: Any):
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            valid = ", ".join(sorted(self.options)) or "none"
            raise TypeError(f"method {self.name!r} got unknown option(s) {unknown}; valid options: {valid}")
        self.opts = {**self.options, **options}

    def __call__(
        self,
        model: nn.Module,
        images: torch.Tensor,
        index: torch.Tensor,
        valid: torch.Tensor,
        *,
        layer: str | nn.Module | None = None,
        differentiable: bool = False,
    ) -> torch.Tensor:
        if not self.uses_layer and layer is not None:
            raise ValueError(f"method {self.name!r} explains the input pixels and takes no layer (got {layer!r})")
        return self.explain(model, images, index, valid, layer=layer, differentiable=differentiable)

    def explain(self, model, images, index, valid, *, layer, differentiable) -> torch.Tensor:
        raise NotImplementedError


class LayerCAMBase(BaseCAM):
    """Methods that weight the activations ``A (B, D, h, w)`` of a target layer."""

    def explain(self, model, images, index, valid, *, layer, differentiable):
        _, module = resolve_layer(model, layer)
        logits, acts = forward_capture(model, images, module, differentiable=differentiable)
        check_index(index, logits.shape[1])
        return self.maps(model, images, logits, acts, index, valid, layer=layer, differentiable=differentiable)

    def maps(self, model, images, logits, acts, index, valid, *, layer, differentiable) -> torch.Tensor:
        raise NotImplementedError


def parse_targets(targets, batch: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Targets to padded indices.

    Parameters
    ----------
    targets : sequence of sequences of int, or array/tensor of shape (B, C)
        Per image, the class indices to explain (in the given order), or a
        multi-hot matrix (bool or 0/1), read in ascending class order.
    batch : int
        ``B``, the number of images.

    Returns
    -------
    index : LongTensor, shape (B, K)
        ``K`` = most targets of any image; padded slots hold 0.
    valid : BoolTensor, shape (B, K)
    """
    if isinstance(targets, (torch.Tensor, np.ndarray)):
        t = torch.as_tensor(np.asarray(targets.detach().cpu()) if isinstance(targets, torch.Tensor) else targets)
        if t.ndim != 2:
            raise ValueError(f"a targets array must be a (B, C) multi-hot matrix, got shape {tuple(t.shape)}")
        if t.dtype != torch.bool:
            if not bool(((t == 0) | (t == 1)).all()):
                raise ValueError("a targets array must be multi-hot: only 0/1 or booleans")
            t = t != 0
        lists = [torch.nonzero(row).flatten().tolist() for row in t]
    elif isinstance(targets, Sequence) and not isinstance(targets, (str, bytes)):
        lists = []
        for i, row in enumerate(targets):
            if isinstance(row, (int, np.integer)) or not isinstance(row, (Sequence, np.ndarray, torch.Tensor)):
                raise ValueError(
                    f"targets[{i}] is {row!r}: give each image a list of class indices, e.g. [[3], [1, 4]]"
                )
            lists.append([int(c) for c in row])
    else:
        raise TypeError(f"targets must be a list of lists of class indices or a (B, C) multi-hot array, "
                        f"got {type(targets).__name__}")
    if len(lists) != batch:
        raise ValueError(f"{len(lists)} target lists for {batch} images")
    k = max((len(r) for r in lists), default=0)
    index = torch.zeros(batch, k, dtype=torch.long)
    valid = torch.zeros(batch, k, dtype=torch.bool)
    for b, row in enumerate(lists):
        if any(c < 0 for c in row):
            raise ValueError(f"targets[{b}] has a negative class index: {row}")
        index[b, : len(row)] = torch.tensor(row, dtype=torch.long)
        valid[b, : len(row)] = True
    return index.to(device), valid.to(device)


def check_index(index: torch.Tensor, num_classes: int) -> None:
    """Raise if a target index is outside the model's ``num_classes`` outputs."""
    if index.numel() and int(index.max()) >= num_classes:
        raise ValueError(
            f"target class {int(index.max())} out of range: the model has {num_classes} outputs (0..{num_classes - 1})"
        )


def forward_capture(
    model: nn.Module, images: torch.Tensor, module: nn.Module, *, differentiable: bool, need_grad: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass recording ``module``'s output.

    Returns
    -------
    logits : Tensor, shape (B, C)
    acts : Tensor, shape (B, D, h, w)
        With ``differentiable=False`` and ``need_grad=True`` a leaf requiring
        grad, with the head's graph above it (the layers below run without a
        graph); with ``differentiable=True`` the full graph is kept.
    """
    mode = "graph" if differentiable else ("detach" if need_grad else "value")
    with LayerCapture(module, mode=mode) as cap:
        with torch.set_grad_enabled(differentiable):
            logits = model(images)
    if cap.output is None:
        raise RuntimeError(f"target layer {type(module).__name__} did not run in the forward pass")
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise ValueError(
            f"the model must return logits of shape (B, C); got "
            f"{tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__}"
        )
    if cap.output.ndim != 4:
        raise ValueError(f"the target layer's output must be (B, D, h, w); got shape {tuple(cap.output.shape)}")
    return logits, cap.output


def score_selector(logits: torch.Tensor, index: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``grad_outputs`` for a batched backward: ``(K, B, C)``, one-hot at each valid target."""
    b, k = index.shape
    sel = torch.zeros(k, b, logits.shape[1], dtype=logits.dtype, device=logits.device)
    sel.scatter_(2, index.t().unsqueeze(-1), valid.t().unsqueeze(-1).to(logits.dtype))
    return sel


def target_gradients(
    logits: torch.Tensor,
    inputs: torch.Tensor,
    index: torch.Tensor,
    valid: torch.Tensor,
    *,
    differentiable: bool,
) -> torch.Tensor:
    """``d logits[b, index[b, k]] / d inputs[b]`` for every target, one batched backward.

    Returns
    -------
    Tensor, shape (B, K, *inputs.shape[1:])
        Zero at padded slots.
    """
    b, k = index.shape
    if k == 0:
        return inputs.new_zeros((b, 0, *inputs.shape[1:]))
    sel = score_selector(logits, index, valid)
    (grads,) = batched_grad(logits, [inputs], sel, differentiable=differentiable)
    return grads.transpose(0, 1)


def batched_grad(
    outputs: torch.Tensor, inputs: list[torch.Tensor], sel: torch.Tensor, *, differentiable: bool
) -> list[torch.Tensor | None]:
    """``torch.autograd.grad`` with ``K`` batched ``grad_outputs`` ``sel (K, *outputs.shape)``.

    One vmapped backward. Should an operation above the inputs lack a batching rule
    (custom autograd functions with data-dependent Python control flow), it falls
    back to one backward per target. Inputs off the path to ``outputs`` get ``None``.
    """
    try:
        return list(
            torch.autograd.grad(
                outputs, inputs, sel, is_grads_batched=True, create_graph=differentiable,
                retain_graph=True, allow_unused=True,
            )
        )
    except RuntimeError as err:
        if "atching rule" not in str(err) and "vmap" not in str(err):
            raise
    per_target = [
        torch.autograd.grad(outputs, inputs, s, create_graph=differentiable, retain_graph=True, allow_unused=True)
        for s in sel
    ]
    return [
        None if parts[0] is None else torch.stack([p if p is not None else torch.zeros_like(parts[0]) for p in parts])
        for parts in zip(*per_target)
    ]


def weighted_sum(weights: torch.Tensor, acts: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``sum_d weights[b, k, d] * acts[b, d]`` -> ``(B, K, h, w)``, zero at padded slots."""
    maps = torch.einsum("bkd,bdhw->bkhw", weights, acts)
    return maps * valid[:, :, None, None].to(maps.dtype)
