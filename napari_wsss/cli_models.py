"""``napari-wsss models list | rollback | prune``: the checkpoint versions of a project."""

from __future__ import annotations

import argparse

from .store import CHECKPOINT_STAGES

__all__ = ["add_models_parser", "run_models"]


def add_models_parser(sub) -> None:
    p = sub.add_parser("models", help="list checkpoint versions, roll back to an earlier one, prune old ones")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("list", help="versions per stage: time, epoch, size, readable, which is in use")
    a.add_argument("project")
    a.add_argument("--stage", choices=CHECKPOINT_STAGES, help="only this stage")
    a = actions.add_parser("rollback", help="use an earlier version of a stage (default: the newest "
                                            "readable one before the version in use)")
    a.add_argument("project")
    a.add_argument("--stage", required=True, choices=CHECKPOINT_STAGES)
    a.add_argument("--to", metavar="VERSION", help="the version to use, e.g. classifier-0002")
    a = actions.add_parser("prune", help="delete old versions, keeping the newest N and the one in use")
    a.add_argument("project")
    a.add_argument("--keep", type=int, required=True, metavar="N")
    a.add_argument("--stage", choices=CHECKPOINT_STAGES, help="only this stage (default: all)")


def run_models(args: argparse.Namespace) -> int:
    from .store import Project

    project = Project.open(args.project, "r" if args.action == "list" else "r+")
    stages = [args.stage] if args.stage else list(CHECKPOINT_STAGES)
    if args.action == "list":
        print(_table(project, stages))
        return 0
    if args.action == "rollback":
        print(_rollback(project, args.stage, args.to))
        return 0
    for stage in stages:
        gone = project.prune_checkpoints(stage, args.keep)
        if gone:
            print(f"{stage}: deleted {', '.join(gone)}; in use {project.model_in_use(stage)}")
    return 0


def _table(project, stages) -> str:
    rows = ["| stage | version | time | epoch | step | MB | file | in use |", "|---|---|---|---:|---:|---:|---|---|"]
    for stage in stages:
        used = project.model_in_use(stage)
        for version in project.checkpoints(stage):
            path = project.checkpoint_path(version)
            info = _summary(project, stage, version)
            problem = project.checkpoint_problem(version)
            rows.append(f"| {stage} | {version} | {info.get('time', '')} | {info.get('epoch', '')} | "
                        f"{info.get('step', '')} | {path.stat().st_size / 1e6:.1f} | {problem or 'ok'} | "
                        f"{'yes' if version == used else ''} |")
    if len(rows) == 2:
        return f"{project.path}: no checkpoints" + (f" of {stages[0]}" if len(stages) == 1 else "")
    return "\n".join(rows)


def _summary(project, stage: str, version: str) -> dict:
    from .store._files import read_json

    try:
        return read_json(project.path / "models" / stage / version / "zarr.json")["attributes"]["napari_wsss"]
    except (OSError, KeyError, ValueError):
        return {}


def _rollback(project, stage: str, to: str | None) -> str:
    current = project.model_in_use(stage)
    if current is None:
        raise FileNotFoundError(f"project {project.path} has no {stage} checkpoint")
    if to is None:
        versions = project.checkpoints(stage)
        older = [v for v in versions[: versions.index(current)][::-1] if project.checkpoint_problem(v) is None]
        if not older:
            raise ValueError(f"no readable {stage} version older than {current} in {project.path}: "
                             f"`napari-wsss models list {project.path}` shows them all")
        to = older[0]
    elif project.checkpoint_problem(to):
        raise ValueError(f"{to} is {project.checkpoint_problem(to)}: choose another version")
    project.set_model_in_use(stage, to)
    return (f"{stage}: {to} is in use (was {current}); `napari-wsss models prune {project.path} --keep N` "
            "deletes old versions, never the one in use")
