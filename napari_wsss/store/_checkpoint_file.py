"""Reading checkpoint files: the one place that calls ``torch.load`` (``weights_only=True``).

A checkpoint is ``dict(model, optimizer, scheduler, scaler, epoch, step, batch_in_epoch,
config, classes, background, backbone, stage, rng)`` (``docs/contracts.md``). Project
checkpoints live at ``models/<stage>/<version>/checkpoint.pt`` (``_checkpoints``); a
checkpoint can also be a loose ``.pt`` file (``trainer.checkpoint.DirectoryCheckpoints``).
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "CheckpointError",
    "REQUIRED_KEYS",
    "torch_load",
    "read_checkpoint",
    "check_checkpoint_classes",
    "checkpoint_version",
    "resolve_checkpoint",
]

#: Keys every model checkpoint holds.
REQUIRED_KEYS = ("model", "epoch", "step", "config", "classes", "backbone", "stage")


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used; the message names the file."""


def torch_load(path: str | Path, *, map_location="cpu"):
    """``torch.load(path, weights_only=True)``; an unreadable file raises `CheckpointError`.

    Raises
    ------
    FileNotFoundError
        No such file.
    CheckpointError
        Corrupted / truncated file or not a torch file; the message names it.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # zip, unpickling and EOF errors all mean: not a usable file
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is corrupted or not a checkpoint "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from e


def read_checkpoint(path: str | Path, *, stage: str | None = None, map_location="cpu") -> dict:
    """Load a model checkpoint (`torch_load`) and validate its keys and stage.

    Raises
    ------
    FileNotFoundError
        No such file.
    CheckpointError
        Unreadable / corrupted file, missing keys, or a checkpoint of another stage.
    """
    state = torch_load(path, map_location=map_location)
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a dict")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks key(s) {', '.join(missing)}")
    if stage is not None and state["stage"] != stage:
        raise CheckpointError(
            f"checkpoint {path} is a {state['stage']!r} checkpoint, expected {stage!r}"
        )
    return state


def check_checkpoint_classes(state: dict, classes: list[str], *, path, what: str = "the project") -> None:
    """Error naming both lists when the checkpoint's classes differ from ``classes``."""
    if list(state["classes"]) != list(classes):
        raise ValueError(
            f"checkpoint {path} was trained on classes {list(state['classes'])} but "
            f"{what} has classes {list(classes)}"
        )


def checkpoint_version(path) -> str:
    """The version id of a checkpoint file: its project node name (``classifier-0003``) or file stem."""
    path = Path(path)
    return path.parent.name if path.name == "checkpoint.pt" else path.stem


def resolve_checkpoint(project_or_checkpoint, stage: str, *, classes=None) -> tuple[dict, Path]:
    """Read the checkpoint of ``stage`` from a project (its latest) or a checkpoint file.

    Parameters
    ----------
    project_or_checkpoint : Project, path to a project directory, or path to a ``.pt`` file
        A project's checkpoint must have the project's class list.
    stage : str
    classes : list of str, optional
        Expected class list, checked in any case.

    Returns
    -------
    state : dict
    path : Path
        The file read.
    """
    from ._project import Project

    project = None
    if isinstance(project_or_checkpoint, (str, Path)):
        p = Path(project_or_checkpoint)
        if p.is_dir():
            project = Project.open(p, mode="r")
        elif not p.exists():
            raise FileNotFoundError(f"no project or checkpoint file at {p}")
        else:
            path = p
    else:
        project = project_or_checkpoint
    if project is not None:
        path = project.latest_checkpoint(stage)
        if path is None:
            raise FileNotFoundError(
                f"project {project.path} has no {stage} checkpoint; train one with "
                f"`napari-wsss train {project.path} --stage {stage}`"
            )
    state = read_checkpoint(path, stage=stage)
    if project is not None:
        check_checkpoint_classes(state, project.classes, path=path, what=f"project {project.path}")
    if classes is not None:
        check_checkpoint_classes(state, list(classes), path=path, what="the caller")
    return state, Path(path)
