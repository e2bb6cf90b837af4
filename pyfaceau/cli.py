"""Command line: ``pyfaceau INPUT -o OUT.csv`` and ``pyfaceau models ...``.

The only module that talks to the person: progress bars, a one-line summary, and one-line
errors (exit code 2 for bad input or model files).
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import signal
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import click

from ._version import __version__
from .cli_batch import batch_cmd
from .cli_options import (EXIT_SIGINT, EXIT_SIGTERM, MODELS_HELP, options_from_flags,
                          pipeline_options)
from .errors import PyFaceAUError
from .startup import pause_gc, resume_gc, save_kernels, start_process

__all__ = ["main", "run"]

#: Whether this process is the ``pyfaceau`` console command (:func:`run`), which owns it.
_console = False


class _DefaultToProcess(click.Group):
    """A group whose first argument, when it is not a sub-command, is an input to process."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] == "help":
            args = ["--help", *args[1:]]
        elif args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            if not os.path.lexists(args[0]) and not args[0].startswith("-"):
                # not a file: a mistyped command reads better as one than as a missing input
                import difflib

                close = difflib.get_close_matches(args[0], list(self.commands), n=1, cutoff=0.7)
                if close:
                    raise click.UsageError(f"no command or input {args[0]!r}; did you mean "
                                           f"'{close[0]}'?", ctx)
            args = ["process", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultToProcess, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pyfaceau")
def main() -> None:
    """OpenFace 2.2's facial Action Units in Python.

    \b
    pyfaceau VIDEO -o OUT.csv            OpenFace-faithful path (MTCNN + CLNF)
    pyfaceau VIDEO -o OUT.csv --fast     fast path (RetinaFace + PFLD + CLNF tracking)
    pyfaceau models download --accept-license
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")


def run() -> None:
    """The ``pyfaceau`` console command: :func:`main`, then leave without the
    interpreter's teardown.

    Tearing down a process that loaded numba's LLVM JIT, onnxruntime and the models takes
    about 0.4 s on this project's machine (``docs/speed.md``), after every output is already
    closed. The exit handlers still run (temporary folders, multiprocessing's clean-up);
    only the freeing of memory the system reclaims anyway is skipped.
    """
    global _console
    _console = True
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    except Exception as exc:  # a defect in a command without its own guard: one line
        logging.getLogger(__name__).debug("internal error", exc_info=True)
        click.echo(f"pyfaceau: error: internal error ({type(exc).__name__}: {exc}); "
                   "please report it", err=True)
        code = 1
    else:  # pragma: no cover  (click's standalone mode always exits)
        code = 0
    if code is not None and not isinstance(code, int):
        click.echo(code, err=True)  # sys.exit("message"), as the interpreter would print it
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:  # None: started with that stream closed (>&-)
                stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said
            pass
    os._exit(code or 0)


def _stdin_is_interactive() -> bool:
    return sys.stdin.isatty()


def _fail(exc: BaseException, code: int = 2) -> None:
    click.echo(f"pyfaceau: error: {exc}", err=True)
    sys.exit(code)


#: Exit code beyond click's: 3 = input incomplete under --strict (and Ctrl-C 130, SIGTERM
#: 143: ``cli_options``).
EXIT_INCOMPLETE = 3


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Library warnings as one line each on stderr (no source file, no code line), above
    an open progress bar."""
    from tqdm import tqdm

    tqdm.write(f"pyfaceau: warning: {message}", file=sys.stderr)


class _RunState:
    """What a guarded run has done: ``written`` once its outputs are in place."""

    written = False


@contextmanager
def _guarded_run(strict: bool) -> Iterator[_RunState]:
    """Run a command's work so that it ends with one line and a meaningful exit code:
    warnings as one line (errors under ``strict``), Ctrl-C 130, SIGTERM 143 (saying
    whether the outputs were written: the block sets ``written`` on the state it gets),
    an unexpected exception one line (exit 1). Temporary output files are removed by the
    ``finally`` blocks these exceptions unwind through."""
    from .errors import IncompleteInputWarning
    from .output.atomic import Terminated, stop_on_signals

    state = _RunState()
    with stop_on_signals(), warnings.catch_warnings():
        warnings.showwarning = _show_warning
        if strict:
            warnings.simplefilter("error", IncompleteInputWarning)
        try:
            yield state
        except IncompleteInputWarning as exc:  # the warning's words, then what --strict did
            _fail(PyFaceAUError(f"{exc} [--strict: stopped, nothing written]"), EXIT_INCOMPLETE)
        except PyFaceAUError as exc:
            _fail(exc)
        except (KeyboardInterrupt, Terminated) as exc:
            how = "interrupted" if isinstance(exc, KeyboardInterrupt) else "terminated"
            what = "the outputs were complete and are written" if state.written else "nothing written"
            click.echo(f"pyfaceau: {how}; {what}", err=True)
            sys.exit(EXIT_SIGINT if isinstance(exc, KeyboardInterrupt) else EXIT_SIGTERM)
        except OSError as exc:
            _fail(PyFaceAUError(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")))
        except MemoryError:
            _fail(PyFaceAUError("out of memory"), 1)
        except Exception as exc:  # a defect: one line, not a traceback
            logging.getLogger(__name__).debug("internal error", exc_info=True)
            _fail(PyFaceAUError(f"internal error ({type(exc).__name__}: {exc}); please report it"), 1)


def _gc_paused_until_loaded(command):  # noqa: ANN001, ANN202 - a click callback
    """In the console command (:func:`run`), run ``command`` with the garbage collector
    paused until it calls :func:`resume_gc` (once its models are loaded;
    pyfaceau/startup.py), and resumed however it ends. Called from Python (``main()``,
    click's test runner), the collector is left alone."""

    @functools.wraps(command)
    def paused(*args: Any, **kwargs: Any) -> Any:
        if _console:
            pause_gc()
        try:
            return command(*args, **kwargs)
        finally:
            resume_gc()

    return paused


@main.command("process")
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(allow_dash=True), default=None,
              help="CSV to write (default: INPUT's name with .csv, in the current folder; "
                   "- for standard output).")
@pipeline_options
@click.option("--split", is_flag=True,
              help="One CSV per person (OUT_face0.csv, OUT_face1.csv, ...; with --max-faces "
                   "several) instead of one.")
@click.option("--aligned", "aligned_dir", type=click.Path(path_type=Path), default=None,
              help="Also write the 112x112 aligned faces to this folder, named as OpenFace "
                   "names them (frame_det_00_000001.bmp, ...; OpenFace's -simalign).")
@click.option("--hog", "hog_path", type=click.Path(path_type=Path), default=None,
              help="Also write the HOG features of the aligned faces in OpenFace's binary "
                   ".hog format (OpenFace's -hogalign).")
@click.option("--tracked", "tracked_path", type=click.Path(path_type=Path), default=None,
              help="Also write the video with landmarks, head-pose box and gaze drawn as "
                   "OpenFace draws them (OpenFace's -tracked), with face ids.")
@click.option("--openface-img", "openface_img", is_flag=True,
              help="For a still image: write OpenFace FaceLandmarkImg's CSV layout (face, "
                   "confidence, then the video layout's columns from gaze_0_x; 711 columns "
                   "with the eye models: the faithful path or --refine clnf-parts) "
                   "instead of the video layout with face_id.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--strict", is_flag=True,
              help="Fail (exit 3) instead of warning when part of the input cannot be read "
                   "(a truncated video, an undecodable image of a folder).")
@_gc_paused_until_loaded
def process_cmd(
    input_path: Path,
    output: str | None,  # kept as typed: a trailing slash means a folder
    split: bool,
    openface_img: bool,
    aligned_dir: Path | None,
    hog_path: Path | None,
    tracked_path: Path | None,
    no_progress: bool,
    strict: bool,
    **flags: Any,
) -> None:
    """Measure Action Units in a video, an image folder or an image."""
    # the whole command under the guard: a stop at any moment is one line, 130 / 143
    with _guarded_run(strict) as run:
        _process(run, input_path, output, split, openface_img, aligned_dir, hog_path,
                 tracked_path, no_progress, strict, flags)


def _process(run: _RunState, input_path: Path, output: str | None, split: bool,
             openface_img: bool, aligned_dir: Path | None, hog_path: Path | None,
             tracked_path: Path | None, no_progress: bool, strict: bool,
             flags: dict[str, Any]) -> None:
    """``process``'s work, inside :func:`_guarded_run` (``run``: what it has written)."""
    start_process()  # here, not for every command: batch's parent runs no kernel
    try:
        options = options_from_flags(**flags)
    except (click.UsageError, PyFaceAUError) as exc:
        _fail(exc)
        return
    from .pipeline.sources import input_kind
    from .pipeline.sources import input_path as checked_input

    if openface_img:
        if input_kind(input_path) != "image":
            _fail(click.UsageError("--openface-img is for a still image (FaceLandmarkImg's layout)"))
        if split:
            _fail(click.UsageError("--openface-img and --split exclude each other"))
    try:
        checked_input(input_path)  # before the models load
    except PyFaceAUError as exc:
        _fail(exc)
    out = output if output is not None else _default_output(input_path)
    to_stdout = output == "-"  # the CSV to standard output, the summary to stderr
    if to_stdout and split:
        _fail(click.UsageError("--split writes a CSV per person: give -o a file name"))
    if to_stdout and sys.stdout is None:  # started with standard output closed (>&-)
        _fail(PyFaceAUError("-o -: standard output is closed"))
    kind = input_kind(input_path)
    # Fail before hours of processing, not after.
    from .output.atomic import (StagedOutputs, Terminated, check_output_folder,
                                check_output_path, remove_stale_temps, signals_deferred)

    try:
        inputs = [input_path, flags.get("landmarks_csv")]
        if not to_stdout:
            check_output_path(out, inputs)
        named = {"-o": None if to_stdout else out, "--hog": hog_path, "--tracked": tracked_path,
                 "--aligned": aligned_dir}
        seen: dict[str, str] = {}
        for flag, path in named.items():
            if path is not None:
                where = os.path.abspath(path)
                if where in seen:
                    raise PyFaceAUError(f"{flag} {path}: the same path as {seen[where]}")
                seen[where] = flag
        for side in (hog_path, tracked_path):
            if side is not None:  # not over an input
                check_output_path(side, inputs)
        if tracked_path is not None:
            _check_tracked_suffix(tracked_path, kind)
        if aligned_dir is not None:
            check_output_folder(aligned_dir, inputs)
        if split:
            from .output.table import is_split_csv_of

            for given in inputs:
                if given is not None and is_split_csv_of(out, given):
                    raise PyFaceAUError(f"{given}: an input named as a per-person CSV of -o "
                                        f"{out} (--split would replace it); choose another -o")
    except PyFaceAUError as exc:
        _fail(exc)
    from .pipeline.pipeline import Pipeline

    bar = None

    frames_done = 0

    def on_frame(done: int, total: int) -> None:
        nonlocal bar, frames_done
        frames_done = done
        if no_progress:
            return
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total or None, unit="frame", desc=input_path.name,
                       dynamic_ncols=True, file=sys.stderr)
        bar.update(1)

    t0 = time.perf_counter()
    from .pipeline.pipeline import side_writers

    # written beside their places, moved there once the run is complete (what a
    # killed run left there, untouched for 10 minutes, goes first: it may be large)
    csv_path = None if to_stdout else out
    for path in (csv_path, aligned_dir, hog_path, tracked_path):
        if path is not None:
            remove_stale_temps(path)
    # the CSV last: what a failure to move an output into place leaves is the old CSV
    staged = StagedOutputs([aligned_dir, hog_path, tracked_path, csv_path])
    try:
        writers = side_writers(input_path, staged.path(aligned_dir),
                               staged.path(hog_path), staged.path(tracked_path))
        try:
            with Pipeline(options) as pipe:
                pipe.load(kind)
                resume_gc()
                table = pipe.process(input_path, on_frame=on_frame, as_dataframe=False,
                                     on_result=writers.add if writers is not None else None)
            if writers is not None:  # their records follow the rows written
                from .output.table import face_landmark_img_rows

                writers.finish(face_landmark_img_rows(table) if openface_img else table)
        finally:
            if writers is not None:
                writers.close()
            if bar is not None:  # as far as it got, before a message on how it ended
                bar.close()
        written = [] if to_stdout else _stage_csvs(table, out, staged, split=split,
                                                   openface_img=openface_img)
        with signals_deferred() as stopped:  # a stop waits for the outputs, then ends it
            staged.commit()
            if to_stdout:
                _write_csv_to_stdout(table, openface_img)
            run.written = True
        stale: list[Path] = []
        if split:
            from .output.table import remove_stale_split_csvs

            stale = remove_stale_split_csvs(out, written)  # (no input: refused above)
        if stopped:
            raise KeyboardInterrupt if stopped[0] == signal.SIGINT else Terminated("stop")
    except PyFaceAUError as exc:  # the user's paths, not the temporary ones
        exc.args = (staged.unstaged(str(exc)),)
        raise
    finally:
        staged.discard()  # a run that did not finish: its outputs are not kept
    elapsed = time.perf_counter() - t0
    save_kernels()  # for the next start, when this one ran numba
    if stale:
        click.echo(f"removed {_count(len(stale), 'per-person CSV')} of an earlier run "
                   f"({', '.join(p.name for p in stale)}): not found this time", err=True)
    echo = functools.partial(click.echo, err=to_stdout)  # stdout may be the CSV itself
    n = len(table)
    names = "standard output" if to_stdout else ", ".join(str(p) for p in written)
    column = table.column if hasattr(table, "column") else (lambda c: table[c].to_numpy())
    ok = int(column("success").sum()) if n else 0
    if kind == "image":  # a still: every face, whatever --max-faces says
        from .output.table import face_landmark_img_rows

        faces = len(face_landmark_img_rows(table)) if n else 0  # not the no-face row
        doubtful = f" ({faces - ok} below the validator's confidence)" if ok < faces else ""
        echo(f"{names}: {_count(faces, 'face')} found{doubtful}, {elapsed:.1f} s")
        return
    if options.max_faces > 1:
        people = len(set(column("face_id").tolist())) if n else 0
        fps = frames_done / elapsed if elapsed > 0 else float("nan")
        if not written and not to_stdout:  # --split, and nobody to write a CSV for
            echo(f"{out}: nobody found in {_count(frames_done, 'frame')}; no CSV written")
            return
        echo(f"{names}: {_count(people, 'person', 'people')} in "
             f"{_count(frames_done, 'frame')}, {ok} faces found, {fps:.1f} frames/s")
        return
    fps = n / elapsed if elapsed > 0 else float("nan")
    echo(f"{names}: {_count(n, 'frame')}, face found in {ok}, {fps:.1f} frames/s")


def _default_output(input_path: Path) -> Path:
    """``INPUT``'s name with ``.csv``, in the current folder: a video's or image's stem, a
    folder's whole name (``.`` and ``..`` by the folder they stand for)."""
    resolved = Path(os.path.abspath(input_path))
    name = resolved.name if resolved.is_dir() else resolved.stem
    return Path((name or "pyfaceau") + ".csv")


def _csv_layout(table: Any, openface_img: bool) -> tuple[Any, dict[str, str] | None]:
    """The table as its CSV is written, and the printf formats to write it with: the
    video layout, or with ``--openface-img`` FaceLandmarkImg's."""
    from .output.table import FACE_LANDMARK_IMG_FORMATS, face_landmark_img_table

    if openface_img:
        return face_landmark_img_table(table), FACE_LANDMARK_IMG_FORMATS
    return table, None


def _write_csv_to_stdout(table: Any, openface_img: bool) -> None:
    """``-o -``: the CSV to standard output, as the file would hold it."""
    from .output.table import iter_csv_chunks

    rows, formats = _csv_layout(table, openface_img)
    out = sys.stdout.buffer
    try:
        for chunk in iter_csv_chunks(rows, formats=formats):
            out.write(chunk)
        out.flush()
    except BrokenPipeError:  # the reader went away (e.g. | head): as a Unix filter, quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nothing more is flushed into the pipe
        os.close(devnull)
    except OSError as exc:  # e.g. a full disk behind it
        raise PyFaceAUError(f"standard output: {exc.strerror or exc} (the CSV is incomplete; "
                            "the other outputs are in place)") from None


def _check_tracked_suffix(path: Path, kind: str) -> None:
    """``--tracked``'s extension, before the models load: a video container for a video
    or a folder (OpenCV writes anything else as garbage or not at all), an image or a
    video for a still."""
    from .output.tracked import TRACKED_PICTURE_SUFFIXES, TRACKED_VIDEO_SUFFIXES

    allowed = TRACKED_VIDEO_SUFFIXES + (TRACKED_PICTURE_SUFFIXES if kind == "image" else ())
    if path.suffix.lower() not in allowed:
        what = "a still's" if kind == "image" else "a video's"
        raise PyFaceAUError(f"--tracked {path}: {what} tracked output is written as "
                            f"{', '.join(allowed)}")


def _stage_csvs(table: Any, out: str | os.PathLike, staged: Any, *, split: bool,
                openface_img: bool) -> list[Path]:
    """Write the run's CSV (``--openface-img``: FaceLandmarkImg's layout) or, with
    ``--split``, its per-person CSVs, where ``staged`` (:class:`StagedOutputs`) keeps them
    until its commit; returns their final paths."""
    from .output.table import write_csv, write_split_csvs

    here = staged.path(out)
    if split:  # named as beside OUT, in its temporary folder
        finals = []
        for path in write_split_csvs(table, here.with_name(Path(out).name)):
            finals.append(Path(out).with_name(path.name))
            staged.add(finals[-1], path)
        return finals
    rows, formats = _csv_layout(table, openface_img)
    write_csv(rows, here, formats=formats)
    return [Path(out)]


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _result_json(result) -> str:
    """One frame's result as a JSON line (OpenFace's column names for AUs and pose)."""
    import json

    pose_names = ("Tx", "Ty", "Tz", "Rx", "Ry", "Rz")
    record = {
        "frame": result.frame,
        "timestamp": round(float(result.timestamp), 3),
        "face_id": result.face_id,
        "success": int(result.success),
        "confidence": round(float(result.confidence), 3),
        "pose": {f"pose_{n}": round(float(v), 4) for n, v in zip(pose_names, result.pose)},
        "gaze": None
        if result.gaze is None
        else {"gaze_angle_x": round(float(result.gaze[6]), 4),
              "gaze_angle_y": round(float(result.gaze[7]), 4)},
        "aus": {k: round(v, 3) for k, v in result.aus().items()},
    }
    return json.dumps(record, separators=(",", ":"))


@main.command("stream")
@click.argument("source", metavar="SOURCE")
@click.option("-o", "--output", default="-", show_default=True,
              help="File to write the JSON lines to; - is standard output.")
@click.option("--fast", is_flag=True, help="Fast path: RetinaFace + PFLD + CLNF tracking.")
@click.option("--max-faces", type=click.IntRange(min=1), default=1, show_default=True,
              help="Faces measured per frame, each a person with its own face_id and "
                   "person normalisation (1: the widest face).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Cores to use (default: every core this process may use).")
@click.option("--models", "models", default=None, help=MODELS_HELP)
@_gc_paused_until_loaded
def stream_cmd(source: str, output: str, fast: bool, max_faces: int, threads: int | None,
               models: str | None) -> None:
    """Per-frame AUs of a live SOURCE as JSON lines, written as each frame is done.

    SOURCE is a camera index (0), a stream URL, or a video file played at its frame rate
    as if live. Frames that arrive while one is being processed are skipped, so the
    output keeps up with the source; how many is said at the end.
    """
    start_process()
    from .options import Options
    from .output.atomic import Terminated, check_output_path, stop_on_signals
    from .pipeline.pipeline import Pipeline

    options = (Options.fast if fast else Options.faithful)(
        models=models, threads=threads, max_faces=max_faces
    )
    try:
        if output == "-":
            if sys.stdout is None:
                raise PyFaceAUError("standard output is closed; give -o FILE")
        else:  # before anything is opened: not the source itself, a folder or unwritable;
            # a FIFO or a device (a named pipe to another program) is written as it is
            check_output_path(output, [source], special_files=True)
    except PyFaceAUError as exc:
        _fail(exc)
    sink = None
    results = None
    count = 0
    try:
        with stop_on_signals(), Pipeline(options) as pipe:
            pipe.load("stream")
            resume_gc()
            results = pipe.live(source)
            # opened (an earlier file replaced) only once the models and the source work
            sink = sys.stdout if output == "-" else open(output, "w", encoding="utf-8")
            for result in results:
                sink.write(_result_json(result) + "\n")
                sink.flush()
                count += 1
    except PyFaceAUError as exc:
        _fail(exc)
    except (KeyboardInterrupt, Terminated) as exc:  # how a camera's stream ends
        _stream_summary(results, count)
        click.echo("pyfaceau: stopped" if isinstance(exc, KeyboardInterrupt)
                   else "pyfaceau: terminated", err=True)
        save_kernels()
        sys.exit(EXIT_SIGINT if isinstance(exc, KeyboardInterrupt) else EXIT_SIGTERM)
    except BrokenPipeError:  # the reader went away (e.g. | head)
        sys.stderr.close()
        sys.exit(0)
    except OSError as exc:
        _fail(PyFaceAUError(f"{exc.filename or output}: {exc.strerror or exc}"))
    finally:
        if results is not None:
            results.close()
        if sink is not None and sink is not sys.stdout:
            try:
                sink.close()
            except OSError:  # e.g. a full disk, reported above
                pass
    _stream_summary(results, count)
    save_kernels()  # for the next start, when this one ran numba


def _stream_summary(results, count: int) -> None:  # noqa: ANN001 - pipeline.LiveResults
    if results is not None:
        src = results.source
        click.echo(f"{src.name}: {count} results, {src.delivered} frames, "
                   f"{src.skipped} skipped to keep up", err=True)


@main.group("models")
def models_group() -> None:
    """Find, download or install the model files."""


@models_group.command("path")
@click.option("--models", "models", default=None, help=MODELS_HELP)
def models_path(models: str | None) -> None:
    """Print the folders searched for model files, in order; the last is the user data
    folder, where download and install put them ('models verify' checks the files)."""
    _list_search_dirs(models)


@models_group.command("verify")
@click.option("--models", "models", default=None, help=MODELS_HELP)
def models_verify(models: str | None) -> None:
    """Print the folders searched for model files and check every file (size and
    SHA-256); exit 1 when a file is missing or damaged."""
    from .modelstore import MANIFEST
    from .modelstore.store import check_store

    _list_search_dirs(models)
    status = check_store(models)
    n = len(MANIFEST)
    if status.missing:
        click.echo(f"missing: {len(status.missing)} of {n} files, e.g. {status.missing[0]}", err=True)
    for rel, why in list(status.damaged.items())[:10]:
        click.echo(f"damaged: {why}", err=True)
    if len(status.damaged) > 10:
        click.echo(f"damaged: ... and {len(status.damaged) - 10} more", err=True)
    if status.ok:
        click.echo(f"all {n} model files found and verified", err=True)
    else:
        click.echo("fix: 'pyfaceau models download --accept-license' or "
                   "'pyfaceau models install DIR'", err=True)
        sys.exit(1)


def _list_search_dirs(models: str | None) -> None:
    """The search folders on standard output, a note on standard error for each that is
    not a folder (a mistyped --models or PYFACEAU_MODELS finds nothing there)."""
    from .modelstore import search_dirs
    from .modelstore.store import default_data_dir

    for d in search_dirs(models):
        click.echo(str(d))
        if not d.is_dir() and d != default_data_dir():  # the data folder comes with a download
            click.echo(f"note: {d}: {'not a folder' if d.exists() else 'no such folder'}", err=True)


def _report(report, verb: str) -> None:
    click.echo(f"{verb} {len(report.added)}, already present {len(report.present)}, "
               f"failed {len(report.failed)}")
    absent = [rel for rel, why in report.failed.items() if why.startswith("not in ")]
    by_reason: dict[str, list[str]] = {}  # one line per reason (no connection: all files)
    for rel, why in report.failed.items():
        if not why.startswith("not in "):
            by_reason.setdefault(why, []).append(rel)
    for why, rels in list(by_reason.items())[:10]:
        which = rels[0] if len(rels) == 1 else f"{len(rels)} files, e.g. {rels[0]}"
        click.echo(f"  {which}: {why}", err=True)
    if len(by_reason) > 10:
        click.echo(f"  ... and {sum(map(len, list(by_reason.values())[10:]))} more", err=True)
    if absent:
        click.echo(f"  {len(absent)} files were not in the source folder, e.g. {absent[0]}", err=True)


@models_group.command("download")
@click.option("--accept-license", is_flag=True,
              help="Accept OpenFace's non-commercial model licence without asking.")
@click.option("--dest", type=click.Path(path_type=Path), default=None,
              help="Folder to put the files in (default: the user data folder).")
@click.option("--mirror", default=None,
              help="Base URL of a mirror with OpenFace's release layout (model/, AU_predictors/).")
def models_download(accept_license: bool, dest: Path | None, mirror: str | None) -> None:
    """Download OpenFace 2.2.0's model files (checksums verified)."""
    from .modelstore.download import OPENFACE_LICENSE_NOTICE, download_models
    from .modelstore.store import default_data_dir

    click.echo(OPENFACE_LICENSE_NOTICE)
    if not accept_license:
        if not _stdin_is_interactive():
            _fail(PyFaceAUError("licence not accepted: pass --accept-license"))
        answer = click.prompt("Type YES to accept the licence", default="", show_default=False)
        if answer.strip() != "YES":
            _fail(PyFaceAUError("licence not accepted; nothing downloaded"))
    target = dest or default_data_dir()
    from .modelstore import MANIFEST

    from tqdm import tqdm

    bars: list = []  # made at the first file: nothing drawn when the arguments fail

    def progress(entry: object) -> None:
        if not bars:
            bars.append(tqdm(total=len(MANIFEST), unit="file", desc="model files",
                             file=sys.stderr))
        bars[0].update(1)

    try:
        report = download_models(target, accept_license=True, mirror=mirror, progress=progress)
    except PyFaceAUError as exc:
        for bar in bars:
            bar.close()
        _fail(exc)
        return
    for bar in bars:
        bar.close()
    _report(report, f"into {target}: downloaded")
    onnx_missing = [r for r in report.failed if r.endswith(".onnx")]
    if onnx_missing:
        click.echo(
            "The fast path's networks could not be fetched: get pfld.onnx "
            "(cunjian/pytorch_face_landmark, onnx/pfld.onnx) and run 'pyfaceau models "
            "install DIR'; get mobilenet0.25_Final.pth (the RetinaFace weights, same "
            "repository, Retinaface/weights/) and run 'pyfaceau models convert-retinaface "
            "FILE'.",
            err=True,
        )
    if any(not r.endswith(".onnx") for r in report.failed):
        sys.exit(1)


@models_group.command("convert-retinaface")
@click.argument("pth", type=click.Path(path_type=Path))
@click.option("--dest", type=click.Path(path_type=Path), default=None,
              help="Folder to put the model in (default: the user data folder).")
def models_convert_retinaface(pth: Path, dest: Path | None) -> None:
    """Make the fast path's face detector from PTH, the public RetinaFace weights
    (mobilenet0.25_Final.pth), without PyTorch."""
    from .modelstore.retinaface_convert import convert_retinaface
    from .modelstore.store import default_data_dir

    target = (dest or default_data_dir()) / "retinaface_mobilenet025.onnx"
    try:
        convert_retinaface(pth, target)
    except PyFaceAUError as exc:
        _fail(exc)
        return
    click.echo(f"wrote {target} (its outputs checked against the reference export's)")


@models_group.command("install")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--dest", type=click.Path(path_type=Path), default=None,
              help="Folder to put the files in (default: the user data folder).")
def models_install(source: Path, dest: Path | None) -> None:
    """Verify and copy model files from a local folder SOURCE."""
    from .modelstore.download import install_models
    from .modelstore.store import default_data_dir

    target = dest or default_data_dir()
    try:
        report = install_models(source, target)
    except PyFaceAUError as exc:
        _fail(exc)
        return
    _report(report, f"into {target}: installed")
    from .modelstore import MANIFEST

    good = set(report.added) | set(report.present)
    missing = {group: [e.path for e in MANIFEST.values() if e.group == group and e.path not in good]
               for group in ("openface", "onnx")}
    ready = [name for name, needs in (("the faithful path", ["openface"]),
                                      ("the fast path", ["openface", "onnx"]))
             if not any(missing[g] for g in needs)]
    if ready:
        click.echo(f"{target} now holds every file of {' and of '.join(ready)}")
    for name, group in (("OpenFace's files", "openface"), ("the fast path's networks", "onnx")):
        if missing[group] and len(missing[group]) < sum(e.group == group for e in MANIFEST.values()):
            click.echo(f"  {name}: {len(missing[group])} still missing, e.g. {missing[group][0]}",
                       err=True)
    damaged = [rel for rel, why in report.failed.items() if not why.startswith("not in ")]
    if damaged or not good:
        # a damaged file in SOURCE, or nothing usable at all (a partial install is not an
        # error: the other files may be in another folder pyfaceau searches)
        sys.exit(1)


from .cli_plot import plot_cmd  # noqa: E402  (sub-commands in their own modules)

main.add_command(plot_cmd)
main.add_command(batch_cmd)


if __name__ == "__main__":
    run()
