"""Training loops for napari-wsss: classifier, AffinityNet, segmenter, one shared loop.

Public API::

    train(project_path, stage, config) -> dict[str, FitResult]
    fit(source, stage, config, checkpoints=...) -> FitResult
    TrainConfig / load_config / save_config
    train_one_epoch(...) / evaluate(...)
    load_classifier(project_or_checkpoint, device) -> Classifier
    load_affinity(project_or_checkpoint, device) -> AffinityNet
    load_segmenter(project_or_checkpoint, device); predict_segmenter(model, image) -> mask
"""

from .affinity import load_affinity
from .checkpoint import CheckpointError, DirectoryCheckpoints
from .classifier import load_classifier, save_classifier
from .config import (
    AffinityConfig,
    ClassifierConfig,
    SegmenterConfig,
    StageConfig,
    TrainConfig,
    load_config,
    save_config,
)
from .data import MemorySource
from .loop import evaluate, train_one_epoch
from .run import FitResult, fit, train
from .segmenter import load_segmenter, predict_segmenter
from .stage import TrainingDataError

__all__ = [
    "AffinityConfig",
    "CheckpointError",
    "ClassifierConfig",
    "DirectoryCheckpoints",
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
    "load_segmenter",
    "predict_segmenter",
    "save_config",
    "train",
    "train_one_epoch",
]
