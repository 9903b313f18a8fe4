"""Shared by the ``load_*`` functions: fill a rebuilt model from a checkpoint state."""

from __future__ import annotations

from torch import nn

from ..store import CheckpointError

__all__ = ["load_weights"]


def load_weights(model: nn.Module, state_dict: dict, *, path) -> None:
    """``load_state_dict`` whose mismatch error names the checkpoint file."""
    try:
        model.load_state_dict(state_dict)
    except (RuntimeError, KeyError) as e:
        raise CheckpointError(f"checkpoint {path} does not fit the model: {e}") from e
