"""Training loops for napari-wsss: classifier, AffinityNet, segmenter, one shared loop.

Public API::

    train(project_path, stage, config) -> dict[str, FitResult]
    fit(source, stage, config, checkpoints=...) -> FitResult
    TrainConfig / load_config / save_config
    train_one_epoch(...) / evaluate(...)
    load_classifier(project_or_checkpoint, device) -> Classifier
    load_affinity(project_or_checkpoint, device) -> AffinityNet
    load_segmenter(project_or_checkpoint, device); predict_segmenter(model, image) -> mask
    load_explainer(project_or_checkpoint, device); predict_explainer(model, image) -> (K, H, W) masks
"""

from .affinity import load_affinity
from .checkpoint import CheckpointError, DirectoryCheckpoints
from .classifier import load_classifier, save_classifier
from .config import (
    AffinityConfig,
    ClassifierConfig,
    ExplainerConfig,
    SegmenterConfig,
    StageConfig,
    TrainConfig,
    load_config,
    save_config,
)
from .data import MemorySource
from .explainer import load_explainer, predict_explainer
from .loop import evaluate, train_one_epoch
from .run import FitResult, fit, train
from .segmenter import load_segmenter, predict_segmenter
from .stage import TrainingDataError

__all__ = [
    "AffinityConfig",
    "CheckpointError",
    "ClassifierConfig",
    "DirectoryCheckpoints",
    "ExplainerConfig",
    "FitResult",
    "MemorySource",
    "SegmenterConfig",
    "StageConfig",
    "TrainConfig",
    "TrainingDataError",
    "evaluate",
    "fit",
    "load_affinity",
    "load_classifier",
    "save_classifier",
    "load_config",
    "load_explainer",
    "load_segmenter",
    "predict_explainer",
    "predict_segmenter",
    "save_config",
    "train",
    "train_one_epoch",
]
