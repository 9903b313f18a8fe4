"""CAM (Zhou et al., 2016): the classifier's weights applied to the last feature map."""

from __future__ import annotations

import torch

from .base import LayerCAMBase, check_index, forward_capture, weighted_sum
from .layers import linear_head, resolve_layer

__all__ = ["CAM"]


class CAM(LayerCAMBase):
    r"""Class activation map of a global-average-pool + linear classifier.

    .. math:: M^c_{ij} = \sum_k w^c_k A^k_{ij}

    where :math:`A` is the target layer's output (the features the head pools)
    and :math:`w^c` the head's weights for class :math:`c` (bias excluded). For a
    bias-free head the spatial mean of :math:`M^c` is the logit of :math:`c`.

    No gradient is needed: one forward pass (run without a graph unless
    ``differentiable``).
    """

    name = "cam"
    needs_grad = False

    def explain(self, model, images, index, valid, *, layer, differentiable):
        name, module = resolve_layer(model, layer)
        weight, activation = linear_head(model, name)
        logits, acts = forward_capture(model, images, module, differentiable=differentiable, need_grad=False)
        check_index(index, logits.shape[1])
        if activation is not None:
            acts = activation(acts)
        if weight.shape[1] != acts.shape[1]:
            raise ValueError(
                f"method 'cam': layer {name!r} has {acts.shape[1]} channels but the linear head expects "
                f"{weight.shape[1]}; CAM needs the layer whose output the head pools"
            )
        w = weight.to(acts.dtype)[index]  # (B, K, D)
        if not differentiable:
            w = w.detach()
        with torch.set_grad_enabled(differentiable):
            return weighted_sum(w, acts, valid)
