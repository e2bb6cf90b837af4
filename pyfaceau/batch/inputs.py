"""Which inputs a batch processes, and where each one's CSV goes.

Rules (also in ``docs/batch.md``):

- A **file** named on the command line (or in a list) is an input, whatever its suffix:
  a video, or a single image (every face, static AU models, as ``pyfaceau IMAGE``).
- A **folder** is searched recursively. Without ``pattern``: every video file (by suffix,
  :data:`VIDEO_SUFFIXES`) is an input, and every folder that directly holds images
  (:data:`~pyfaceau.pipeline.sources.IMAGE_SUFFIXES`) and no video is one image-sequence
  input (as ``pyfaceau FOLDER``). With ``pattern`` (a glob such as ``"*.mp4"`` or
  ``"session*/*.avi"``): exactly the files whose path relative to the searched folder
  matches it, each one an input on its own. Hidden files and folders (``.name``), the
  output folder, and the outputs a batch wrote beside its CSVs (a tracked video, a
  folder of aligned faces: the ``side_files`` of the records in the same folder) are not
  searched.
- ``@list.txt``: a text file with one path per line (blank lines and lines starting with
  ``#`` ignored); relative paths are relative to the list file's folder; each entry is
  treated as if named on the command line.

Outputs mirror the inputs' paths below the **common root**: the deepest folder that
contains every argument (a folder argument counts as itself, unless it is an
image-sequence input itself, then as its parent; a file argument as its folder). An input
``ROOT/a/b/clip.avi`` writes ``OUT_DIR/a/b/clip.csv``, an image folder ``ROOT/a/seq/``
writes ``OUT_DIR/a/seq.csv``: two ``clip.avi`` in different folders never collide. When
two inputs of one folder share a stem (``clip.avi`` and ``clip.mp4``), each keeps its
suffix: ``clip.avi.csv``, ``clip.mp4.csv``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, Sequence

from ..errors import InputError
from ..output.table import split_csv_base
from ..pipeline.sources import IMAGE_SUFFIXES
from .outputs import SideOutputs
from .records import RECORD_SUFFIX, SUMMARY_NAME

__all__ = ["VIDEO_SUFFIXES", "BatchInput", "discover_inputs", "input_signature"]

#: File suffixes searched for as videos in a folder (any file named explicitly is tried).
VIDEO_SUFFIXES = (
    ".avi", ".mp4", ".m4v", ".mov", ".mkv", ".wmv", ".webm", ".mpg", ".mpeg", ".flv",
    ".3gp", ".ts", ".mts", ".m2ts", ".ogv", ".mxf",
)  # fmt: skip


@dataclass(frozen=True)
class BatchInput:
    """One input of a batch.

    Attributes
    ----------
    path : the input (a video, an image, or a folder of images), absolute.
    relative : its output path below the output folder (POSIX style, ``.csv`` suffix).
    """

    path: Path
    relative: str


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _holds_images_only(folder: Path) -> bool:
    """Whether ``folder`` directly holds image files and no video file."""
    has_image = False
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return False
    for entry in entries:
        if _is_hidden(entry.name) or not entry.is_file():
            continue
        suffix = os.path.splitext(entry.name)[1].lower()
        if suffix in VIDEO_SUFFIXES:
            return False
        if suffix in IMAGE_SUFFIXES:
            has_image = True
    return has_image


def _batch_outputs_in(folder: Path, filenames: Iterable[str]) -> set[str]:
    """Names in ``folder`` that a batch wrote (``filenames``: the folder's files as listed
    by the walk), never inputs, even when the output folder is the inputs' own and a
    ``pattern`` would match them: the summary, every record, and for each record's CSV the
    CSV itself, its per-person CSVs and the outputs beside it (those the record lists, and
    those named as a batch names them: a later run without ``--tracked`` still leaves
    the earlier run's tracked video there)."""
    names: set[str] = {SUMMARY_NAME}
    filenames = list(filenames)
    csvs = [f[: -len(RECORD_SUFFIX)] for f in filenames if f.endswith(RECORD_SUFFIX)]
    recorded = set(csvs)
    names.update(f for f in filenames  # the per-person CSVs (--split): STEM_faceN.csv
                 if split_csv_base(f) in recorded)
    for csv in csvs:
        record = csv + RECORD_SUFFIX
        names.update((record, csv))
        names.update(p.name for p in SideOutputs(True, True, True).paths(folder / csv).values())
        try:
            files = json.loads((folder / record).read_text(encoding="utf-8")).get("side_files", [])
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(files, list):
            names.update(str(f) for f in files)
    return names


def _walk(folder: Path, pattern: str | None, exclude: Path | None) -> list[Path]:
    """The inputs below ``folder`` (see the module's rules), sorted."""
    found: list[Path] = []
    if pattern is None and _holds_images_only(folder):
        found.append(folder)
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        outputs = _batch_outputs_in(here, filenames)
        dirnames[:] = sorted(
            d for d in dirnames
            if not _is_hidden(d) and d not in outputs and (exclude is None or here / d != exclude)
        )  # fmt: skip
        for d in dirnames if pattern is None else ():
            if _holds_images_only(here / d):
                found.append(here / d)
        for name in sorted(filenames):
            if _is_hidden(name) or name in outputs:
                continue
            path = here / name
            if pattern is None:
                if os.path.splitext(name)[1].lower() in VIDEO_SUFFIXES:
                    found.append(path)
            else:
                rel = PurePosixPath(path.relative_to(folder).as_posix())
                if fnmatch.fnmatch(name, pattern) or rel.match(pattern):
                    found.append(path)
    return sorted(found)


def _read_list(list_file: Path) -> list[Path]:
    try:
        text = list_file.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"@{list_file}: cannot be read ({exc.strerror or exc})") from None
    paths = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            p = Path(line).expanduser()
            paths.append(p if p.is_absolute() else list_file.parent / p)
    return paths


def _expand_lists(args: Iterable[str | os.PathLike]) -> list[Path]:
    out: list[Path] = []
    for arg in args:
        text = os.fspath(arg)
        if isinstance(arg, str) and text.startswith("@"):
            out.extend(_read_list(Path(text[1:]).expanduser()))
        else:
            out.append(Path(text).expanduser())
    return out


def discover_inputs(
    args: Sequence[str | os.PathLike],
    *,
    pattern: str | None = None,
    exclude: str | os.PathLike | None = None,
) -> list[BatchInput]:
    """The inputs named by ``args`` (files, folders, ``@list.txt``), each with its output
    path below the output folder.

    Parameters
    ----------
    args : files, folders and ``"@LIST"`` list files.
    pattern : a glob choosing the files in folders (default: videos and image folders).
    exclude : a folder not to search (the output folder).

    Returns
    -------
    list of :class:`BatchInput`, in the order found (each input once).

    Raises
    ------
    InputError
        If an argument does not exist, or nothing is found at all.
    """
    if not args:
        raise InputError("no inputs given: name videos, image folders, folders or @LIST files")
    skip = Path(os.path.abspath(exclude)) if exclude is not None else None
    inputs: list[Path] = []
    anchors: list[Path] = []  # what the common root must contain
    expanded = _expand_lists(args)
    if not expanded:  # only @LIST files, and they name nothing
        lists = ", ".join(os.fspath(a) for a in args)
        raise InputError(f"{lists}: names no input (only blank and # lines)")
    for raw in expanded:
        path = Path(os.path.abspath(raw))
        if not path.exists():
            raise InputError(f"{raw}: no such file or folder")
        if path.is_dir():
            found = _walk(path, pattern, skip)
            if not found:
                what = f"no file matching {pattern!r}" if pattern else "no video or image folder"
                raise InputError(f"{raw}: {what} in it")
            inputs.extend(found)
            anchors.append(path.parent if found[0] == path else path)
        else:
            inputs.append(path)
            anchors.append(path.parent)
    unique = list(dict.fromkeys(inputs))
    root = Path(os.path.commonpath([str(a) for a in anchors]))
    return _map_outputs(unique, root)


def _map_outputs(inputs: list[Path], root: Path) -> list[BatchInput]:
    """Output paths below the output folder: the input's path below ``root``, ``.csv``
    instead of its suffix (suffix kept when two inputs of a folder share a stem)."""
    rel = [p.relative_to(root) for p in inputs]
    stems = Counter((r.parent, r.stem if p.is_file() else r.name) for p, r in zip(inputs, rel))
    mapped = []
    for path, r in zip(inputs, rel):
        if path.is_dir():
            name = r.name
        else:
            name = r.name if stems[(r.parent, r.stem)] > 1 else r.stem
        mapped.append(BatchInput(path, (PurePosixPath(r.parent.as_posix()) / f"{name}.csv").as_posix()))
    return mapped


def input_signature(path: str | os.PathLike) -> dict[str, int | str]:
    """What identifies an input's content for resuming: size in bytes and modification
    time in ns; for an image folder, of its images (their total size, the latest time,
    their number, and a SHA-256 of every image's name, size and time in name order: a
    renamed, reordered or replaced image changes the frames).

    Raises
    ------
    OSError
        If the input cannot be read.
    """
    p = Path(path)
    if p.is_dir():
        listing = []
        for entry in os.scandir(p):
            if entry.is_file() and os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES:
                st = entry.stat()
                listing.append((os.fsencode(entry.name), st.st_size, st.st_mtime_ns))
        listing.sort()
        digest = hashlib.sha256()
        for name, size, mtime in listing:
            digest.update(name + b"\0" + f"{size} {mtime}\n".encode())
        return {"size": sum(e[1] for e in listing),
                "mtime_ns": max((e[2] for e in listing), default=0),
                "files": len(listing), "listing_sha256": digest.hexdigest()}
    st = p.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
