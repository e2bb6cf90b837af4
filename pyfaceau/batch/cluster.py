"""Run batch tasks on a Dask distributed cluster (``pip install "pyfaceau[dask]"``).

Each task is :func:`~pyfaceau.batch.worker.run_task` in a Dask worker; the worker process
keeps its pipelines between tasks (models loaded once per worker process). Workers read
the inputs and write the outputs by path: the inputs and the output folder must be on a
filesystem every worker sees at the same path. Progress comes back as Dask events
(``Worker.log_event`` on the topic :data:`PROGRESS_TOPIC`); a stop is a Dask ``Event``
that running tasks poll, so a task stops after its current frame and writes nothing.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Callable, Iterator, Sequence

from ..errors import InputError
from .records import Status
from .worker import BatchTask, TaskResult, run_task

__all__ = ["run_dask", "PROGRESS_TOPIC"]

#: The Dask event topic of progress messages.
PROGRESS_TOPIC = "pyfaceau-progress"
#: Seconds between a task's progress messages and its polls of the stop event.
POLL_INTERVAL = 0.5


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise InputError(
            "--scheduler needs Dask distributed: pip install \"pyfaceau[dask]\""
        ) from None
    return distributed


def _dask_task(task: BatchTask, run_id: str) -> TaskResult:
    """The task as it runs in a Dask worker."""
    from distributed import Event, get_worker

    worker = get_worker()
    stop_event = Event(f"pyfaceau-stop-{run_id}")
    state = {"sent": 0, "at": time.monotonic(), "stop": False}

    def on_frame(done: int, total: int) -> None:
        now = time.monotonic()
        if now - state["at"] >= POLL_INTERVAL:
            worker.log_event(PROGRESS_TOPIC, (run_id, task.index, done - state["sent"], total))
            state["sent"], state["at"] = done, now
            state["stop"] = stop_event.is_set()

    def should_stop() -> bool:
        return bool(state["stop"])

    state["stop"] = stop_event.is_set()
    return run_task(task, on_frame, should_stop)


def run_dask(
    tasks: Sequence[BatchTask],
    scheduler: str,
    *,
    on_frames: Callable[[int, int, int], None],
    stop: threading.Event,
) -> Iterator[TaskResult]:
    """Run ``tasks`` on the Dask cluster at ``scheduler`` (``tcp://HOST:PORT``); yield each
    result as it comes. ``on_frames`` and ``stop`` as in
    :func:`~pyfaceau.batch.local.run_local`."""
    if not tasks:
        return
    distributed = _import_distributed()
    run_id = uuid.uuid4().hex
    try:
        client = distributed.Client(scheduler, timeout="30s")
    except (OSError, TimeoutError) as exc:
        raise InputError(f"--scheduler {scheduler}: cannot connect ({exc})") from None
    try:
        stop_event = distributed.Event(f"pyfaceau-stop-{run_id}", client=client)

        def on_event(event: Any) -> None:
            _, message = event
            rid, index, frames, total = message
            if rid == run_id:
                on_frames(index, frames, total)

        client.subscribe_topic(PROGRESS_TOPIC, on_event)
        futures = {
            client.submit(_dask_task, t, run_id, key=f"pyfaceau-{run_id}-{t.index}", pure=False): t
            for t in tasks
        }
        pending = set(futures)
        while pending:
            if stop.is_set() and not stop_event.is_set():
                # tasks poll it: running ones stop after their frame, the others at once
                stop_event.set()
            try:
                distributed.wait(list(pending), timeout=0.2, return_when="FIRST_COMPLETED")
            except TimeoutError:
                pass
            done = {f for f in pending if f.done()}
            pending -= done
            for f in sorted(done, key=lambda f: futures[f].index):
                task = futures[f]
                if f.status == "cancelled":
                    continue
                if f.status == "error":
                    yield TaskResult(task.index, Status.FAILED, error=f"Dask: {f.exception()}")
                else:
                    yield f.result()
    finally:
        try:
            client.unsubscribe_topic(PROGRESS_TOPIC)
        except Exception:  # the connection may already be gone
            pass
        client.close()

