"""Forward hooks that record a module's output, released by a context manager.

Every hook registered here is removed when its ``with`` block exits, even on error,
so repeated calls never accumulate hooks on the model.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

__all__ = ["LayerCapture", "MultiCapture"]

_MODES = ("detach", "graph", "value")


class LayerCapture:
    """Record the output of ``module`` during a forward pass.

    Parameters
    ----------
    module : nn.Module
        The layer to watch. If it runs several times in one forward pass, its
        last output is kept.
    mode : {"detach", "graph", "value"}
        ``"detach"``: the output becomes a fresh leaf that requires grad and
        autograd is switched on from this layer onwards, so a forward pass run
        under ``torch.no_grad()`` builds a graph only for the layers *after* the
        module (gradients w.r.t. the activation cost a backward through the head
        alone). ``"graph"``: the output keeps its graph (for differentiable maps).
        ``"value"``: the output is recorded detached.

    Notes
    -----
    The hook returns a copy of the output to the rest of the network, so an
    in-place operation downstream (``ReLU(inplace=True)``) cannot alter the
    recorded tensor.
    """

    def __init__(self, module: nn.Module, *, mode: str = "value"):
        if mode not in _MODES:
            raise ValueError(f"unknown capture mode {mode!r}; valid: {', '.join(_MODES)}")
        self.module = module
        self.mode = mode
        self.output: torch.Tensor | None = None
        self._handle = None
        self._grad_mode = None

    def _hook(self, module, inputs, output):
        if not isinstance(output, torch.Tensor):
            raise TypeError(
                f"target layer {type(module).__name__} returned {type(output).__name__}, "
                "expected a tensor (B, D, h, w)"
            )
        if self.mode == "value":
            self.output = output.detach()
            return None
        if self.mode == "detach" or not output.requires_grad:
            leaf = output.detach().requires_grad_(True)
            torch.set_grad_enabled(True)
            self.output = leaf
            return leaf.clone()
        self.output = output
        return output.clone()

    def __enter__(self) -> "LayerCapture":
        self._grad_mode = torch.is_grad_enabled()
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        torch.set_grad_enabled(self._grad_mode)


class MultiCapture:
    """Record the outputs of several modules (graph kept), e.g. every biased layer.

    ``outputs[i]`` is the last output of ``modules[i]``; modules that did not run
    in the forward pass are left as ``None``.
    """

    def __init__(self, modules: Iterable[nn.Module]):
        self.modules = list(modules)
        self.outputs: list[torch.Tensor | None] = [None] * len(self.modules)
        self._handles: list = []

    def _make_hook(self, i: int):
        def hook(module, inputs, output):
            self.outputs[i] = output
            return output.clone()

        return hook

    def __enter__(self) -> "MultiCapture":
        self._handles = [m.register_forward_hook(self._make_hook(i)) for i, m in enumerate(self.modules)]
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
