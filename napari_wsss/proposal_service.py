"""Proposals computed in a child process, so that the annotation GUI never stalls.

The dense CRF (and parts of the CAM and random-walk code) hold Python's GIL for
hundreds of milliseconds at a time: run in a thread of the GUI process, they freeze the
GUI for as long. `ProposalService` runs `napari_wsss.pipeline.Pipeline` in one child
process instead (``python -m napari_wsss.proposal_service``: a fresh interpreter, no Qt,
no napari, and unlike ``multiprocessing`` it never re-imports the caller's main script),
which keeps the models loaded between images. The caller's thread only waits on a
socket (which releases the GIL) and receives the finished ``Proposals``; saving them
stays with the caller.

Messages are pickled over a socket pair (``multiprocessing.connection.Connection``).
Parent -> child: ``("init", project_path, factory)`` once, then ``("run", image_id,
config)``, ``("cancel",)`` (checked before each pipeline stage), ``("reload",)`` (forget
the models, e.g. after retraining) and ``("quit",)``. Child -> parent, per run: any
number of ``("stage", name)``, then one of ``("done", proposals)``, ``("cancelled",)`` or
``("error", message)``.

POSIX only (it hands the child a socket by file descriptor); Qt-free.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Callable

__all__ = ["ProposalService", "ProposalError", "AVAILABLE"]

AVAILABLE = os.name == "posix"
"""Whether proposals can run in a child process on this platform."""


class ProposalError(Exception):
    """The child process failed to compute proposals (its message says why).

    Not a ``RuntimeError``: superqt's workers (napari's ``thread_worker``) take any
    ``RuntimeError`` for a deleted Qt object and swallow it (no ``errored``, no
    ``finished``), so the panel would wait forever."""


class _Cancelled(Exception):
    pass


def _serve(conn: Connection) -> None:
    """Child process main loop (see the module docstring)."""
    from napari_wsss.store import Project

    _, project_path, factory = conn.recv()
    project = Project.open(Path(project_path), mode="r")
    pipe = None
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        kind = msg[0]
        if kind == "quit":
            return
        if kind == "reload":
            pipe = None
            project = Project.open(Path(project_path), mode="r")
            continue
        if kind != "run":
            continue  # a "cancel" that came after its run ended
        _, image_id, config = msg

        def progress(stage: str) -> None:
            while conn.poll():
                if conn.recv()[0] == "cancel":
                    raise _Cancelled
            conn.send(("stage", stage))

        try:
            if pipe is None:
                if factory is not None:
                    pipe = factory(project, config)
                else:
                    from napari_wsss.pipeline import Pipeline

                    pipe = Pipeline.from_project(project, config)
            if config is not None:
                pipe.config = config
            image, labels = project.image(image_id), project.image_labels(image_id)
            proposals = pipe.run(image, labels, progress=progress)
        except _Cancelled:
            conn.send(("cancelled",))
        except Exception as exc:  # noqa: BLE001 - reported to the parent, the child goes on
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        else:
            conn.send(("done", proposals))


class ProposalService:
    """One child process computing proposals for a project, one image at a time.

    Parameters
    ----------
    project_path : str or Path
    factory : callable or None
        ``factory(project, config) -> pipeline`` (picklable: a module-level function);
        default ``Pipeline.from_project``.
    """

    def __init__(self, project_path, factory=None):
        if not AVAILABLE:
            raise OSError("proposals in a child process need a POSIX system")
        self.project_path = str(project_path)
        self._factory = factory
        self._proc: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._lock = threading.Lock()  # one run at a time

    @property
    def pid(self) -> int | None:
        """Process id of the child (None before the first run)."""
        return None if self._proc is None else self._proc.pid

    def _start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        ours, theirs = socket.socketpair()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "napari_wsss.proposal_service", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        self._conn.send(("init", self.project_path, self._factory))

    def compute(self, image_id: str, config, *, on_stage: Callable[[str], None] | None = None,
                should_stop: Callable[[], bool] | None = None, poll_s: float = 0.05):
        """Proposals of ``image_id`` (blocks the calling thread, never holding the GIL
        for long); None when ``should_stop()`` turned true before the last stage.

        Raises `ProposalError` when the pipeline failed or the child died.
        """
        with self._lock:
            self._start()
            proc, conn = self._proc, self._conn
            conn.send(("run", image_id, config))
            cancelled = False
            while True:
                if not cancelled and should_stop is not None and should_stop():
                    conn.send(("cancel",))
                    cancelled = True
                try:
                    msg = conn.recv() if conn.poll(poll_s) else None
                except (EOFError, OSError) as exc:
                    raise ProposalError(f"the proposal process stopped ({exc or 'closed'})") from exc
                if msg is None:
                    if proc.poll() is not None:
                        raise ProposalError(f"the proposal process died (exit code {proc.returncode})")
                    continue
                if msg[0] == "stage":
                    if on_stage is not None:
                        on_stage(msg[1])
                elif msg[0] == "done":
                    return msg[1]
                elif msg[0] == "cancelled":
                    return None
                else:
                    raise ProposalError(msg[1])

    def reload(self) -> None:
        """Forget the loaded models (the next run loads the newest)."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                self._conn.send(("reload",))

    def close(self, timeout: float = 5.0) -> None:
        """Stop the child process (a running computation ends with `ProposalError`)."""
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if proc is None:
            return
        try:
            conn.send(("cancel",))
            conn.send(("quit",))
        except (OSError, ValueError):
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()  # in the middle of a stage: it would finish it first
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        conn.close()


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])))
