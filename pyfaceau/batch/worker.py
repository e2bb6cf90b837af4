"""What a batch worker does with one input: the same as ``pyfaceau INPUT -o OUT``.

:func:`run_task` runs in a worker process (a local process pool or a Dask worker). It keeps
one :class:`~pyfaceau.pipeline.pipeline.Pipeline` per :class:`~pyfaceau.options.Options`
for the life of the process, so the models are loaded once per worker, not per input.
It never raises for a bad input: the error is returned in the :class:`TaskResult` and the
batch goes on.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import IncompleteInputWarning, ModelFileError, PyFaceAUError
from ..options import Options
from ..output.atomic import STALE_TEMP_SECONDS, stale_temps
from .inputs import input_signature
from .outputs import SideOutputs, Staged
from .records import Status, record_path, write_record

__all__ = ["BatchTask", "TaskResult", "StopRequested", "pipeline_for", "run_task", "stale_temp_files"]


log = logging.getLogger(__name__)

#: Pipelines of this process, one per Options (models loaded once, shared by the inputs).
_PIPELINES: dict[Options, object] = {}
_PIPELINES_LOCK = threading.Lock()


class StopRequested(Exception):
    """Raised inside a task when the batch is being stopped (Ctrl-C)."""


@dataclass(frozen=True)
class BatchTask:
    """One input to process (picklable: it travels to worker processes).

    Attributes
    ----------
    index : position in the batch (the summary's row).
    input : the input's path.
    output : the CSV to write.
    options : what to compute.
    side : the outputs written beside the CSV (aligned faces, HOG, tracked video,
        per-person CSVs).
    """

    index: int
    input: str
    output: str
    options: Options
    side: SideOutputs = SideOutputs()


@dataclass(frozen=True)
class TaskResult:
    """What became of a task.

    Attributes
    ----------
    index : the task's index.
    status : ``Status.DONE``, ``Status.FAILED``, ``Status.INTERRUPTED`` (stopped part-way)
        or ``Status.PENDING`` (stopped before it began).
    frames : frames read (0 when failed).
    faces : rows with a face (``success = 1``).
    seconds : wall time in the worker.
    error : one line, when failed.
    model_error : the error is about model files (every input would fail the same way).
    warning : part of the input could not be read (the output holds the rest).
    """

    index: int
    status: Status
    frames: int = 0
    faces: int = 0
    seconds: float = 0.0
    error: str = ""
    model_error: bool = False
    warning: str = ""


def pipeline_for(options: Options):  # -> Pipeline (imported lazily: heavy)
    """This process's pipeline for ``options``, made (and its models loaded) on first use."""
    with _PIPELINES_LOCK:
        pipe = _PIPELINES.get(options)
        if pipe is None:
            from ..pipeline.pipeline import Pipeline

            pipe = _PIPELINES[options] = Pipeline(options)
        return pipe


def run_task(
    task: BatchTask,
    on_frame: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TaskResult:
    """Process one input into its CSV, then write the record beside it.

    Parameters
    ----------
    task : the input, its output and the options.
    on_frame : progress, called after each frame with (frames done, frames announced).
    should_stop : polled after each frame; when it returns True the task stops without
        writing anything and returns ``Status.INTERRUPTED``.
    """
    t0 = time.perf_counter()

    def frame_done(done: int, total: int) -> None:
        if should_stop is not None and should_stop():
            raise StopRequested
        if on_frame is not None:
            on_frame(done, total)

    if should_stop is not None and should_stop():  # stopped before it began
        return TaskResult(task.index, Status.PENDING)
    staged: Staged | None = None
    try:
        signature = input_signature(task.input)  # before reading: a later change re-runs it
        Path(task.output).parent.mkdir(parents=True, exist_ok=True)
        staged = Staged(task.side, task.output)
        writers = staged.writers(task.input)
        # Part of the input unreadable: a note in the summary (under Options.strict,
        # Pipeline.process raises it instead). The filters are process-wide: one task
        # at a time per worker process (Dask: --nthreads 1) keeps notes with their input.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", IncompleteInputWarning)
            try:
                table = pipeline_for(task.options).process(
                    task.input, task.output, on_frame=frame_done, as_dataframe=False,
                    on_result=writers.add if writers is not None else None,
                )  # the table as the CLI keeps it: no DataFrame copy of a long video
                if writers is not None:
                    writers.finish(table)
            finally:
                if writers is not None:
                    writers.close()
        side_files = staged.commit(table)
        notes = []
        for w in caught:
            if issubclass(w.category, IncompleteInputWarning):
                notes.append(str(w.message))
            else:
                log.warning("%s: %s", task.input, w.message)
        # a FrameTable, or a DataFrame when several faces are measured
        column = table.column if hasattr(table, "column") else (lambda c: table[c].to_numpy())
        frames = len(np.unique(column("frame"))) if len(table) else 0
        faces = int(column("success").sum()) if len(table) else 0
        write_record(
            task.output,
            input_path=task.input,
            input_signature=signature,
            options=task.options,
            frames=frames,
            faces=faces,
            side=task.side,
            side_files=side_files,
        )
    except StopRequested:
        return TaskResult(task.index, Status.INTERRUPTED, seconds=time.perf_counter() - t0)
    except Exception as exc:  # one input's failure is recorded; the batch goes on
        if isinstance(exc, IncompleteInputWarning):  # --strict: nothing was written
            error = f"{exc} [--strict: stopped, nothing written]"
        elif isinstance(exc, PyFaceAUError):
            error = str(exc)
        elif isinstance(exc, OSError):
            error = f"{exc.filename or task.input}: {exc.strerror or exc}"
        else:  # a bug: keep the traceback in the worker's log
            log.exception("%s: unexpected error", task.input)
            error = f"{type(exc).__name__}: {exc}"
        return TaskResult(
            task.index,
            Status.FAILED,
            seconds=time.perf_counter() - t0,
            error=" ".join(error.split()),  # one line in the summary
            model_error=isinstance(exc, ModelFileError),
        )
    finally:
        if staged is not None:
            staged.discard()  # what a failure or a stop left; nothing after commit
    return TaskResult(
        task.index, Status.DONE, frames, faces, time.perf_counter() - t0,
        warning=" ".join("; ".join(dict.fromkeys(notes)).split()),
    )


def stale_temp_files(output: str | os.PathLike, older_than: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Temporary files of ``output`` and its record, and temporary folders of its side
    outputs, that a killed writer left behind, not modified for ``older_than`` seconds
    (:func:`pyfaceau.output.atomic.stale_temps`)."""
    out = Path(output)
    found = stale_temps(out, older_than) + stale_temps(record_path(out), older_than)
    return list(dict.fromkeys(found))  # the CSV's pattern also matches the record's files
