"""Models: backbone registry; build, load and predict with every model of a project.

``load_*`` read a project's latest checkpoint (or a ``.pt`` file) through
``napari_wsss.store.resolve_checkpoint``. The image transforms live one layer lower
(``napari_wsss.transforms``) and are re-exported here.
"""

from ..transforms import normalize, to_rgb_float, to_tensor
from ._loading import load_weights
from .affinity import AffinityNet, affinity_loss, load_affinity
from .backbones import BACKBONES, build_backbone, build_torchvision_model, get_spec
from .classifier import Classifier, apply_kernel_usage, load_classifier
from .explainer import explainer_maps, load_explainer, predict_explainer
from .segmenter import build_segmenter, load_segmenter, predict_segmenter

__all__ = [
    "AffinityNet",
    "BACKBONES",
    "Classifier",
    "affinity_loss",
    "apply_kernel_usage",
    "build_backbone",
    "build_segmenter",
    "build_torchvision_model",
    "explainer_maps",
    "get_spec",
    "load_affinity",
    "load_classifier",
    "load_explainer",
    "load_segmenter",
    "load_weights",
    "normalize",
    "predict_explainer",
    "predict_segmenter",
    "to_rgb_float",
    "to_tensor",
]
