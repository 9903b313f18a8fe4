"""The one device chooser: ``"auto"`` / ``None`` -> CUDA when present, else the CPU.

Used by model loading (``napari_wsss.models``), refinement, the pipeline and the trainer.
"""

from __future__ import annotations

import torch

__all__ = ["choose_device", "resolve_device"]


def choose_device(name: str = "auto", *, local_rank: int = 0) -> torch.device:
    """A device by name.

    Parameters
    ----------
    name : str
        ``"auto"`` (``cuda:<local_rank>`` when CUDA is present, else ``cpu``), ``"cpu"``,
        ``"cuda"`` (``cuda:<local_rank>``) or ``"cuda:N"``.
    local_rank : int
        The process's GPU under ``torchrun`` (modulo the GPUs present).

    Raises
    ------
    ValueError
        CUDA asked for but absent, or a device type other than CPU / CUDA.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {name!r}; valid: 'auto', 'cpu', 'cuda', 'cuda:N'")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank % torch.cuda.device_count())
    return dev


def resolve_device(device: torch.device | str | None = None) -> torch.device:
    """``device`` as a ``torch.device``: None means ``"auto"``; a ``torch.device`` is kept."""
    if device is None:
        return choose_device("auto")
    return device if isinstance(device, torch.device) else choose_device(str(device))
