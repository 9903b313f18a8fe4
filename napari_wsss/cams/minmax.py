"""MinMax-CAM and D-MinMax-Grad-CAM (David, Pedrini & Dias, VISAPP 2022).

Multi-label CAMs that contrast the class being explained with the *other labels of
the same image*: here, the image's other targets. ``L`` is the set of an image's
targets, ``n = |L|``, ``S_l`` the logit of label ``l`` and ``A`` the target layer's
output. Gradients of all labels come from one batched backward; the contrastive
terms are linear combinations of those per-label gradients.

Equations follow the paper and the authors' public implementation
(github.com/lucasdavid/minmax-cam, ``src/minmax.py``, read for reference): the
"others" term is divided by ``max(1, n - 1)``, so with a single label both methods
reduce to their single-label counterparts (Grad-CAM with summed gradients).
"""

from __future__ import annotations

import torch

from .base import LayerCAMBase, target_gradients, weighted_sum

__all__ = ["MinMaxCAM", "DMinMaxGradCAM"]


def _label_terms(grads: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-target gradients -> (mean over the *other* labels, mean over all labels, n).

    ``grads`` is ``(B, K, D, h, w)``, zero at padded slots.
    """
    n = valid.sum(1).to(grads.dtype)  # (B,)
    total = grads.sum(1, keepdim=True)  # (B, 1, D, h, w)
    others = (total - grads) / torch.clamp(n - 1, min=1)[:, None, None, None, None]
    every = total / torch.clamp(n, min=1)[:, None, None, None, None]
    return others, every, n


class MinMaxCAM(LayerCAMBase):
    r"""MinMax-CAM: maximise the class, minimise the image's other labels.

    .. math::

        J_c = S_c - \frac{1}{\max(1, n-1)} \sum_{l \in L \setminus \{c\}} S_l, \qquad
        w^c_k = \sum_{ij} \frac{\partial J_c}{\partial A^k_{ij}}, \qquad
        M^c = \sum_k w^c_k A^k

    For a global-average-pool + linear head, :math:`\sum_{ij} \partial S_c /
    \partial A^k_{ij} = W_{ck}`, so this is exactly the weight form of the paper,
    :math:`w^c_k = W_{ck} - \frac{1}{\max(1,n-1)}\sum_{l \ne c} W_{lk}`.
    """

    name = "minmax-cam"

    def maps(self, model, images, logits, acts, index, valid, *, layer, differentiable):
        grads = target_gradients(logits, acts, index, valid, differentiable=differentiable)
        with torch.set_grad_enabled(differentiable):
            others, _, _ = _label_terms(grads, valid)
            weights = (grads - others).sum((-2, -1))
            return weighted_sum(weights, acts, valid)


class DMinMaxGradCAM(LayerCAMBase):
    r"""D-MinMax-Grad-CAM: the MinMax contrast taken on positive and negative parts.

    .. math::

        w^c_k = \sum_{ij} \Big[\,
            \mathrm{ReLU}\Big(\frac{\partial S_c}{\partial A^k_{ij}}\Big)
          - \mathrm{ReLU}\Big(\frac{\partial}{\partial A^k_{ij}}
                \frac{1}{\max(1,n-1)} \sum_{l \in L\setminus\{c\}} S_l\Big)
          + \min\Big(0, \frac{\partial}{\partial A^k_{ij}}
                \frac{1}{n} \sum_{l \in L} S_l\Big) \Big],
        \qquad M^c = \sum_k w^c_k A^k

    The positive contributions toward :math:`c`, minus the positive part of the
    mean contribution of the image's other labels, plus the negative part of the
    mean contribution of all its labels.
    """

    name = "d-minmax-gradcam"

    def maps(self, model, images, logits, acts, index, valid, *, layer, differentiable):
        grads = target_gradients(logits, acts, index, valid, differentiable=differentiable)
        with torch.set_grad_enabled(differentiable):
            others, every, _ = _label_terms(grads, valid)
            pixelwise = torch.relu(grads) - torch.relu(others) + torch.clamp(every, max=0)
            weights = pixelwise.sum((-2, -1))
            return weighted_sum(weights, acts, valid)
