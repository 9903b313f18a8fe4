"""Work that must not run on the GUI thread: proposals (a model) and saving arrays.

`proposal_worker` wraps `proposal_job` in a napari ``thread_worker``; its yields are
``(step, total, text)`` progress triples, and quitting it between steps cancels the job
before anything is saved. `Saver` writes corrections in one background thread so that
writes to the same image land in the order they were made (a pool of independent
workers could reorder two saves of one image and keep the older one).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import threading
from typing import Callable

import numpy as np
from napari.qt.threading import GeneratorWorker, thread_worker

__all__ = ["proposal_job", "proposal_worker", "run_in_worker", "Saver"]

log = logging.getLogger(__name__)


def proposal_job(session, image_id: str):
    """Generator: load the model, compute and save the proposals of one image.

    Yields
    ------
    (int, int, str)
        ``(step, total, description)`` before each step.

    Returns
    -------
    str
        ``image_id`` once the proposals are saved.
    """
    yield (0, 3, "loading model")
    session.pipeline()
    yield (1, 3, f"computing proposals for {image_id}")
    proposals = session.compute(image_id)
    yield (2, 3, "saving proposals")
    session.store_proposals(image_id, proposals)
    yield (3, 3, "done")
    return image_id


def proposal_worker(session, image_id: str) -> GeneratorWorker:
    """A not-yet-started napari worker running `proposal_job`."""
    return thread_worker(proposal_job, start_thread=False)(session, image_id)


def run_in_worker(func: Callable, *args, **kwargs):
    """A not-yet-started napari worker calling ``func(*args, **kwargs)``."""
    return thread_worker(func, start_thread=False)(*args, **kwargs)


class Saver:
    """Ordered background writes of corrections.

    Parameters
    ----------
    write : callable
        ``write(image_id, layer_data)``; runs in the saver's thread.
    on_error : callable or None
        Called (in the saver's thread) with ``(image_id, exception)`` when a write fails.
    """

    def __init__(self, write: Callable[[str, np.ndarray], None], *, on_error=None):
        self._write = write
        self._on_error = on_error
        self._pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="wsss-save")
        self._futures: list[cf.Future] = []
        self._lock = threading.Lock()

    def _run(self, image_id: str, data: np.ndarray) -> None:
        try:
            self._write(image_id, data)
        except Exception as exc:  # reported, never lost silently
            log.exception("saving corrections of %s failed", image_id)
            if self._on_error is not None:
                self._on_error(image_id, exc)
            raise

    def submit(self, image_id: str, data: np.ndarray) -> cf.Future:
        """Queue a write of a copy of ``data`` (the layer keeps changing)."""
        fut = self._pool.submit(self._run, image_id, np.array(data, copy=True))
        with self._lock:
            self._futures = [f for f in self._futures if not f.done()] + [fut]
        return fut

    def pending(self) -> int:
        with self._lock:
            return sum(not f.done() for f in self._futures)

    def flush(self, timeout: float | None = 30.0) -> None:
        """Wait until every queued write has finished."""
        with self._lock:
            futs = list(self._futures)
        cf.wait(futs, timeout=timeout)

    def close(self) -> None:
        """Finish queued writes and stop the thread."""
        self._pool.shutdown(wait=True)
