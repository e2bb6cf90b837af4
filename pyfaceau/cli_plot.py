"""``pyfaceau plot OUT.csv -o FILE.png|FILE.html``: AUs over time, pose and gaze below."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .errors import PyFaceAUError

__all__ = ["plot_cmd"]


@click.command("plot")
@click.argument("csv", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Picture to write: .png (matplotlib) or .html (interactive, one "
                   "self-contained file). Default: CSV's name with .png.")
@click.option("--title", default=None, help="Title above the plots (default: the CSV's name).")
def plot_cmd(csv: Path, output: Path | None, title: str | None) -> None:
    """Plot each AU's intensity over time (presence shaded), head pose and gaze.

    Needs the optional extra: pip install 'pyfaceau[plot]'.
    """
    from .output.plot import plot_csv

    out = output if output is not None else csv.with_suffix(".png")
    try:
        written = plot_csv(csv, out, title)
    except PyFaceAUError as exc:
        click.echo(f"pyfaceau: error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:
        click.echo(f"pyfaceau: error: {exc.filename or out}: {exc.strerror or exc}", err=True)
        sys.exit(2)
    click.echo(str(written))
