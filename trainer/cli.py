"""Command-line wiring for ``napari-wsss train`` (and ``python -m trainer``).

``add_arguments(parser)`` adds the options to an (sub)parser; ``run(args)`` trains and
returns an exit code. ``--nproc-per-node N`` relaunches the same command under
``torchrun`` (DDP: NCCL on GPUs, gloo on CPU).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from napari_wsss.conventions import TRAINING_STAGES

from .config import TrainConfig, apply_overrides, load_config

__all__ = ["add_arguments", "run", "main", "build_config"]

STAGE_CHOICES = (*TRAINING_STAGES, "all")


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``train`` options to ``parser``."""
    parser.add_argument("project", help="project directory (napari-wsss store)")
    parser.add_argument("--stage", default="classifier", choices=STAGE_CHOICES,
                        help="what to train (default: classifier)")
    parser.add_argument("--config", metavar="CFG.yaml", help="YAML training config (any subset of keys)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set classifier.epochs=5 (repeatable)")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (overrides the config)")
    parser.add_argument("--epochs", type=int, help="epochs of every trained stage")
    parser.add_argument("--batch-size", type=int, help="global batch size of every trained stage")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                        help="mixed precision (fp16 on CUDA, bf16 on CPU)")
    parser.add_argument("--resume", action="store_true", help="continue the latest checkpoint")
    parser.add_argument("--nproc-per-node", type=int, default=1,
                        help="train with DDP on this many processes via torchrun")
    return parser


def build_config(args: argparse.Namespace) -> TrainConfig:
    """The config a parsed command line asks for (file, then --set, then flags)."""
    cfg = load_config(args.config) if args.config else TrainConfig()
    cfg = apply_overrides(cfg, list(args.overrides))
    if args.device:
        cfg.device = args.device
    if args.amp is not None:
        cfg.amp = args.amp
    if args.resume:
        cfg.resume = True
    for name in TRAINING_STAGES:
        st = cfg.stage(name)
        if args.epochs is not None:
            st.epochs = args.epochs
        if args.batch_size is not None:
            st.batch_size = args.batch_size
    return cfg


def _relaunch(args: argparse.Namespace, argv: list[str]) -> int:
    """Run ``python -m trainer <argv>`` under torchrun with ``nproc`` processes."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={args.nproc_per_node}", "-m", "trainer", *argv]
    return subprocess.call(cmd)


def _without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc-per-node":
            skip = True
        elif not a.startswith("--nproc-per-node="):
            out.append(a)
    return out


def run(args: argparse.Namespace, *, argv: list[str] | None = None) -> int:
    """Train as ``args`` say; returns 0 on success (errors propagate with clear messages)."""
    if args.nproc_per_node > 1 and "WORLD_SIZE" not in os.environ:
        if argv is None:
            raise ValueError("--nproc-per-node needs the original argv to relaunch under torchrun")
        return _relaunch(args, _without_nproc(argv))
    from .run import train

    train(args.project, args.stage, build_config(args))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = add_arguments(argparse.ArgumentParser(prog="python -m trainer", description=__doc__))
    args = parser.parse_args(argv)
    return run(args, argv=argv)
