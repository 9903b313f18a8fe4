"""The checkpoint half of :class:`~napari_wsss.store.Project`: saving, listing and loading
checkpoint versions and choosing the model in use (``docs/store.md``, "Models in use")."""

from __future__ import annotations

from pathlib import Path

from . import _checkpoints as ckpt
from . import _models
from ._checkpoint_file import CheckpointError

__all__ = ["ProjectModels"]


class ProjectModels:
    """Checkpoint and model-in-use methods of ``Project`` (a mixin: it uses the project's
    ``path``, ``classes``, ``_nodes``, ``_writable()``, ``checkpoint_fallback`` and
    ``checkpoint_warnings``)."""

    # -- checkpoints -------------------------------------------------------------------
    def save_checkpoint(self, stage: str, state: dict, *, version: str | None = None,
                        best: dict | None = None, use: bool = True) -> str:
        """Atomically save a checkpoint dict (``torch.save``); return its version id.

        A version is a training run: ``version=None`` starts one, an existing version id
        saves the run's next step into it; ``best`` marks the step as the run's best
        (``{"metric": name, "value": v}``; also kept as ``best.pt``).
        ``use=True``: the version becomes the model in use (any pin is cleared);
        ``use=False``: the model in use stays what it was (pinned if it was implicit).
        """
        with self._writable():
            before = _models.in_use(self._nodes, stage)
            if not use and before is not None and before != version:
                # pinned before the new version exists: a process killed mid-save leaves it in use
                _models.pin(self._nodes, stage, before)
            version = ckpt.save_checkpoint(self._nodes, stage, state, self.classes, version=version, best=best)
            if use:
                _models.set_in_use(self._nodes, stage, None)
            return version

    def model_in_use(self, stage: str) -> str | None:
        """Version id used for ``stage``: the one pinned by :meth:`set_model_in_use` (e.g. a
        rollback), else the newest; ``None`` when the stage has no checkpoint."""
        return _models.in_use(self._nodes, stage)

    def set_model_in_use(self, stage: str, version: str | None) -> None:
        """Pin the version used for ``stage`` (``None``: back to "the newest")."""
        with self._writable():
            _models.set_in_use(self._nodes, stage, version)

    def checkpoint_problem(self, version: str) -> str | None:
        """Why a version's file cannot be loaded (``None`` if intact); reads no pickles."""
        return _models.problem(self.checkpoint_path(version))

    def prune_checkpoints(self, stage: str, keep: int) -> list[str]:
        """Delete old versions of ``stage``, keeping the newest ``keep`` and the one in use."""
        with self._writable():
            return _models.prune(self._nodes, stage, keep)

    @property
    def keep_checkpoints(self) -> int:
        """Checkpoint versions kept per stage besides the one in use (project setting,
        default 3): the trainer prunes to it at the end of every run."""
        return _models.keep_setting(self._nodes)

    def set_keep_checkpoints(self, keep: int) -> None:
        """Change the keep setting (an integer >= 1); prunes nothing by itself."""
        with self._writable():
            _models.set_keep_setting(self._nodes, keep)

    def checkpoints(self, stage: str) -> list[str]:
        """Complete checkpoint versions (training runs) of a stage, oldest first."""
        return ckpt.checkpoint_versions(self.path, stage)

    def checkpoint_info(self, version: str) -> dict:
        """A version's attributes: ``last`` and ``best`` steps (epoch, step, metric), ``saves``, ..."""
        return ckpt.checkpoint_info(self.path, version)

    def latest_checkpoint(self, stage: str, which: str = "last") -> Path | None:
        """Path of the checkpoint file of the model in use for ``stage`` (its last step, or its
        best with ``which="best"``), or ``None``.

        That is the newest version unless another one was pinned (:meth:`model_in_use`). With
        ``project.checkpoint_fallback = True`` (``napari-wsss prelabel`` sets it) an unreadable
        file is passed over for the newest readable older version, and a warning naming both
        is appended to ``project.checkpoint_warnings``.
        """
        version = self.model_in_use(stage)
        if version is None:
            return None
        if self.checkpoint_fallback and self.checkpoint_problem(version):
            return self._fallback_checkpoint(stage, version)
        return ckpt.checkpoint_path(self.path, version, which)

    def _fallback_checkpoint(self, stage: str, version: str) -> Path:
        versions = self.checkpoints(stage)
        older = versions[: versions.index(version)][::-1]
        bad = [(version, self.checkpoint_problem(version))]
        for candidate in older:
            why = self.checkpoint_problem(candidate)
            if why is None:
                warning = (f"{stage} checkpoint {version} ({self.checkpoint_path(version)}) is {bad[0][1]}: "
                           f"using {candidate} instead; {_models.rollback_hint(self.checkpoint_path(version))}")
                if warning not in self.checkpoint_warnings:
                    self.checkpoint_warnings.append(warning)
                return ckpt.checkpoint_path(self.path, candidate)
            bad.append((candidate, why))
        listing = "; ".join(f"{v}: {why}" for v, why in bad)
        raise CheckpointError(
            f"no readable {stage} checkpoint in {self.path} ({listing}): retrain with "
            f"`napari-wsss train {self.path} --stage {stage}`"
        )

    def checkpoint_path(self, version: str, which: str = "last") -> Path:
        """Path of the checkpoint file of a version id (e.g. ``'classifier-0002'``): its last
        step, or its best with ``which="best"``."""
        return ckpt.checkpoint_path(self.path, version, which)

    def load_checkpoint(self, stage_or_version: str, *, map_location="cpu") -> dict | None:
        """Load the latest checkpoint of a stage, or a given version, checking its classes."""
        if stage_or_version in ckpt.CHECKPOINT_STAGES:
            path = self.latest_checkpoint(stage_or_version)
            if path is None:
                return None
        else:
            path = self.checkpoint_path(stage_or_version)
        return ckpt.load_checkpoint(path, self.classes, map_location=map_location)
