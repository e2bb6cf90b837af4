"""Run batch tasks on this machine: a pool of worker processes.

Workers are started with ``spawn`` (a fresh interpreter): forking a parent that already
runs threads (the progress reader, OpenCV's and numba's pools) is not safe. Each worker
keeps its pipelines for its whole life (models loaded once per worker) and sends its
progress, a few times a second, through one queue the parent reads. Ctrl-C reaches the
workers as a shared *stop* event, not as a signal: a worker finishes the frame it is on
and drops the input without writing anything, and an output being written is finished;
SIGTERM stops a batch the same way (the workers are in a process group of their own).
A worker whose parent dies stops the same way.

A worker that dies (killed, out of memory, a crash inside a library) breaks the pool: the
parent starts a new one. The inputs that were running then (a worker marks an input in a
shared array before it starts it, so the mark survives its death) are each run again
alone, so that an input which kills its worker again is the one that fails ("the worker
process died"), and the others finish; the inputs not started yet are simply run again.
Pools that die ``MAX_BARREN_POOLS`` times before starting any input (a worker that cannot
start) fail the rest.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Generator, Iterator, Sequence

from ..opencv_io import stderr_kept
from ..options import Options
from ..startup import save_kernels, start_process
from .records import Status
from .worker import BatchTask, TaskResult, pipeline_for, run_task

__all__ = ["run_local", "PROGRESS_INTERVAL", "MAX_BARREN_POOLS"]

#: Seconds between a worker's progress messages (and its checks for a dead parent).
PROGRESS_INTERVAL = 0.25
#: Pools dying this many times before any input started: the remaining inputs fail.
MAX_BARREN_POOLS = 3
#: The error of an input whose worker died under it.
WORKER_DIED = "the worker process died on this input (killed, out of memory, or a crash in a library)"

log = logging.getLogger(__name__)

# -- in the worker process -----------------------------------------------------------------
_progress: "mp.Queue | None" = None
_stop: "threading.Event | None" = None  # an mp.Event
_started: "Any" = None  # a shared array of bytes, one per task index
_parent_gone = threading.Event()
_busy = threading.Lock()  # held while a task runs


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    _parent_gone.set()  # a running task stops after its frame, then the worker exits
    if _busy.acquire(blocking=False):  # idle: nobody will send another task
        os._exit(1)


def _init_worker(
    progress: "mp.Queue", stop: object, started: Any, options: Options | None
) -> None:
    """Worker initialiser: Ctrl-C and SIGTERM are the parent's to handle (it sets
    ``stop``): the worker leaves the terminal's process group, so a signal sent to the
    group (Ctrl-C, ``kill -- -PGID``) does not kill it mid-input, while the pool can
    still end it (``terminate()`` on a broken pool); the models of ``options`` are loaded
    now, before the first input's clock starts."""
    global _progress, _stop, _started
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if hasattr(os, "setpgrp"):  # POSIX
            os.setpgrp()
    except OSError:  # already a group leader, or not allowed: Ctrl-C is ignored anyway
        pass
    _progress, _stop, _started = progress, stop, started  # type: ignore[assignment]
    threading.Thread(
        target=_watch_parent, args=(os.getppid(),), name="pyfaceau-parent", daemon=True
    ).start()
    start_process()  # a process pyfaceau owns (pyfaceau/startup.py)
    if options is not None:
        try:
            pipeline_for(options).load()
        except Exception:  # noqa: BLE001 - the first task meets the error and reports it
            log.debug("loading the models failed", exc_info=True)


def _stopping() -> bool:
    return _parent_gone.is_set() or (_stop is not None and _stop.is_set())


def _run_in_worker(task: BatchTask) -> TaskResult:
    sent = [0, time.monotonic()]

    def on_frame(done: int, total: int) -> None:
        now = time.monotonic()
        if now - sent[1] >= PROGRESS_INTERVAL and _progress is not None:
            _progress.put((task.index, done - sent[0], total))
            sent[0], sent[1] = done, now

    with _busy:
        if _started is not None:  # read by the parent if this process dies
            _started[task.index] = 1
        result = run_task(task, on_frame, _stopping)
        if _parent_gone.is_set():  # nobody will read the result
            os._exit(1)
        save_kernels()  # what numba compiled for this task, for the next workers' start
    return result


# -- in the parent -------------------------------------------------------------------------
def _common_options(tasks: Sequence[BatchTask]) -> Options | None:
    """The options every task shares (their models are loaded when a worker starts)."""
    first = tasks[0].options
    return first if all(t.options == first for t in tasks) else None


def run_local(
    tasks: Sequence[BatchTask],
    jobs: int,
    *,
    on_frames: Callable[[int, int, int], None],
    stop: threading.Event,
) -> Iterator[TaskResult]:
    """Run ``tasks`` on ``jobs`` worker processes; yield each result as it comes.

    Parameters
    ----------
    tasks : the inputs to process.
    jobs : worker processes.
    on_frames : progress, called in the parent with (task index, new frames, frames
        announced).
    stop : set it (e.g. on Ctrl-C) to stop: tasks not started are not started, running
        ones stop after their current frame; results keep coming until every worker is
        done (interrupted ones with ``Status.INTERRUPTED``).
    """
    if not tasks:
        return
    ctx = mp.get_context("spawn")
    progress: mp.Queue = ctx.Queue()
    worker_stop = ctx.Event()
    started = ctx.Array("b", max(t.index for t in tasks) + 1, lock=False)
    reading = threading.Event()
    reading.set()

    def read_progress() -> None:
        while reading.is_set():
            try:
                index, frames, total = progress.get(timeout=0.2)
            except queue.Empty:
                continue
            except (EOFError, OSError):
                return
            try:
                on_frames(index, frames, total)
            except Exception:  # noqa: BLE001 - a display error must not stop the reading
                log.debug("progress callback failed", exc_info=True)

    reader = threading.Thread(target=read_progress, name="pyfaceau-progress", daemon=True)
    reader.start()
    pool = functools.partial(_pool_round, ctx=ctx, progress=progress, worker_stop=worker_stop,
                             started=started, stop=stop)
    barren = 0
    todo = list(tasks)
    try:
        while todo and not stop.is_set():
            lost = yield from pool(todo, jobs)
            if not lost:
                break
            suspects = [t for t in lost if started[t.index]]
            todo = [t for t in lost if not started[t.index]]
            if not suspects:  # the pool died before it started anything
                barren += 1
                if barren >= MAX_BARREN_POOLS:
                    for task in todo:
                        yield TaskResult(task.index, Status.FAILED, error=WORKER_DIED)
                    break
                continue
            barren = 0
            log.warning("a batch worker died; the %d input(s) it had started run again alone",
                        len(suspects))
            for task in suspects:  # alone: a worker dying now died on this input
                if stop.is_set():
                    break
                started[task.index] = 0
                if (yield from pool([task], 1)):
                    if started[task.index]:
                        yield TaskResult(task.index, Status.FAILED, error=WORKER_DIED)
                    else:  # that pool died before it started the input: run it again
                        todo.append(task)
    finally:
        worker_stop.set()
        reading.clear()
        reader.join(timeout=2)
        progress.close()


def _pool_round(
    tasks: Sequence[BatchTask],
    jobs: int,
    *,
    ctx: Any,
    progress: "mp.Queue",
    worker_stop: Any,
    started: Any,
    stop: threading.Event,
) -> Generator[TaskResult, None, list[BatchTask]]:
    """Run ``tasks`` on a new pool of ``jobs`` workers, yielding each result; returns the
    tasks lost because a worker died (the pool is then broken). ``started`` marks, by
    task index, the inputs a worker began."""
    for t in tasks:
        started[t.index] = 0
    with stderr_kept():  # the workers start now: with the real standard error stream
        pool = ProcessPoolExecutor(
            max_workers=min(jobs, len(tasks)),
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(progress, worker_stop, started, _common_options(tasks)),
        )
        futures: dict[Future, BatchTask] = {pool.submit(_run_in_worker, t): t for t in tasks}
    pending = set(futures)
    lost: list[BatchTask] = []
    finished = False
    try:
        while pending:
            if stop.is_set() and not worker_stop.is_set():
                worker_stop.set()
                for f in pending:
                    f.cancel()
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for f in done:
                task = futures[f]
                if f.cancelled():
                    continue  # never started: stays pending in the summary
                exc = f.exception()
                if exc is not None and stop.is_set():  # e.g. Ctrl-C while workers started
                    yield TaskResult(task.index, Status.INTERRUPTED)
                elif isinstance(exc, BrokenProcessPool):  # a worker died (killed, OOM, crash)
                    lost.append(task)
                elif exc is not None:
                    yield TaskResult(task.index, Status.FAILED, error=f"the worker failed: {exc}")
                else:
                    yield f.result()
        finished = True
    finally:
        if not finished:  # the caller stopped reading (an error): running inputs stop
            worker_stop.set()
        for f in pending:
            f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
    return sorted(lost, key=lambda t: t.index)
