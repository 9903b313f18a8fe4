"""Training loops for napari-wsss: classifier, AffinityNet, segmenter, one shared loop.

Public API::

    train(project_path, stage, config) -> dict[str, FitResult]
    fit(source, stage, config, checkpoints=...) -> FitResult
    TrainConfig / load_config / save_config
    train_one_epoch(...) / evaluate(...)
    save_classifier(project, net) -> version

Loading and prediction (``load_classifier``, ``load_affinity``, ``load_segmenter``,
``predict_segmenter``, ``load_explainer``, ``predict_explainer``) live in
``napari_wsss.models`` (inference never imports the trainer); they are re-exported here.
"""

from napari_wsss.models import (
    load_affinity,
    load_classifier,
    load_explainer,
    load_segmenter,
    predict_explainer,
    predict_segmenter,
)
from napari_wsss.store import CheckpointError

from .checkpoint import DirectoryCheckpoints
from .classifier import save_classifier
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
from .loop import evaluate, train_one_epoch
from .run import FitResult, fit, train
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
