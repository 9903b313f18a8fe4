"""Device choice, mixed precision and DDP (``torchrun``) plumbing, decided once per run."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Runtime", "setup_runtime", "choose_device", "autocast", "teardown"]


def choose_device(name: str = "auto", *, local_rank: int = 0) -> torch.device:
    """``"auto"`` -> ``cuda:<local_rank>`` when CUDA is present, else ``cpu``."""
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


@dataclass
class Runtime:
    """Where and how this process trains.

    Attributes
    ----------
    device : torch.device
    rank, world_size, local_rank : int
        DDP coordinates (0, 1, 0 without ``torchrun``).
    amp_dtype : torch.dtype or None
        ``float16`` on CUDA, ``bfloat16`` on CPU when AMP is on; ``None`` otherwise.
    owns_process_group : bool
        Whether :func:`setup_runtime` created the process group (and must destroy it).
    """

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    amp_dtype: torch.dtype | None = None
    owns_process_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def make_scaler(self) -> torch.amp.GradScaler:
        """A GradScaler enabled only for fp16 (bf16 and fp32 need none)."""
        enabled = self.amp_dtype == torch.float16
        return torch.amp.GradScaler(self.device.type, enabled=enabled)


def setup_runtime(device: str = "auto", *, amp: bool = False) -> Runtime:
    """Read ``torchrun``'s environment, pick the device, init the process group once.

    NCCL on CUDA, gloo on CPU. Without ``torchrun`` (no ``WORLD_SIZE``) this is a
    single process.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = choose_device(device, local_rank=local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    owns = False
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
        owns = True
    amp_dtype = None
    if amp:
        amp_dtype = torch.float16 if dev.type == "cuda" else torch.bfloat16
    return Runtime(dev, rank, world, local_rank, amp_dtype, owns)


def teardown(runtime: Runtime) -> None:
    """Destroy the process group if :func:`setup_runtime` created it."""
    if runtime.owns_process_group and dist.is_initialized():
        dist.destroy_process_group()


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` for ``dtype``, or a no-op context when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
