"""Input-space saliency: vanilla gradients, SmoothGrad and FullGrad.

These explain input pixels, not a layer: maps are ``(B, K, H, W)`` at the input size.
``S_c`` is the logit of class ``c``; the gradients of all targets come from one
batched backward through the whole network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._hooks import MultiCapture
from .base import BaseCAM, batched_grad, check_index, score_selector, target_gradients

__all__ = ["Gradients", "SmoothGrad", "FullGrad"]


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    logits = model(x)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise ValueError("the model must return logits of shape (B, C)")
    return logits


def _masked(maps: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    return maps * valid[:, :, None, None].to(maps.dtype)


class Gradients(BaseCAM):
    r"""Vanilla gradients (Simonyan et al., 2014).

    .. math:: M^c_{ij} = \max_{\text{channel } q} \Big|\frac{\partial S_c}{\partial x_{qij}}\Big|
    """

    name = "gradients"
    uses_layer = False

    def explain(self, model, images, index, valid, *, layer, differentiable):
        with torch.enable_grad():
            x = images.detach().requires_grad_(True)
            logits = _logits(model, x)
            check_index(index, logits.shape[1])
            grads = target_gradients(logits, x, index, valid, differentiable=differentiable)
        with torch.set_grad_enabled(differentiable):
            return _masked(grads.abs().amax(2), valid)


class SmoothGrad(BaseCAM):
    r"""SmoothGrad (Smilkov et al., 2017): gradients averaged over noisy copies.

    .. math::

        \hat G^c = \frac{1}{n}\sum_{s=1}^{n} \frac{\partial S_c}{\partial x}
                   \Big|_{x + \epsilon_s},\quad
        \epsilon_s \sim \mathcal N(0, \sigma^2),\quad
        \sigma = \text{noise}\,(\max x - \min x), \qquad
        M^c_{ij} = \max_q |\hat G^c_{qij}|

    Options: ``n_samples`` (25), ``noise`` (0.15, the paper's 10-20 %),
    ``batch_size`` (noisy copies of the batch per forward, 8), ``seed`` (None:
    torch's global generator).
    """

    name = "smoothgrad"
    uses_layer = False
    options = {"n_samples": 25, "noise": 0.15, "batch_size": 8, "seed": None}

    def explain(self, model, images, index, valid, *, layer, differentiable):
        n = int(self.opts["n_samples"])
        if n < 1 or int(self.opts["batch_size"]) < 1:
            raise ValueError("smoothgrad: n_samples and batch_size must be >= 1")
        gen = None
        if self.opts["seed"] is not None:
            gen = torch.Generator(device=images.device).manual_seed(int(self.opts["seed"]))
        b = images.shape[0]
        span = (images.flatten(1).amax(1) - images.flatten(1).amin(1)).view(b, 1, 1, 1)
        sigma = float(self.opts["noise"]) * span.detach()
        total = None
        done = 0
        while done < n:
            m = min(int(self.opts["batch_size"]), n - done)
            noise = torch.randn((m, *images.shape), generator=gen, device=images.device, dtype=images.dtype)
            with torch.enable_grad():
                x = (images.detach()[None] + sigma[None] * noise).flatten(0, 1).requires_grad_(True)
                logits = _logits(model, x)
                check_index(index, logits.shape[1])
                grads = target_gradients(
                    logits, x, index.repeat(m, 1), valid.repeat(m, 1), differentiable=differentiable
                )
            part = grads.unflatten(0, (m, b)).sum(0)
            total = part if total is None else total + part
            done += m
        with torch.set_grad_enabled(differentiable):
            return _masked((total / n).abs().amax(2), valid)


def _bias_layers(model: nn.Module) -> list[nn.Module]:
    return [
        m
        for m in model.modules()
        if (isinstance(m, nn.Conv2d) and m.bias is not None) or isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]


def _effective_bias(m: nn.Module) -> torch.Tensor:
    """The bias a layer adds in eval mode; for batch norm ``b - mu * g / sqrt(var + eps)``."""
    if isinstance(m, nn.Conv2d):
        return m.bias
    mean = m.running_mean if m.running_mean is not None else torch.zeros(m.num_features)
    var = m.running_var if m.running_var is not None else torch.ones(m.num_features)
    weight = m.weight if m.weight is not None else torch.ones_like(mean)
    bias = m.bias if m.bias is not None else torch.zeros_like(mean)
    return bias - mean * weight / torch.sqrt(var + m.eps)


def _psi(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """FullGrad's post-processing: ``|x|``, then min-max over (channels, space) per map."""
    x = x.abs()
    flat = x.flatten(-3)
    x = x - flat.amin(-1)[..., None, None, None]
    return x / (x.flatten(-3).amax(-1)[..., None, None, None] + eps)


class FullGrad(BaseCAM):
    r"""FullGrad (Srinivas & Fleuret, 2019).

    .. math::

        M^c = \sum_{q} \psi\Big(\frac{\partial S_c}{\partial x} \odot x\Big)_q
            + \sum_{l} \sum_{q} \mathrm{Up}\,\psi\Big(\frac{\partial S_c}{\partial z_l}
              \odot b_l\Big)_q

    over every convolution with a bias and every batch norm :math:`l` (output
    :math:`z_l`, effective eval-mode bias :math:`b_l`); :math:`\psi` takes the
    absolute value and min-max normalises over channels and space, ``Up`` is
    bilinear with aligned corners, as in the authors' code. The model should be in
    eval mode (the batch-norm bias uses the running statistics).
    """

    name = "fullgrad"
    uses_layer = False

    def explain(self, model, images, index, valid, *, layer, differentiable):
        layers = _bias_layers(model)
        size = images.shape[-2:]
        with torch.enable_grad():
            x = images.detach().requires_grad_(True)
            with MultiCapture(layers) as cap:
                logits = _logits(model, x)
            check_index(index, logits.shape[1])
            used = [(m, z) for m, z in zip(layers, cap.outputs) if z is not None and z.ndim == 4]
            inputs = [x] + [z for _, z in used]
            k = index.shape[1]
            if k == 0:
                return images.new_zeros((images.shape[0], 0, *size))
            grads = batched_grad(logits, inputs, score_selector(logits, index, valid), differentiable=differentiable)
        with torch.set_grad_enabled(differentiable):
            maps = _psi(grads[0] * x.detach()[None]).sum(2)  # (K, B, H, W)
            for (m, _), g in zip(used, grads[1:]):
                if g is None:  # layer output not on the path to the logits
                    continue
                bias = _effective_bias(m).to(g.dtype)
                if not differentiable:
                    bias = bias.detach()
                term = _psi(g * bias[None, None, :, None, None])  # (K, B, D, h, w)
                # Upsampling is linear: summing channels first equals summing upsampled channels.
                summed = term.sum(2).flatten(0, 1)[:, None]
                up = F.interpolate(summed, size=size, mode="bilinear", align_corners=True)
                maps = maps + up[:, 0].unflatten(0, term.shape[:2])
            return _masked(maps.transpose(0, 1), valid)
