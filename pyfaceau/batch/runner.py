"""A whole batch: plan the inputs, skip the finished ones, run the rest, keep the summary.

>>> from pyfaceau.batch import run_batch                           # doctest: +SKIP
>>> report = run_batch(["study/"], "out/", Options.fast(), jobs=2)
>>> report.counts        # {'done': 10, 'skipped': 0, 'failed': 1, ...}
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..errors import InputError, ModelFileError
from ..options import Options, available_cores
from ..output.atomic import remove_temps
from ..validation import require_writable_folder
from .inputs import BatchInput, discover_inputs, input_signature
from .outputs import SideOutputs
from .records import SUMMARY_NAME, Status, SummaryRow, read_valid_record, write_summary
from .worker import BatchTask, TaskResult, stale_temp_files

__all__ = ["BatchProgress", "BatchReport", "plan_workers", "run_batch"]

log = logging.getLogger(__name__)


class BatchProgress:
    """Hooks a batch calls as it goes (all no-ops here; the CLI draws a bar with them).

    Called from the batch's threads, never at the same time (the batch holds a lock).
    """

    def start(self, inputs: int, skipped: int, jobs: int, threads: int) -> None:
        """The batch starts ``inputs`` inputs (``skipped`` others were up to date)."""

    def frames(self, new: int, total_change: int) -> None:
        """``new`` more frames are done; the frames expected in total changed by
        ``total_change``."""

    def finished(self, row: SummaryRow) -> None:
        """An input finished (done, failed or interrupted)."""

    def stopping(self) -> None:
        """Ctrl-C: the batch is stopping (running inputs stop after their frame)."""


@dataclass
class BatchReport:
    """The outcome of :func:`run_batch`.

    Attributes
    ----------
    rows : one summary row per input, in input order.
    summary : the summary CSV (``OUT_DIR/pyfaceau-batch.csv``).
    interrupted : the batch was stopped (Ctrl-C, SIGTERM) before every input was done.
    stopped_by : the signal that stopped it (``signal.SIGINT`` or ``SIGTERM``), or None.
    jobs, threads : workers used and threads per input (local runs).
    """

    rows: list[SummaryRow]
    summary: Path
    interrupted: bool = False
    stopped_by: int | None = None
    jobs: int = 0
    threads: int = 0

    @property
    def counts(self) -> dict[str, int]:
        """Inputs per status (``"done"``, ``"skipped"``, ``"failed"``, ...)."""
        out = {s.value: 0 for s in Status}
        for row in self.rows:
            out[row.status.value] += 1
        return out

    @property
    def failed(self) -> list[SummaryRow]:
        return [r for r in self.rows if r.status is Status.FAILED]

    @property
    def ok(self) -> bool:
        """Every input has its output (done now or before)."""
        return all(r.status in (Status.DONE, Status.SKIPPED) for r in self.rows)


def plan_workers(
    n_inputs: int, jobs: int | None = None, threads: int | None = None, cores: int | None = None
) -> tuple[int, int]:
    """Worker processes and threads per input so that jobs x threads = cores.

    Without either: one input per core (``threads = 1``), fewer workers when there are
    fewer inputs (their cores then go to threads). Given one, the other fills the cores.
    Never more workers than inputs.
    """
    cores = cores or available_cores()
    n = max(1, n_inputs)
    if jobs is None and threads is None:
        jobs = min(cores, n)
        threads = max(1, cores // jobs)
    elif jobs is None:
        assert threads is not None
        jobs = max(1, min(n, cores // threads))
    elif threads is None:
        threads = max(1, cores // jobs)
    return max(1, min(jobs, n)), threads  # no worker without an input to take


def _probe_frames(path: Path) -> int:
    """Frames an input announces (cheap: no frame is decoded); 0 if unknown."""
    import cv2

    from ..opencv_io import opencv_log_quiet, opencv_path
    from ..pipeline.sources import IMAGE_SUFFIXES, announced_frame_count

    try:
        if path.is_dir():
            return sum(1 for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return 1
        with opencv_path(path) as name, opencv_log_quiet():  # any file name; no log lines
            cap = cv2.VideoCapture(name)
        try:
            return announced_frame_count(cap)
        finally:
            cap.release()
    except (OSError, cv2.error):
        return 0


@dataclass
class _Tally:
    """Frames per task for the progress bar: announced (probed) and reported so far."""

    expected: dict[int, int] = field(default_factory=dict)
    reported: dict[int, int] = field(default_factory=dict)
    closed: set[int] = field(default_factory=set)


def run_batch(
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    options: Options | None = None,
    *,
    jobs: int | None = None,
    pattern: str | None = None,
    scheduler: str | None = None,
    force: bool = False,
    progress: BatchProgress | None = None,
    side: SideOutputs = SideOutputs(),
) -> BatchReport:
    """Measure AUs on many inputs: each output as ``pyfaceau INPUT -o OUT`` would write it.

    Parameters
    ----------
    inputs : files, folders and ``"@LIST"`` files (see :mod:`pyfaceau.batch.inputs`).
    out_dir : the output folder; outputs mirror the inputs' paths below their common root.
    options : what to compute (default: the OpenFace-faithful path). ``options.threads``
        is the threads per input (default: see :func:`plan_workers`; 1 on a cluster).
    jobs : worker processes on this machine (default: see :func:`plan_workers`).
    pattern : a glob choosing the files in folders.
    scheduler : a Dask scheduler's address (``tcp://HOST:PORT``): run on that cluster.
    force : process every input, even those whose output is up to date.
    progress : hooks for a progress display.
    side : outputs written beside each CSV (:class:`~pyfaceau.batch.outputs.SideOutputs`:
        aligned faces, HOG file, tracked video, per-person CSVs).

    Returns
    -------
    BatchReport
        The summary rows; also written to ``OUT_DIR/pyfaceau-batch.csv`` as inputs finish.

    Raises
    ------
    InputError
        Bad arguments, no inputs, an output folder that cannot be written.
    ModelFileError
        A model file is missing or damaged (the batch stops: every input would fail).
    """
    options = options if options is not None else Options()
    progress = progress or BatchProgress()
    if scheduler is not None:
        from .cluster import check_scheduler_address

        check_scheduler_address(scheduler)  # before any work
    out_root = Path(os.path.abspath(out_dir))
    found = discover_inputs(inputs, pattern=pattern, exclude=out_root)
    require_writable_folder(out_root, "the output folder")

    _check_output_names(found, out_root, side)
    rows, tasks = _plan(found, out_root, options, force, side)
    if scheduler is None:
        jobs, threads = plan_workers(len(tasks), jobs, options.threads)
    else:
        threads = options.threads or 1
    run_options = options.replace(threads=threads)  # not in the record: same output
    tasks = [dataclasses.replace(t, options=run_options) for t in tasks]
    summary = out_root / SUMMARY_NAME
    write_summary(summary, rows)
    report = BatchReport(rows, summary, jobs=jobs or 0, threads=threads)
    skipped = sum(r.status is Status.SKIPPED for r in rows)
    progress.start(len(tasks), skipped, jobs or 0, threads)
    if not tasks:
        return report

    lock = threading.Lock()
    tally = _Tally()
    stop = threading.Event()

    def probe() -> None:
        for t in tasks:
            if stop.is_set():
                return
            n = _probe_frames(Path(t.input))
            with lock:
                if t.index not in tally.closed:
                    tally.expected[t.index] = n
                    progress.frames(0, n)

    def on_frames(index: int, new: int, total: int) -> None:
        with lock:
            if index not in tally.closed:
                tally.reported[index] = tally.reported.get(index, 0) + new
                progress.frames(new, 0)

    def close(result: TaskResult) -> None:
        with lock:
            tally.closed.add(result.index)
            seen = tally.reported.get(result.index, 0)
            actual = result.frames if result.status is Status.DONE else seen
            progress.frames(actual - seen, actual - tally.expected.get(result.index, 0))

    previous = _install_stop_signals(stop, progress, report)
    threading.Thread(target=probe, name="pyfaceau-probe", daemon=True).start()
    model_error: str | None = None
    try:
        if scheduler is None:
            from .local import run_local

            results = run_local(tasks, jobs, on_frames=on_frames, stop=stop)
        else:
            from .cluster import run_dask

            results = run_dask(tasks, scheduler, on_frames=on_frames, stop=stop)
        for result in results:
            close(result)
            row = rows[result.index]
            row.status, row.seconds, row.error = result.status, result.seconds, result.error
            if result.status is Status.DONE:
                row.frames, row.faces = result.frames, result.faces
                if result.warning:
                    row.error = f"warning: {result.warning}"
            write_summary(summary, rows)
            with lock:
                progress.finished(row)
            if result.model_error and model_error is None:
                model_error = result.error
                stop.set()  # every other input would fail the same way
    finally:
        stop.set()
        _restore_stop_signals(previous)
        write_summary(summary, rows)
    if model_error is not None:
        raise ModelFileError(model_error)
    report.interrupted = any(r.status in (Status.PENDING, Status.INTERRUPTED) for r in rows)
    return report


def _check_output_names(found: Sequence[BatchInput], out_root: Path, side: SideOutputs) -> None:
    """Refuse, before any work, a batch where one input's output would replace an input
    (``-o`` the input folder with ``--tracked``: ``clip_tracked.avi`` may be an input) or
    another input's output or the summary (an input ``pyfaceau-batch.avi``; ``--split``'s
    ``m_face0.csv`` and an input ``m_face0.avi``)."""
    from ..output.table import is_split_csv_of

    owner: dict[Path, str] = {out_root / SUMMARY_NAME: "the batch summary"}
    split_bases: list[tuple[Path, BatchInput]] = []
    for item in found:
        csv = out_root / item.relative
        outputs = [csv, *side.paths(csv).values()]
        for path in outputs:
            if path in owner:
                raise InputError(
                    f"{path}: would be written as {owner[path]} and as an output of "
                    f"{item.path}; rename the input or choose another output folder (-o)")
            owner[path] = f"an output of {item.path}"
        if side.split:
            split_bases.append((csv, item))
    inputs = {os.path.abspath(item.path): item for item in found}
    for path, what in owner.items():
        if os.path.abspath(path) in inputs:
            raise InputError(f"{path}: an input, which {what} would replace; choose another "
                             "output folder (-o)")
    for csv, item in split_bases:
        for path, what in owner.items():
            if is_split_csv_of(csv, path):
                raise InputError(f"{path}: would be written as {what} and as a per-person CSV "
                                 f"of {item.path} (--split); rename the input")


def _plan(
    found: list[BatchInput], out_root: Path, options: Options, force: bool, side: SideOutputs
) -> tuple[list[SummaryRow], list[BatchTask]]:
    """Summary rows for every input (up-to-date ones skipped) and the tasks to run."""
    rows: list[SummaryRow] = []
    tasks: list[BatchTask] = []
    for index, item in enumerate(found):
        output = out_root / item.relative
        row = SummaryRow(str(item.path), str(output))
        rows.append(row)
        remove_temps(stale_temp_files(output))  # left by a killed run, even if now skipped
        record = None
        if not force:
            try:
                record = read_valid_record(
                    output, input_signature=input_signature(item.path), options=options,
                    side=side,
                )
            except OSError:
                record = None  # unreadable input: the worker reports why
        if record is not None:
            row.status, row.frames, row.faces = Status.SKIPPED, record.get("frames"), record.get("faces")
            continue
        tasks.append(BatchTask(index, str(item.path), str(output), options, side))
    return rows, tasks


#: The signals that stop a batch cleanly: Ctrl-C, and SIGTERM (``kill``, a scheduler's or
#: service manager's stop); the workers, in a process group of their own, leave them to
#: the parent (``batch.local``).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _install_stop_signals(stop: threading.Event, progress: BatchProgress,
                          report: "BatchReport") -> dict[int, object] | None:
    """The first Ctrl-C or SIGTERM: stop cleanly (``stop`` set, ``report.stopped_by``);
    a second one: KeyboardInterrupt (Ctrl-C) or :class:`~pyfaceau.output.atomic.Terminated`."""
    if threading.current_thread() is not threading.main_thread():
        return None
    from ..output.atomic import Terminated

    def handler(signum: int, frame: object) -> None:
        if stop.is_set() and report.stopped_by is not None:
            raise KeyboardInterrupt if signum == signal.SIGINT else Terminated(f"signal {signum}")
        report.stopped_by = signum
        stop.set()
        progress.stopping()

    return {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}


def _restore_stop_signals(previous: dict[int, object] | None) -> None:
    for signum, handler in (previous or {}).items():
        signal.signal(signum, handler)  # type: ignore[arg-type]
