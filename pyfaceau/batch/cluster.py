"""Run batch tasks on a Dask distributed cluster (``pip install "pyfaceau[dask]"``).

Each task is :func:`~pyfaceau.batch.worker.run_task` in a Dask worker; the worker process
keeps its pipelines between tasks (models loaded once per worker process). Workers read
the inputs and write the outputs by path: the inputs and the output folder must be on a
filesystem every worker sees at the same path. Progress comes back as Dask events
(``Worker.log_event`` on the topic :data:`PROGRESS_TOPIC`); a stop is a Dask ``Event``
that running tasks poll, so a task stops after its current frame and writes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from typing import Any, Callable, Iterator, Sequence

from ..errors import InputError
from .records import Status
from .worker import BatchTask, TaskResult, run_task

__all__ = ["PROGRESS_TOPIC", "check_scheduler_address", "run_dask"]

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


def check_scheduler_address(scheduler: str) -> None:
    """Raise :class:`InputError` (one line) unless ``scheduler`` reads as a Dask
    scheduler's address (``tcp://HOST:PORT``, ``tls://...``; nothing is contacted)."""
    _import_distributed()
    from distributed.comm.addressing import get_address_host_port, parse_address
    from distributed.comm.registry import backends

    try:
        scheme, _ = parse_address(scheduler)
        if scheme not in backends:
            raise ValueError(f"unknown address scheme {scheme!r} (known: {', '.join(backends)})")
        if scheme in ("tcp", "tls", "ws", "wss"):  # these need HOST:PORT
            get_address_host_port(scheduler)
    except (ValueError, TypeError) as exc:
        raise InputError(f"--scheduler {scheduler}: not a scheduler address, e.g. "
                         f"tcp://HOST:8786 ({exc})") from None


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
    try:  # (the address was checked by run_batch before any work)
        client = distributed.Client(scheduler, timeout="30s")
    except (OSError, TimeoutError) as exc:
        raise InputError(f"--scheduler {scheduler}: cannot connect ({exc})") from None
    quiet = _quiet_distributed_logs()
    try:
        yield from _run_on(client, distributed, scheduler, tasks, run_id, on_frames, stop)
    except (OSError, asyncio.CancelledError, _futures_cancelled(distributed)) as exc:
        # the cluster lost: a closed connection (CommClosedError is an OSError), the
        # futures cancelled with it
        why = " ".join(str(exc).split())[:160] or type(exc).__name__
        if isinstance(exc, (OSError, asyncio.CancelledError)) or any(
                word in why.lower() for word in ("connection", "closed")):
            # FuturesCancelledError's long text, CommClosedError's "Stream is closed"
            why = "lost the connection to the scheduler"
        raise _lost(scheduler, why) from None
    finally:
        for close in (lambda: client.unsubscribe_topic(PROGRESS_TOPIC), client.close):
            try:
                close()
            except Exception:  # the connection may already be gone
                pass
        for logger, level in quiet:
            logger.setLevel(level)


def _quiet_distributed_logs() -> list[tuple[logging.Logger, int]]:
    """Dask's client logs a lost scheduler as tracebacks on stderr before its error
    reaches :func:`run_dask`, which says it in one line: its loggers are silenced while
    the batch runs. Returns what to restore."""
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] == "distributed"]
    saved = []
    for name in ["distributed", *names]:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        logger.setLevel(logging.CRITICAL + 1)
    return saved


def _futures_cancelled(distributed: Any) -> type[BaseException]:
    """Dask's error for futures cancelled by a lost connection (where it has one)."""
    return getattr(getattr(distributed, "client", None), "FuturesCancelledError",
                   asyncio.CancelledError)


def _lost(scheduler: str, why: str) -> InputError:
    return InputError(f"--scheduler {scheduler}: the cluster stopped answering ({why}); "
                      "the inputs not finished stay pending in the summary")


def _run_on(client: Any, distributed: Any, scheduler: str, tasks: Sequence[BatchTask],
            run_id: str,
            on_frames: Callable[[int, int, int], None],
            stop: threading.Event) -> Iterator[TaskResult]:
    """:func:`run_dask`'s loop on a connected ``client``."""
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
                if stop.is_set():
                    continue
                # nobody here cancels a task: the scheduler or its workers are gone
                raise _lost(scheduler, f"input {task.input} cancelled")
            if f.status == "error":
                yield TaskResult(task.index, Status.FAILED, error=f"Dask: {f.exception()}")
            else:
                yield f.result()

