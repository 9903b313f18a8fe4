"""Device choice, mixed precision and DDP (``torchrun``) plumbing, decided once per run."""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist

from napari_wsss.device import choose_device

__all__ = ["Runtime", "setup_runtime", "choose_amp_dtype", "autocast", "teardown",
           "sync_batchnorm", "batch_share"]

AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


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


def choose_amp_dtype(device: torch.device, amp: bool, name: str = "auto") -> torch.dtype | None:
    """Autocast dtype: None without AMP; ``"auto"`` is float16 on CUDA, bfloat16 elsewhere."""
    if name != "auto" and name not in AMP_DTYPES:
        raise ValueError(f"unknown amp_dtype {name!r}; valid: auto, {', '.join(AMP_DTYPES)}")
    if not amp:
        return None
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.bfloat16
    return AMP_DTYPES[name]


def setup_runtime(device: str = "auto", *, amp: bool = False, amp_dtype: str = "auto") -> Runtime:
    """Read ``torchrun``'s environment, pick the device, init the process group once.

    NCCL on CUDA, gloo on CPU. Without ``torchrun`` (no ``WORLD_SIZE``) this is a
    single process. ``amp_dtype`` as :func:`choose_amp_dtype`.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = choose_device(device, local_rank=local_rank)
    dtype = choose_amp_dtype(dev, amp, amp_dtype)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    owns = False
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
        owns = True
    return Runtime(dev, rank, world, local_rank, dtype, owns)


def teardown(runtime: Runtime) -> None:
    """Destroy the process group if :func:`setup_runtime` created it."""
    if runtime.owns_process_group and dist.is_initialized():
        dist.destroy_process_group()


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` for ``dtype``, or a no-op context when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def sync_batchnorm(module: torch.nn.Module, runtime: Runtime) -> torch.nn.Module:
    """Batch statistics over all processes, so DDP trains like one process on the global batch.

    On CUDA every BatchNorm becomes ``SyncBatchNorm`` (frozen layers stay in eval mode,
    where it is a plain BatchNorm). ``SyncBatchNorm`` needs a GPU: a multi-process CPU run
    whose BatchNorm layers train normalises per process and warns that its results will
    differ from one process.
    """
    if not runtime.distributed:
        return module
    if runtime.device.type == "cuda":
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
    module.train()
    training = [m for m in module.modules()
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training]
    if training:
        warnings.warn(
            f"{len(training)} BatchNorm layers train with per-process statistics on CPU "
            f"(SyncBatchNorm needs CUDA): results differ from a single-process run; "
            f"set freeze_bn: true for identical results", stacklevel=2,
        )
    return module


def batch_share(counts: torch.Tensor, *, eps: float = 0.0) -> torch.Tensor:
    """Factors that make per-process ratio losses average to the global batch's ratio.

    A loss ``sum / (count + eps)`` normalised by a count over the batch (pairs, labelled
    pixels) differs between a process's share of the batch and the whole batch. DDP
    averages gradients over the ``world`` processes, so multiplying each process's loss by
    ``(count + eps) * world / (global_count + eps)`` (counts summed over processes, no
    gradient) trains exactly on ``global_sum / (global_count + eps)``.

    Parameters
    ----------
    counts : Tensor, shape (K,)
        This process's counts of the ``K`` ratio terms.
    eps : float
        The constant added to the counts in the loss.

    Returns
    -------
    Tensor, shape (K,)
        The factors; ones without a process group of more than one process.
    """
    counts = counts.detach().to(torch.float64)
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return torch.ones_like(counts)
    total = counts.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return (counts + eps) * dist.get_world_size() / (total + eps)
