"""The one training loop every stage uses, and the one evaluation loop.

In the style of torchvision's ``references/segmentation``: explicit inputs, no hidden
globals. A stage supplies a ``model`` (an ``nn.Module``, possibly DDP-wrapped, whose
``forward(images)`` returns what its loss needs), a ``loss_fn(outputs, batch) ->
(loss, parts)`` and, for evaluation, a metric with ``update(outputs, batch)`` and
``compute() -> dict``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.distributed as dist

from napari_wsss.transforms import normalize

from .distributed import autocast

__all__ = ["train_one_epoch", "evaluate", "prepare_batch", "ProgressLogger", "EpochResult"]


def prepare_batch(batch: dict, device: torch.device, *, channels_last: bool = False) -> dict:
    """Move tensors to ``device`` and ImageNet-normalise ``batch["image"]`` there."""
    out = {}
    for k, v in batch.items():
        out[k] = v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
    image = normalize(out["image"].float())
    if channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    out["image"] = image
    return out


class ProgressLogger:
    """One JSON line per logged step on a stream, plus TensorBoard scalars.

    Lines look like ``{"event": "step", "stage": "classifier", "epoch": 0, "epochs": 5,
    "step": 12, "steps": 100, "loss": 0.41, "lr": 0.01, "eta_s": 93.1, ...}``; the napari
    plugin reads them from the training subprocess. Only rank 0 should build one with
    ``enabled=True``.
    """

    def __init__(self, stage: str, total_steps: int, *, epochs: int, writer=None,
                 stream=None, every: int = 1, enabled: bool = True):
        self.stage = stage
        self.total_steps = total_steps
        self.epochs = epochs
        self.writer = writer
        self.stream = stream if stream is not None else sys.stdout
        self.every = max(1, every)
        self.enabled = enabled
        self._t0: float | None = None
        self._n0 = 0

    def emit(self, event: str, **fields) -> None:
        if not self.enabled:
            return
        line = {"event": event, "stage": self.stage, **fields}
        self.stream.write(json.dumps(line, default=float) + "\n")
        self.stream.flush()

    def step(self, *, epoch: int, step: int, loss, parts: dict, lr: float, images: int):
        """Record optimizer step ``step`` (1-based, global).

        ``loss`` and the values of ``parts`` may be 0-d tensors: they are read (a host /
        device sync) only on the steps that are logged.
        """
        now = time.perf_counter()
        if self._t0 is None:
            self._t0, self._n0 = now, step
        done = step - self._n0
        rate = done / (now - self._t0) if done else None
        eta = (self.total_steps - step) / rate if rate else None
        if not self.enabled or (step % self.every and step != self.total_steps):
            return
        loss = float(loss)
        parts = {k: float(v) for k, v in parts.items()}
        self.emit("step", epoch=epoch, epochs=self.epochs, step=step, steps=self.total_steps,
                  loss=loss, lr=lr, eta_s=eta, images_per_s=rate * images if rate else None,
                  **parts)
        if self.writer is not None:
            self.writer.add_scalar(f"{self.stage}/loss", loss, step)
            self.writer.add_scalar(f"{self.stage}/lr", lr, step)
            for k, v in parts.items():
                self.writer.add_scalar(f"{self.stage}/{k}", v, step)

    def scalars(self, prefix: str, values: dict, step: int) -> None:
        if self.enabled and self.writer is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.writer.add_scalar(f"{self.stage}/{prefix}/{k}", v, step)


@dataclass
class EpochResult:
    """What :func:`train_one_epoch` did: steps run, mean loss, per-step losses."""

    steps: int = 0
    mean_loss: float = float("nan")
    losses: list[float] = field(default_factory=list)
    stopped: bool = False


def train_one_epoch(
    model: torch.nn.Module,
    loader,
    loss_fn: Callable,
    optimizer: torch.optim.Optimizer,
    scheduler=None,
    *,
    device: torch.device,
    epoch: int = 0,
    step: int = 0,
    total_steps: int | None = None,
    scaler: torch.amp.GradScaler | None = None,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    grad_clip: float | None = None,
    max_steps: int | None = None,
    logger: ProgressLogger | None = None,
    on_step: Callable[[int], None] | None = None,
) -> EpochResult:
    """Train ``model`` for one pass over ``loader``.

    Parameters
    ----------
    model : nn.Module
        ``model(images)`` returns the outputs ``loss_fn`` takes.
    loader : iterable of dict
        Batches with at least ``"image"`` (B, 3, H, W) in ``[0, 1]``.
    loss_fn : callable
        ``loss_fn(outputs, batch) -> (loss, parts)``; ``parts`` maps names to floats or
        0-d tensors for logging. If it has ``set_step(step, total_steps)`` it is told the
        step first (loss weights on a schedule).
    optimizer, scheduler
        The scheduler (if any) is stepped after every optimizer step.
    device : torch.device
    epoch, step : int
        Current epoch and the number of optimizer steps done before this call.
    total_steps : int, optional
        Steps of the whole run (for schedules and the ETA).
    scaler : GradScaler, optional
        For fp16 AMP; a disabled scaler is a no-op.
    amp_dtype : torch.dtype, optional
        Autocast dtype (None: full precision).
    channels_last, grad_clip
    max_steps : int, optional
        Stop once the global step count reaches it.
    logger : ProgressLogger, optional
    on_step : callable, optional
        Called with the new global step after every optimizer step (checkpoints).

    Returns
    -------
    EpochResult
    """
    model.train()
    result = EpochResult()
    total = total_steps or step + len(loader)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    losses: list[torch.Tensor] = []
    if max_steps is not None and step >= max_steps:
        result.stopped = True
        return result
    for batch in loader:
        batch = prepare_batch(batch, device, channels_last=channels_last)
        if hasattr(loss_fn, "set_step"):
            loss_fn.set_step(step, total)
        with autocast(device, amp_dtype):
            outputs = model(batch["image"])
            loss, parts = loss_fn(outputs, batch)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None and scaler.is_enabled():
            scaler.scale(loss).backward()
            if grad_clip is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        step += 1
        value = _global_mean(loss.detach())
        losses.append(value)
        result.steps += 1
        if logger is not None:
            logger.step(epoch=epoch, step=step, loss=value, lr=optimizer.param_groups[0]["lr"],
                        parts=parts, images=batch["image"].shape[0])
        if on_step is not None:
            on_step(step)
        if max_steps is not None and step >= max_steps:
            result.stopped = True
            break
    if losses:  # read the losses once per epoch, not once per step
        result.losses = torch.stack(losses).cpu().tolist()
        result.mean_loss = sum(result.losses) / len(result.losses)
    return result


@torch.inference_mode()
def evaluate(
    model: torch.nn.Module,
    loader,
    metric,
    *,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> dict:
    """Run ``model`` over ``loader`` in eval mode and return ``metric.compute()``.

    ``metric`` has ``update(outputs, batch)`` (outputs cast to float32) and ``compute()``.
    """
    was_training = model.training
    model.eval()
    try:
        for batch in loader:
            batch = prepare_batch(batch, device, channels_last=channels_last)
            with autocast(device, amp_dtype):
                outputs = model(batch["image"])
            outputs = _to_float(outputs)
            metric.update(outputs, batch)
    finally:
        model.train(was_training)
    return metric.compute()


def _global_mean(loss: torch.Tensor) -> torch.Tensor:
    """The loss averaged over DDP processes (what the global batch optimises), float32."""
    loss = loss.float()
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        loss = loss.clone()
        dist.all_reduce(loss, op=dist.ReduceOp.SUM)
        loss /= dist.get_world_size()
    return loss


def _to_float(x):
    if isinstance(x, torch.Tensor):
        return x.float()
    if isinstance(x, dict):
        return {k: _to_float(v) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return type(x)(_to_float(v) for v in x)
    return x
