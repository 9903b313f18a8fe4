"""Class activation maps: every requested class of an image from one pass.

``compute(model, images, targets, *, method, layer=None, differentiable=False, **options)``
returns raw maps ``(B, K, h, w)`` at the target layer's resolution (K = most targets
in the batch, unused slots zero), on the model's device, before ReLU, upsampling or
normalisation. :func:`compute_tta` adds multi-scale + flip test-time augmentation;
:func:`upsample` and :func:`normalize` (per-map min-max, zero-safe) post-process.

Methods (``method=``)
---------------------
``cam``
    Zhou et al. 2016: linear-head weights . activations (one forward, no backward).
``gradcam``
    Selvaraju et al. 2017: spatially averaged gradients weight the activations.
``gradcam++``
    Chattopadhay et al. 2018: pixel-weighted positive gradients (eq. 19).
``scorecam``
    Wang et al. 2020: each channel weighted by the score of the input masked by it
    (one masked forward per channel, shared by all classes, batched); option
    ``weighting="softmax"`` reproduces pytorch-grad-cam.
``layercam``
    Jiang et al. 2021: positive gradients x activations, pixel-wise.
``minmax-cam``
    David et al. 2022: gradients of ``S_c`` minus the mean score of the image's
    other labels.
``d-minmax-gradcam``
    David et al. 2022: positive contributions to ``c`` minus the positive part of
    the others' mean contribution plus the negative part of all labels' mean.
``gradients``
    Simonyan et al. 2014: ``max_channel |dS_c/dx|`` (input resolution).
``smoothgrad``
    Smilkov et al. 2017: gradients averaged over noisy copies (input resolution).
``fullgrad``
    Srinivas & Fleuret 2019: input-gradient and bias-gradient terms (input resolution).

Gradient methods take all ``K`` target gradients from one batched backward
(``torch.autograd.grad(..., is_grads_batched=True)``); layer methods backpropagate
only through the layers above the target layer. Hooks are registered inside context
managers and removed after every call.

Target layers: ``layer=None`` resolves the registry default
(``napari_wsss.models.BACKBONES[...].target_layer``) for torchvision ResNet,
MobileNetV2/V3, EfficientNet, ConvNeXt, efficientnet-lite and
``napari_wsss.models.Classifier`` (``"backbone"``); any dotted module name or
module is accepted. XAI metrics on the maps: :func:`masked_confidences` here, and
the scores in :mod:`napari_wsss.metrics`.
"""

from .api import METHODS, compute, get_method
from .base import BaseCAM, parse_targets
from .layers import default_layer_name, linear_head, resolve_layer
from .postprocess import normalize, upsample
from .tta import compute_tta
from .xai import masked_confidences

__all__ = [
    "METHODS",
    "BaseCAM",
    "compute",
    "compute_tta",
    "default_layer_name",
    "get_method",
    "linear_head",
    "masked_confidences",
    "normalize",
    "parse_targets",
    "resolve_layer",
    "upsample",
]
