"""Run a stage end to end: the one place that wires data, model, optimiser, DDP and checkpoints.

``fit(source, stage, config, checkpoints=...)`` trains any stage on any source;
``train(project_path, stage, config)`` is the entry point the CLI and the napari plugin
use (``stage="all"`` trains classifier, Explainer, AffinityNet, segmenter, regenerating
CAMs and pseudo-masks before the last two).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from napari_wsss.conventions import TRAINING_STAGES
from napari_wsss.models import load_weights
from napari_wsss.models.scale import ScaleRule
from napari_wsss.store import check_checkpoint_classes, checkpoint_version, read_checkpoint

from .config import TrainConfig, config_to_dict, save_config
from .data import EpochSampler, split_ids
from .distributed import Runtime, setup_runtime, sync_batchnorm, teardown
from .loop import ProgressLogger, evaluate, train_one_epoch
from .stage import Stage, open_project

__all__ = ["fit", "train", "FitResult", "STAGES", "build_stage", "make_scheduler"]

#: Stages in the order ``train(..., "all")`` runs them (the explainer needs only the classifier).
STAGES = TRAINING_STAGES


@dataclass
class FitResult:
    """Outcome of :func:`fit` (on this process)."""

    stage: str
    version: str | None = None
    epoch: int = 0
    step: int = 0
    losses: list[float] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    stopped: bool = False
    log_dir: str | None = None


def build_stage(source, name: str, config: TrainConfig, train_ids, val_ids) -> Stage:
    """Dispatch to the stage builders; an unknown stage lists the valid ones."""
    scfg = config.stage(name)
    if name == "classifier":
        from .classifier import build_classifier_stage

        return build_classifier_stage(source, scfg, train_ids, val_ids, seed=config.seed,
                                      resume=config.resume)
    if name == "segmenter":
        from .segmenter import build_segmenter_stage

        return build_segmenter_stage(source, scfg, train_ids, val_ids, seed=config.seed)
    if name == "affinity":
        from .affinity import build_affinity_stage

        return build_affinity_stage(source, scfg, train_ids, val_ids, seed=config.seed)
    if name == "explainer":
        from .explainer import build_explainer_stage

        return build_explainer_stage(source, scfg, train_ids, val_ids, seed=config.seed)
    raise ValueError(f"unknown stage {name!r}; valid stages: {', '.join(STAGES)}")


def make_scheduler(optimizer, scfg, total_steps: int):
    """Per-step LambdaLR: linear warm-up, then ``poly`` / ``cosine`` / ``constant``."""
    warm = scfg.warmup_steps
    kind = scfg.scheduler
    if kind not in ("poly", "cosine", "constant"):
        raise ValueError(f"unknown scheduler {kind!r}; valid: constant, cosine, poly")

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = min((step - warm) / max(total_steps - warm, 1), 1.0)
        if kind == "poly":
            return (1.0 - t) ** scfg.poly_power
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * t))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _make_optimizer(groups: list[dict], scfg):
    groups = [
        {"params": g["params"], "lr": scfg.lr * g["lr_mult"], "lr_mult": g["lr_mult"]}
        for g in groups if g["params"]
    ]
    if scfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=scfg.lr, momentum=scfg.momentum, weight_decay=scfg.weight_decay)
    if scfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=scfg.lr, weight_decay=scfg.weight_decay)
    raise ValueError(f"unknown optimizer {scfg.optimizer!r}; valid: adamw, sgd")


def _state(st: Stage, opt, sched, scaler, config, *, epoch, step, batch_in_epoch) -> dict:
    state = dict(
        model=st.model.state_dict(), optimizer=opt.state_dict(), scheduler=sched.state_dict(),
        scaler=scaler.state_dict(), epoch=epoch, step=step, batch_in_epoch=batch_in_epoch,
        config=config_to_dict(config), classes=list(st.classes), background=st.background,
        backbone=st.backbone, stage=st.name, rng=torch.get_rng_state(),
    )
    # the scale every model is trained and run at: the long side fitted in the crop box
    state["scale"] = ScaleRule(config.stage(st.name).crop_size).as_dict()
    state.update(st.extra.get("checkpoint", {}))  # stage-specific entries (AffinityNet.config)
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def _default_log_dir(source, stage: str) -> Path:
    root = Path(getattr(source, "path", ".")) if getattr(source, "path", None) else Path(".")
    if not root.is_dir():
        root = Path(".")
    return root / "runs" / f"{stage}-{time.strftime('%Y%m%d-%H%M%S')}"


def fit(source, stage: str, config: TrainConfig | None = None, *, checkpoints,
        log_dir: str | Path | None = None, stream=None, runtime: Runtime | None = None) -> FitResult:
    """Train ``stage`` on ``source``, checkpointing through ``checkpoints``.

    Parameters
    ----------
    source : Source
        A ``Project`` or :class:`trainer.data.MemorySource`.
    stage : {"classifier", "explainer", "affinity", "segmenter"}
    config : TrainConfig
    checkpoints : object
        With ``save_checkpoint(stage, state) -> version`` and ``latest_checkpoint(stage)``
        (a ``Project`` or :class:`trainer.checkpoint.DirectoryCheckpoints`).
    log_dir : path, optional
        TensorBoard events + ``config.yaml`` (rank 0).
    stream : text stream, optional
        Where JSON progress lines go (default stdout; rank 0 only).
    runtime : Runtime, optional
        Reuse a runtime (``train(..., "all")``); default: set one up and tear it down.
    """
    config = config or TrainConfig()
    scfg = config.stage(stage)
    own_runtime = runtime is None
    rt = runtime or setup_runtime(config.device, amp=config.amp, amp_dtype=config.amp_dtype)
    try:
        return _fit(source, stage, config, scfg, rt, checkpoints, log_dir, stream)
    finally:
        if own_runtime:
            teardown(rt)


def _build_on_device(source, stage, config, scfg, rt: Runtime) -> Stage:
    """The stage's model, loss and datasets, the model on the run's device."""
    torch.manual_seed(config.seed)
    train_ids, val_ids = split_ids(source.image_ids(), scfg.val_fraction)
    st = build_stage(source, stage, config, train_ids, val_ids)
    st.model.to(rt.device)
    if hasattr(st.loss_fn, "to"):
        st.loss_fn.to(rt.device)
    if config.channels_last:
        st.model.to(memory_format=torch.channels_last)
    return st


def _train_loader(st: Stage, config, scfg, rt: Runtime) -> tuple[DataLoader, EpochSampler, int]:
    """The training loader (this process's share of each batch), its sampler, the per-process batch."""
    if scfg.batch_size % rt.world_size:
        raise ValueError(f"batch_size {scfg.batch_size} is not divisible by {rt.world_size} processes")
    n = len(st.train_set)
    per_rank = min(scfg.batch_size // rt.world_size, max(1, n // rt.world_size))
    sampler = EpochSampler(n, num_replicas=rt.world_size, rank=rt.rank, seed=config.seed)
    loader = DataLoader(
        st.train_set, batch_size=per_rank, sampler=sampler, drop_last=True,
        num_workers=config.num_workers, pin_memory=config.pin_memory and rt.device.type == "cuda",
        persistent_workers=config.num_workers > 0,
        generator=torch.Generator().manual_seed(config.seed),
    )
    return loader, sampler, per_rank


def _resume(source, stage, st: Stage, opt, sched, scaler, checkpoints, rt: Runtime,
            run: dict) -> tuple[int, int, int]:
    """Restore the latest checkpoint of ``stage`` (weights, optimiser, scheduler, scaler, RNG);
    ``(epoch, step, batch_in_epoch)`` to continue from, zeros when there is none. The resumed
    run continues its version: ``run`` gets its ``version`` and ``best`` step so far."""
    path = _newest_run(checkpoints, stage)
    if path is None:
        return 0, 0, 0
    run["version"] = checkpoint_version(path)
    state = read_checkpoint(path, stage=stage, map_location=rt.device)
    check_checkpoint_classes(state, st.classes, path=path, what=f"project {getattr(source, 'path', '')}")
    load_weights(st.model, state["model"], path=path)
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"].cpu())
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
    run["best"] = state.get("best")
    return state["epoch"], state["step"], state.get("batch_in_epoch", 0)


def _newest_run(checkpoints, stage: str):
    """The file of the newest run of ``stage`` (a stopped run is not in use, but resuming
    continues it); ``latest_checkpoint`` where the store has no version list."""
    versions = checkpoints.checkpoints(stage) if hasattr(checkpoints, "checkpoints") else None
    if versions:
        return checkpoints.checkpoint_path(versions[-1])
    return checkpoints.latest_checkpoint(stage)


def _end_run(checkpoints, stage: str, result: FitResult, logger) -> None:
    """After a run (rank 0): a run that ended normally becomes the model in use; a stopped
    one stays beside it (``set_model_in_use`` chooses it). Then old versions are pruned to
    the project's keep setting (the newest N and the one in use stay)."""
    if result.version is None or not hasattr(checkpoints, "set_model_in_use"):
        return
    if not result.stopped:
        newest = checkpoints.checkpoints(stage)[-1]
        checkpoints.set_model_in_use(stage, None if newest == result.version else result.version)
    pruned = checkpoints.prune_checkpoints(stage, checkpoints.keep_checkpoints)
    logger.emit("models", version=result.version, in_use=checkpoints.model_in_use(stage),
                stopped=result.stopped, pruned=pruned)


def _wrap(module, config, rt: Runtime):
    """The training module as the run executes it: SyncBatchNorm + DDP, ``torch.compile``."""
    if rt.distributed:
        module = sync_batchnorm(module, rt)
        ids = [rt.device.index] if rt.device.type == "cuda" else None
        module = DistributedDataParallel(module, device_ids=ids)
    if config.compile:
        module = torch.compile(module, backend=config.compile_backend)
    return module


def _open_log(source, stage, config, rt: Runtime, log_dir):
    """``(TensorBoard writer, run folder)`` with the run's ``config.yaml``; ``(None, None)`` off rank 0."""
    if not rt.is_main:
        return None, None
    run_dir = Path(log_dir) if log_dir is not None else (
        Path(config.log_dir) if config.log_dir else _default_log_dir(source, stage))
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(run_dir)), run_dir


def _fit(source, stage, config, scfg, rt: Runtime, checkpoints, log_dir, stream) -> FitResult:
    st = _build_on_device(source, stage, config, scfg, rt)
    opt = _make_optimizer(st.param_groups, scfg)
    loader, sampler, per_rank = _train_loader(st, config, scfg, rt)
    n = len(st.train_set)
    steps_per_epoch = len(loader)
    total = scfg.epochs * steps_per_epoch
    sched = make_scheduler(opt, scfg, total)
    scaler = rt.make_scaler()
    run = {"version": None, "best": None}  # a version per run: every save of this run goes into it
    epoch, step, skip = _resume(source, stage, st, opt, sched, scaler, checkpoints, rt, run) if config.resume \
        else (0, 0, 0)
    module = _wrap(st.module, config, rt)
    writer, run_dir = _open_log(source, stage, config, rt, log_dir)
    logger = ProgressLogger(stage, total, epochs=scfg.epochs, writer=writer, stream=stream,
                            every=config.log_every, enabled=rt.is_main)
    result = FitResult(stage, version=run["version"], epoch=epoch, step=step, log_dir=str(run_dir) if run_dir else None)
    logger.emit("start", epoch=epoch, epochs=scfg.epochs, step=step, steps=total,
                images=n, world_size=rt.world_size, device=str(rt.device), log_dir=result.log_dir)

    def save(ep, stp, in_epoch, metrics=None):
        if rt.is_main:
            best = _improves(metrics, run["best"])
            run["best"] = best or run["best"]
            state = _state(st, opt, sched, scaler, config, epoch=ep, step=stp, batch_in_epoch=in_epoch)
            state["best"] = run["best"]  # the run's best so far, for a resumed run
            result.version = run["version"] = checkpoints.save_checkpoint(
                stage, state, version=run["version"], best=best, use=False)
            logger.emit("checkpoint", version=result.version, epoch=ep, step=stp, best=best is not None)
        rt.barrier()

    try:
        while epoch < scfg.epochs:
            sampler.set_epoch(epoch, skip=skip * per_rank)
            start_step = step - skip

            def on_step(s, _ep=epoch, _start=start_step):
                every = config.checkpoint_every
                if every and s % every == 0 and s - _start < steps_per_epoch:
                    save(_ep, s, s - _start)

            r = train_one_epoch(
                module, loader, st.loss_fn, opt, sched, device=rt.device, epoch=epoch, step=step,
                total_steps=total, scaler=scaler, amp_dtype=rt.amp_dtype,
                channels_last=config.channels_last, grad_clip=scfg.grad_clip,
                max_steps=config.max_steps, logger=logger, on_step=on_step,
            )
            if r.stopped and not r.steps:  # max_steps already reached
                result.stopped = True
                break
            step += r.steps
            result.losses.extend(r.losses)
            done = step - start_step
            if done < steps_per_epoch:  # interrupted by max_steps: resumable mid-epoch
                save(epoch, step, done)
                result.stopped = True
                break
            epoch, skip = epoch + 1, 0
            if st.val_set is not None and rt.is_main:
                result.metrics = _validate(st, config, rt)
                logger.emit("eval", epoch=epoch, step=step, **result.metrics)
                logger.scalars("val", result.metrics, step)
            save(epoch, step, 0, result.metrics if st.val_set is not None else None)
            if r.stopped:
                result.stopped = epoch < scfg.epochs
                break
    finally:
        if writer is not None:
            writer.close()
    result.epoch, result.step = epoch, step
    if rt.is_main:
        _end_run(checkpoints, stage, result, logger)
    rt.barrier()
    logger.emit("done", epoch=epoch, step=step, version=result.version, stopped=result.stopped)
    return result


#: Validation metrics that choose a run's best step, in order of preference (+1: higher is better).
BEST_METRICS = {"mIoU": 1, "mAP": 1, "pair_accuracy": 1, "loss": -1}


def _improves(metrics: dict | None, best: dict | None) -> dict | None:
    """``{"metric", "value"}`` when ``metrics`` beat the run's ``best`` so far, else None."""
    for name, sign in BEST_METRICS.items():
        value = (metrics or {}).get(name)
        if isinstance(value, (int, float)) and math.isfinite(value):
            if best is None or sign * value > sign * best["value"]:
                return {"metric": name, "value": float(value)}
            return None
    return None


def _validate(st: Stage, config: TrainConfig, rt: Runtime) -> dict:
    scfg = config.stage(st.name)
    loader = DataLoader(st.val_set, batch_size=scfg.batch_size, num_workers=config.num_workers)
    return evaluate(st.module, loader, st.metric(), device=rt.device, amp_dtype=rt.amp_dtype,
                    channels_last=config.channels_last)


def train(project_path, stage: str = "classifier", config: TrainConfig | None = None, *,
          stream=None) -> dict[str, FitResult]:
    """Train ``stage`` (or ``"all"``) on the project at ``project_path``.

    Checkpoints go through ``Project.save_checkpoint``; ``stage="all"`` trains the
    classifier, then the Explainer against it, regenerates CAMs and pseudo-masks (with the
    explainer's masks) with ``napari_wsss.pipeline.prelabel`` (rank 0), trains AffinityNet
    on those CAMs, regenerates the pseudo-masks (now with the trained affinities) and
    trains the segmenter.
    Works the same under ``torchrun`` (DDP).
    """
    valid = (*STAGES, "all")
    if stage not in valid:
        raise ValueError(f"unknown stage {stage!r}; valid stages: {', '.join(valid)}")
    config = config or TrainConfig()
    project = open_project(project_path, "r+")
    rt = setup_runtime(config.device, amp=config.amp, amp_dtype=config.amp_dtype)
    results: dict[str, FitResult] = {}
    try:
        order = list(STAGES) if stage == "all" else [stage]
        for name in order:
            if stage == "all" and name not in ("classifier", "explainer"):
                _prelabel(project, rt)
            results[name] = fit(project, name, config, checkpoints=project, stream=stream, runtime=rt)
            if results[name].stopped:
                break
    finally:
        teardown(rt)
    return results


def _prelabel(project, rt: Runtime) -> None:
    """Regenerate pseudo-masks with the freshly trained classifier (rank 0 only)."""
    if rt.is_main:
        from napari_wsss.pipeline import prelabel

        prelabel(project, force=True)
    rt.barrier()
