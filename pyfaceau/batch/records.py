"""What a batch remembers: a record beside each finished output, and the run summary.

The **record** (``OUT.csv.pyfaceau.json``) is written after the CSV is in place. It holds
the input's size and modification time, the options that change the output, pyfaceau's
version, the CSV's own size and time, and the outputs written beside it
(:mod:`pyfaceau.batch.outputs`). A later run skips the input only if all of them still
match and those outputs still exist, so a CSV that was replaced, cut short, or made from
another input or with other options is made again.

The **summary** (``OUT_DIR/pyfaceau-batch.csv``) has one row per input of the run
(input, output, status, frames, faces, seconds, error) and is rewritten, atomically, each
time an input finishes.
"""

from __future__ import annotations

import csv
import dataclasses
import enum
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from .._version import __version__
from ..options import Options
from ..output.atomic import atomic_output
from .outputs import SideOutputs

__all__ = [
    "RECORD_SUFFIX",
    "SUMMARY_NAME",
    "SUMMARY_COLUMNS",
    "Status",
    "SummaryRow",
    "options_fingerprint",
    "record_path",
    "write_record",
    "read_valid_record",
    "write_summary",
    "atomic_write_text",
]

#: The record's name is the output's name plus this suffix.
RECORD_SUFFIX = ".pyfaceau.json"
#: The run summary's file name in the output folder.
SUMMARY_NAME = "pyfaceau-batch.csv"
SUMMARY_COLUMNS = ("input", "output", "status", "frames", "faces", "seconds", "error")

#: Options fields that do not change the output (and so do not force a re-run).
_NOT_IN_FINGERPRINT = ("threads", "models")


class Status(str, enum.Enum):
    """An input's state in the summary."""

    DONE = "done"  #: processed in this run
    SKIPPED = "skipped"  #: its output was complete and up to date
    FAILED = "failed"  #: an error; the ``error`` column says which
    INTERRUPTED = "interrupted"  #: stopped part-way (Ctrl-C); nothing written
    PENDING = "pending"  #: not started (the run was stopped first)


@dataclass
class SummaryRow:
    """One input's line in the summary (``frames``: frames read; ``faces``: face rows
    with ``success = 1``)."""

    input: str
    output: str
    status: Status = Status.PENDING
    frames: int | None = None
    faces: int | None = None
    seconds: float | None = None
    error: str = ""  #: why it failed; for a done input, "warning: ..." (part unreadable)

    def cells(self) -> list[str]:
        return [
            self.input,
            self.output,
            self.status.value,
            "" if self.frames is None else str(self.frames),
            "" if self.faces is None else str(self.faces),
            "" if self.seconds is None else f"{self.seconds:.2f}",
            self.error,
        ]


def options_fingerprint(options: Options) -> dict[str, Any]:
    """The options that decide the output, as plain JSON values (``threads`` and the model
    folders do not change it: the model files are checksum-verified)."""
    out: dict[str, Any] = {}
    for field in dataclasses.fields(options):
        if field.name in _NOT_IN_FINGERPRINT:
            continue
        value = getattr(options, field.name)
        if isinstance(value, enum.Enum):
            value = value.value
        elif isinstance(value, tuple):
            value = list(value)
        out[field.name] = value
    return out


def record_path(output: str | os.PathLike) -> Path:
    """Where the record of ``output`` lives."""
    out = Path(output)
    return out.with_name(out.name + RECORD_SUFFIX)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file renamed into place
    (:func:`~pyfaceau.output.atomic.atomic_output`)."""
    with atomic_output(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def write_record(
    output: str | os.PathLike,
    *,
    input_path: str | os.PathLike,
    input_signature: dict[str, int | str],
    options: Options,
    frames: int,
    faces: int,
    side: SideOutputs = SideOutputs(),
    side_files: Iterable[str | os.PathLike] = (),
) -> None:
    """Record, beside the finished ``output``, what made it (call after the CSV and the
    ``side`` outputs, ``side_files``, are in place)."""
    out = Path(output)
    st = out.stat()
    record = {
        "pyfaceau": __version__,
        "input": os.fspath(input_path),
        "input_signature": input_signature,
        "options": options_fingerprint(options),
        "side_outputs": side.fingerprint(),
        "side_files": sorted(Path(p).name for p in side_files),
        "output_size": st.st_size,
        "output_mtime_ns": st.st_mtime_ns,
        "frames": frames,
        "faces": faces,
    }
    atomic_write_text(record_path(out), json.dumps(record, indent=1) + "\n")


def read_valid_record(
    output: str | os.PathLike,
    *,
    input_signature: dict[str, int | str],
    options: Options,
    side: SideOutputs = SideOutputs(),
) -> dict[str, Any] | None:
    """The record of ``output`` if the output, and the ``side`` outputs it lists, are
    complete and up to date for this input and these options, else None."""
    out = Path(output)
    try:
        record = json.loads(record_path(out).read_text(encoding="utf-8"))
        st = out.stat()
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    expected = {
        "pyfaceau": __version__,
        "input_signature": input_signature,
        "options": options_fingerprint(options),
        "output_size": st.st_size,
        "output_mtime_ns": st.st_mtime_ns,
    }
    if any(record.get(key) != value for key, value in expected.items()):
        return None
    if record.get("side_outputs", []) != side.fingerprint():
        return None
    files = record.get("side_files", [])
    if not isinstance(files, list) or not all(out.with_name(str(f)).exists() for f in files):
        return None
    return record


def write_summary(path: Path, rows: Iterable[SummaryRow]) -> None:
    """Write the run summary atomically (a reader never sees half a file)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(SUMMARY_COLUMNS)
    writer.writerows(row.cells() for row in rows)
    atomic_write_text(path, buf.getvalue())
