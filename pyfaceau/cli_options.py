"""The command-line options shared by ``pyfaceau INPUT`` and ``pyfaceau batch``, and the
one-line error exit of every command."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NoReturn

import click

if TYPE_CHECKING:
    from .options import Options

__all__ = ["EXIT_SIGINT", "EXIT_SIGTERM", "MODELS_HELP", "fail", "options_from_flags",
           "pipeline_options"]

#: Exit codes of a command stopped by Ctrl-C (130) or SIGTERM (143): 128 + the signal's
#: number, as a shell reports a process ended by that signal.
EXIT_SIGINT = 130
EXIT_SIGTERM = 143

MODELS_HELP = (
    "Folder(s) with the model files, separated by the OS path separator; searched before "
    "$PYFACEAU_MODELS and the user data folder."
)


def fail(exc: BaseException) -> NoReturn:
    """Print ``pyfaceau: error: EXC`` on stderr and exit with status 2."""
    click.echo(f"pyfaceau: error: {exc}", err=True)
    sys.exit(2)


def pipeline_options(command: Callable) -> Callable:
    """Add the options that decide what is computed (shared by ``process`` and ``batch``);
    :func:`options_from_flags` turns them into an :class:`~pyfaceau.options.Options`."""
    flags = [
        click.option("--fast", is_flag=True,
                     help="Fast path: RetinaFace + PFLD, refined by tracking with OpenFace's CLNF."),
        click.option("--no-refine", is_flag=True,
                     help="With --fast: PFLD landmarks without refinement."),
        click.option("--refine", "refine_mode", type=click.Choice(["clnf", "clnf-parts", "svr"]),
                     default=None,
                     help="With --fast: clnf = track all 68 landmarks with OpenFace's CLNF "
                          "(default; AUs close to OpenFace's); clnf-parts = the same with "
                          "OpenFace's part models (gaze and eye landmarks, OpenFace's 714 "
                          "columns; slower); svr = targeted SVR refinement of 9 landmarks "
                          "(faster, far less accurate)."),
        click.option("--landmarks-csv", type=click.Path(path_type=Path), default=None,
                     help="Take landmarks and success from an OpenFace CSV instead of "
                          "detecting them."),
        click.option("--static", "static_models", is_flag=True,
                     help="Static AU models only (no person normalisation), as OpenFace uses "
                          "for images; the default for a single image."),
        click.option("--threads", type=click.IntRange(min=1), default=None,
                     help="Cores to use on each input (default: every core this process may "
                          "use; in a batch, the cores shared among the --jobs). The output is "
                          "the same for any number."),
        click.option("--max-faces", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Faces measured per video frame, each a person with its own "
                          "face_id, person normalisation and post-processing (1: the widest "
                          "face, as OpenFace's FeatureExtraction)."),
        click.option("--models", "models", default=None, help=MODELS_HELP),
    ]
    for flag in reversed(flags):
        command = flag(command)
    return command


def options_from_flags(
    fast: bool,
    no_refine: bool,
    refine_mode: str | None,
    landmarks_csv: Path | None,
    static_models: bool,
    threads: int | None,
    models: str | None,
    max_faces: int = 1,
) -> "Options":
    """The :class:`~pyfaceau.options.Options` of the flags added by
    :func:`pipeline_options`; ``click.UsageError`` for flags that do not go together."""
    from .options import Options

    if no_refine and not fast:
        raise click.UsageError("--no-refine goes with --fast")
    if refine_mode is not None and not fast:
        raise click.UsageError("--refine goes with --fast")
    if refine_mode is not None and no_refine:
        raise click.UsageError("--refine and --no-refine exclude each other")
    if landmarks_csv is not None and fast:
        raise click.UsageError("--landmarks-csv and --fast exclude each other")
    common = dict(models=models, threads=threads, au_models="static" if static_models else "auto",
                  max_faces=max_faces)
    if landmarks_csv is not None:
        return Options.openface_csv(landmarks_csv, **common)
    if fast:
        return Options.fast("none" if no_refine else (refine_mode or "clnf"), **common)
    return Options.faithful(**common)
