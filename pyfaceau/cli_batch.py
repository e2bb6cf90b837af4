"""Command line: ``pyfaceau batch INPUT... --out-dir DIR`` (see :mod:`pyfaceau.batch`).

Exit status: 0 when every input has its output, 1 when an input failed (the summary
names it), 2 for bad arguments or model files, 130 when stopped with Ctrl-C, 143 with
SIGTERM (running inputs stop after their frame, as with Ctrl-C).
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .cli_options import EXIT_SIGINT, EXIT_SIGTERM, options_from_flags, pipeline_options
from .cli_options import fail as _fail
from .errors import PyFaceAUError
from .output.atomic import Terminated

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = ["batch_cmd"]

#: Failed inputs listed on the terminal (all of them are in the summary).
_SHOW_FAILED = 10


class _Bar:
    """One progress bar over the frames of every input, with the inputs finished."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: tqdm | None = None
        self.inputs = 0
        self.finished_count = 0
        self.failed = 0

    # BatchProgress hooks (duck-typed: the batch package is imported lazily)
    def start(self, inputs: int, skipped: int, jobs: int, threads: int) -> None:
        self.inputs = inputs
        if skipped:
            click.echo(f"{skipped} input(s) skipped: their output is complete and up to date",
                       err=True)
        if inputs:
            how = f"{jobs} worker(s) x {threads} thread(s)" if jobs else f"{threads} thread(s) per input"
            click.echo(f"processing {inputs} input(s) on {how}", err=True)
        if self.enabled and inputs:
            from tqdm import tqdm  # here: every command imports this module

            self.bar = tqdm(total=0, unit="frame", dynamic_ncols=True, file=sys.stderr,
                            desc=f"0/{inputs} inputs")

    def frames(self, new: int, total_change: int) -> None:
        if self.bar is None:
            return
        if total_change:
            self.bar.total = max(0, (self.bar.total or 0) + total_change)
            self.bar.refresh()
        if new:
            self.bar.update(new)

    def finished(self, row: Any) -> None:
        if row.status.value in ("pending", "interrupted"):  # stopped: not finished
            return
        self.finished_count += 1
        self.failed += row.status.value == "failed"
        if self.bar is not None:
            fail = f", {self.failed} failed" if self.failed else ""
            self.bar.set_description(f"{self.finished_count}/{self.inputs} inputs{fail}")

    def stopping(self) -> None:
        msg = "stopping: running inputs stop after their frame (Ctrl-C again to abort)"
        if self.bar is not None:
            self.bar.write(msg, file=sys.stderr)
        else:
            click.echo(msg, err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@click.command("batch")
@click.argument("inputs", metavar="INPUT...", nargs=-1, required=True)
@click.option("-o", "--out-dir", type=click.Path(path_type=Path), required=True,
              help="Folder for the CSVs; they mirror the inputs' paths below their common "
                   "folder. The run summary is DIR/pyfaceau-batch.csv.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Inputs processed at once, each in its own process (default: so that "
                   "jobs x threads = the cores).")
@click.option("--pattern", default=None,
              help="Glob choosing the files in folders, e.g. '*.mp4' (default: every video, "
                   "and every folder of images as one image sequence).")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Run on a Dask distributed cluster (tcp://HOST:PORT); inputs and DIR must "
                   "be on a filesystem the workers share.")
@click.option("--force", is_flag=True, help="Process every input, even up-to-date ones.")
@pipeline_options
@click.option("--aligned", is_flag=True,
              help="Also write each input's 112x112 aligned faces to OUT_aligned/ beside its "
                   "CSV (as 'pyfaceau INPUT --aligned DIR').")
@click.option("--hog", is_flag=True,
              help="Also write each input's HOG features to OUT.hog beside its CSV.")
@click.option("--tracked", is_flag=True,
              help="Also write each input's tracked video to OUT_tracked.avi beside its CSV.")
@click.option("--split", is_flag=True,
              help="Also write one CSV per person, OUT_face0.csv, OUT_face1.csv, ... (with "
                   "--max-faces), beside the CSV of all of them.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--strict", is_flag=True,
              help="An input part of which cannot be read (a truncated video, an undecodable "
                   "image of a folder) fails instead of being noted in the summary.")
def batch_cmd(
    inputs: tuple[str, ...],
    out_dir: Path,
    jobs: int | None,
    pattern: str | None,
    scheduler: str | None,
    force: bool,
    aligned: bool,
    hog: bool,
    tracked: bool,
    split: bool,
    no_progress: bool,
    strict: bool,
    **flags: Any,
) -> None:
    """Measure Action Units in many inputs: videos, image folders, folders searched
    recursively, and @LIST files (one path per line).

    Each output is what `pyfaceau INPUT -o OUT` writes. A second run skips the inputs
    whose output is complete and up to date; a failing input is recorded in the summary
    and the others go on.
    """
    if flags.get("landmarks_csv") is not None:
        _fail(click.UsageError("--landmarks-csv names one input's landmarks: use "
                               "'pyfaceau INPUT --landmarks-csv CSV' per input"))
    if scheduler is not None and jobs is not None:
        _fail(click.UsageError("--jobs is for this machine; on a cluster the Dask workers "
                               "decide (--scheduler)"))
    try:
        options = options_from_flags(**flags).replace(strict=strict)
    except (click.UsageError, PyFaceAUError) as exc:
        _fail(exc)
        return
    from .batch import SideOutputs, run_batch

    side = SideOutputs(aligned=aligned, hog=hog, tracked=tracked, split=split)
    bar = _Bar(enabled=not no_progress)
    try:
        report = run_batch(inputs, out_dir, options, jobs=jobs, pattern=pattern,
                           scheduler=scheduler, force=force, progress=bar,  # type: ignore[arg-type]
                           side=side)
    except PyFaceAUError as exc:
        bar.close()
        _fail(exc)
        return
    except (KeyboardInterrupt, Terminated) as exc:  # the second Ctrl-C or SIGTERM
        bar.close()
        click.echo("pyfaceau: aborted", err=True)
        sys.exit(EXIT_SIGINT if isinstance(exc, KeyboardInterrupt) else EXIT_SIGTERM)
    bar.close()
    c = report.counts
    parts = [f"done {c['done']}", f"skipped {c['skipped']}", f"failed {c['failed']}"]
    if report.interrupted:
        parts.append(f"not finished {c['interrupted'] + c['pending']}")
    click.echo(f"{', '.join(parts)}; summary: {report.summary}")
    for row in report.failed[:_SHOW_FAILED]:
        # errors usually start with the input's path already
        error = row.error if row.error.startswith(row.input) else f"{row.input}: {row.error}"
        click.echo(f"  failed: {error}", err=True)
    if len(report.failed) > _SHOW_FAILED:
        click.echo(f"  ... and {len(report.failed) - _SHOW_FAILED} more", err=True)
    noted = [r for r in report.rows if r.status.value == "done" and r.error]
    for row in noted[:_SHOW_FAILED]:
        note = row.error.removeprefix("warning: ")
        if not note.startswith(row.input):  # most notes name their input already
            note = f"{row.input}: {note}"
        click.echo(f"  warning: {note}", err=True)
    if len(noted) > _SHOW_FAILED:
        click.echo(f"  ... and {len(noted) - _SHOW_FAILED} more warnings", err=True)
    if report.interrupted:
        sys.exit(EXIT_SIGTERM if report.stopped_by == signal.SIGTERM else EXIT_SIGINT)
    if report.failed:
        sys.exit(1)


# The shared options include --landmarks-csv, one input's landmarks: batch refuses it (with
# a hint), so its help does not offer it.
for _param in batch_cmd.params:
    if _param.name == "landmarks_csv":
        _param.hidden = True
