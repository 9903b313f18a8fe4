"""Work that must not run on the GUI thread: proposals (a model) and saving arrays.

`proposal_worker` wraps `proposal_job` in a napari ``thread_worker``; its yields are
``(step, total, text)`` progress triples, and quitting it between steps cancels the job
before anything is saved. `BackgroundIO` writes corrections and reads images ahead in
one background thread, so that operations on one image happen in the order they were
asked for (a pool of independent workers could reorder two saves of one image and keep
the older one, or read an image before its last save landed).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import threading
from typing import Callable

import numpy as np
from napari.qt.threading import GeneratorWorker, thread_worker

__all__ = ["Cancelled", "proposal_job", "proposal_worker", "run_in_worker", "BackgroundIO"]

log = logging.getLogger(__name__)


class Cancelled(Exception):
    """Raised inside a job when its worker was asked to quit."""


def proposal_job(session, image_id: str, *, report: Callable, should_stop: Callable[[], bool]):
    """Generator: compute (`AnnotationSession.compute_proposals`: in a child process by
    default) and save the proposals of one image.

    Parameters
    ----------
    session : AnnotationSession
    image_id : str
    report : callable
        ``report((step, total, text))``, called before each pipeline stage (from this
        thread; the worker's ``yielded`` signal carries it to the GUI thread).
    should_stop : callable
        Checked before each stage; when true the job stops and saves nothing.

    Yields
    ------
    (int, int, str)
        ``(step, total, description)`` before loading and before saving.

    Returns
    -------
    str or None
        ``image_id`` once the proposals are saved; None when cancelled.
    """
    config = session.config
    stages = ["cam", *(getattr(config, "refine", None) or ("crf", "rw"))]
    total = len(stages) + 2
    yield (0, total, "loading models" if session.in_process else "starting")

    def on_stage(stage: str) -> None:
        step = 1 + (stages.index(stage) if stage in stages else len(stages) - 1)
        report((step, total, f"{image_id}: {stage}"))

    proposals = session.compute_proposals(image_id, on_stage=on_stage, should_stop=should_stop)
    if proposals is None:
        return None
    yield (total - 1, total, "saving proposals")
    session.store_proposals(image_id, proposals)
    return image_id


def proposal_worker(session, image_id: str) -> GeneratorWorker:
    """A not-yet-started napari worker running `proposal_job`; ``quit()`` cancels it
    before the next pipeline stage and nothing is saved. Errors (e.g. no trained
    classifier) go to its ``errored`` signal."""
    holder: list[GeneratorWorker] = []
    worker = thread_worker(proposal_job, start_thread=False, ignore_errors=True)(
        session, image_id,
        report=lambda p: holder[0].yielded.emit(p),
        should_stop=lambda: holder[0].abort_requested,
    )
    holder.append(worker)
    return worker


def run_in_worker(func: Callable, *args, **kwargs):
    """A not-yet-started napari worker calling ``func(*args, **kwargs)``; errors go to its
    ``errored`` signal (the panel shows them) instead of being raised in the GUI thread."""
    return thread_worker(func, start_thread=False, ignore_errors=True)(*args, **kwargs)


class BackgroundIO:
    """Ordered background reads and writes of the project, on one thread.

    Corrections are written here (never on the GUI thread), and the next images are
    read ahead here. One thread keeps them ordered: a read queued after a write of the
    same image sees that write, which a pool of independent workers would not promise.

    Parameters
    ----------
    write : callable
        ``write(image_id, layer_data)``.
    read : callable
        ``read(image_id) -> view``.
    on_error : callable or None
        Called (in the I/O thread) with ``(image_id, exception)`` when a write fails.
    """

    def __init__(self, write: Callable, read: Callable, *, on_error=None, cache_size: int = 4):
        self._write = write
        self._read = read
        self._on_error = on_error
        self._pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="wsss-io")
        self._writes: list[cf.Future] = []
        self._reads: dict[str, cf.Future] = {}
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def _run_write(self, image_id: str, data: np.ndarray) -> None:
        try:
            self._write(image_id, data)
        except Exception as exc:  # reported, never lost silently
            log.exception("saving corrections of %s failed", image_id)
            if self._on_error is not None:
                self._on_error(image_id, exc)
            raise

    def save(self, image_id: str, data: np.ndarray, *, copy: bool = True) -> cf.Future:
        """Queue a write of a copy of ``data`` (the layer keeps changing; ``copy=False``
        when the caller hands over an array of its own)."""
        fut = self._pool.submit(self._run_write, image_id, np.array(data, copy=True) if copy else data)
        with self._lock:
            self._writes = [f for f in self._writes if not f.done()] + [fut]
            self._reads.pop(image_id, None)  # a read-ahead of this image is now stale
        return fut

    def prefetch(self, image_id: str) -> None:
        """Queue a read-ahead of ``image_id`` (kept for the next `load`)."""
        with self._lock:
            if image_id in self._reads:
                return
            self._reads[image_id] = self._pool.submit(self._read, image_id)
            while len(self._reads) > self._cache_size:
                old = next(iter(self._reads))
                self._reads.pop(old).cancel()

    def load(self, image_id: str):
        """The view of ``image_id``: read ahead, or read now after every queued write."""
        with self._lock:
            fut = self._reads.pop(image_id, None)
        if fut is None or fut.cancelled():
            fut = self._pool.submit(self._read, image_id)
        return fut.result()

    def forget(self, image_id: str | None = None) -> None:
        """Drop read-aheads of one image (or all): the store changed under them."""
        with self._lock:
            for key in [image_id] if image_id is not None else list(self._reads):
                fut = self._reads.pop(key, None)
                if fut is not None:
                    fut.cancel()

    def pending(self) -> int:
        """Writes not finished yet."""
        with self._lock:
            return sum(not f.done() for f in self._writes)

    def flush(self, timeout: float | None = 30.0) -> None:
        """Wait until every queued write has finished."""
        with self._lock:
            futs = list(self._writes)
        cf.wait(futs, timeout=timeout)

    def close(self) -> None:
        """Finish queued writes, drop read-aheads and stop the thread."""
        self.forget()
        self._pool.shutdown(wait=True)
