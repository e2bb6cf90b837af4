"""Splitting one computation over the threads of an executor, deterministically.

The stage kernels (CCNF patch responses, part models, CNN layers) hand independent pieces
of one result to a ``concurrent.futures.Executor``: each piece is computed alone and
written to its own place, so the result is the same whatever the number of threads.
"""

from __future__ import annotations

from concurrent.futures import Executor, Future
from typing import Any, Callable, Sequence

__all__ = ["run_all", "split_ranges"]


def split_ranges(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous ranges ``(lo, hi)`` covering ``0..n``, sizes differing by at
    most one (fewer ranges when ``n < parts``; none when ``n == 0``)."""
    parts = max(1, min(int(parts), int(n)))
    if n <= 0:
        return []
    q, r = divmod(int(n), parts)
    out, lo = [], 0
    for i in range(parts):
        hi = lo + q + (1 if i < r else 0)
        out.append((lo, hi))
        lo = hi
    return out


def run_all(
    executor: Executor | None, calls: Sequence[tuple[Callable[..., Any], tuple]]
) -> list[Any]:
    """Run every ``fn(*args)`` of ``calls`` and return their results in order.

    The first call runs on the calling thread, the others are submitted to
    ``executor``; a call the executor has not started by the time the calling thread
    needs it is cancelled there and run on the calling thread. So the calling thread
    never waits for a queue: no deadlock even when every worker of ``executor`` is busy
    (or is itself waiting in ``run_all``), and no slower than running all on one thread
    when the executor has no free worker. An executor that was shut down (a closed
    pipeline whose models are still used) takes nothing: every call runs here.
    """
    if not calls:
        return []
    if executor is None or len(calls) == 1:
        return [fn(*args) for fn, args in calls]
    futures: list[Future | None] = []
    for fn, args in calls[1:]:
        try:
            futures.append(executor.submit(fn, *args))
        except RuntimeError:  # shut down: "cannot schedule new futures after shutdown"
            futures.append(None)
    fn0, args0 = calls[0]
    results = [fn0(*args0)]
    for future, (fn, args) in zip(futures, calls[1:]):
        if future is None or future.cancel():
            results.append(fn(*args))
        else:
            results.append(future.result())
    return results
