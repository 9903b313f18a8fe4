"""Gradient-weighted CAMs: Grad-CAM, Grad-CAM++ and Layer-CAM.

``A (B, D, h, w)`` is the target layer's output and ``G^c = dS_c / dA`` the gradient
of the class score (logit) ``S_c``; the gradients of all targets of an image come
from one batched backward through the layers above the target layer.
"""

from __future__ import annotations

import torch

from .base import LayerCAMBase, target_gradients, weighted_sum

__all__ = ["GradCAM", "GradCAMPlusPlus", "LayerCAM"]


class GradCAM(LayerCAMBase):
    r"""Grad-CAM (Selvaraju et al., 2017).

    .. math::

        \alpha^c_k = \frac{1}{Z}\sum_{ij} \frac{\partial S_c}{\partial A^k_{ij}}, \qquad
        M^c = \sum_k \alpha^c_k A^k

    (the ReLU of the paper is left to :func:`napari_wsss.cams.normalize`).
    """

    name = "gradcam"

    def maps(self, model, images, logits, acts, index, valid, *, layer, differentiable):
        grads = target_gradients(logits, acts, index, valid, differentiable=differentiable)
        with torch.set_grad_enabled(differentiable):
            return weighted_sum(grads.mean((-2, -1)), acts, valid)


class GradCAMPlusPlus(LayerCAMBase):
    r"""Grad-CAM++ (Chattopadhay et al., 2018), eq. 19 with the exponential score.

    .. math::

        \alpha^{kc}_{ij} = \frac{(G^c_{kij})^2}
            {2 (G^c_{kij})^2 + \sum_{ab} A^k_{ab} (G^c_{kij})^3}, \qquad
        w^c_k = \sum_{ij} \alpha^{kc}_{ij}\, \mathrm{ReLU}(G^c_{kij}), \qquad
        M^c = \sum_k w^c_k A^k

    :math:`\alpha` is 0 where its denominator is 0. Using :math:`Y_c = \exp S_c`
    multiplies every weight of class :math:`c` by the positive :math:`\exp S_c`,
    which the ranking of pixels and the min-max normalisation ignore; it is left
    out, as in pytorch-grad-cam. Options: ``eps`` (added to the denominator;
    pytorch-grad-cam uses ``1e-6``).
    """

    name = "gradcam++"
    options = {"eps": 0.0}

    def maps(self, model, images, logits, acts, index, valid, *, layer, differentiable):
        grads = target_gradients(logits, acts, index, valid, differentiable=differentiable)
        with torch.set_grad_enabled(differentiable):
            g2 = grads * grads
            g3 = g2 * grads
            sum_a = acts.sum((-2, -1))[:, None, :, None, None]
            den = 2 * g2 + sum_a * g3 + self.opts["eps"]
            nonzero = den != 0
            alpha = torch.where(nonzero, g2 / torch.where(nonzero, den, torch.ones_like(den)), torch.zeros_like(den))
            weights = (alpha * torch.relu(grads)).sum((-2, -1))
            return weighted_sum(weights, acts, valid)


class LayerCAM(LayerCAMBase):
    r"""Layer-CAM (Jiang et al., 2021): pixel-wise positive gradients.

    .. math:: M^c_{ij} = \sum_k \mathrm{ReLU}(G^c_{kij})\, A^k_{ij}
    """

    name = "layercam"

    def maps(self, model, images, logits, acts, index, valid, *, layer, differentiable):
        grads = target_gradients(logits, acts, index, valid, differentiable=differentiable)
        with torch.set_grad_enabled(differentiable):
            maps = (torch.relu(grads) * acts[:, None]).sum(2)
            return maps * valid[:, :, None, None].to(maps.dtype)
