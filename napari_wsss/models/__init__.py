"""Models: backbone registry, the CAM classifier, transforms."""

from .affinity import AffinityNet, affinity_loss
from .backbones import BACKBONES, build_backbone, build_torchvision_model, get_spec
from .classifier import Classifier
from .transforms import normalize, to_rgb_float, to_tensor

__all__ = [
    "AffinityNet",
    "BACKBONES",
    "Classifier",
    "affinity_loss",
    "build_backbone",
    "build_torchvision_model",
    "get_spec",
    "normalize",
    "to_rgb_float",
    "to_tensor",
]
