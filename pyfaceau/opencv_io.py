"""OpenCV's file access from Python, whatever bytes a file's name holds, and its log
kept quiet while files are opened."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

__all__ = ["opencv_log_quiet", "opencv_path", "stderr_kept", "write_image"]

# FFmpeg's own log lines ("[wmv2 @ 0x...] ac-tex damaged") would go to stderr beside
# pyfaceau's one-line warning that says what they mean for the output; OpenCV reads this
# when its FFmpeg backend first opens a file. A value set by the user wins.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


@contextmanager
def opencv_log_quiet(stderr: bool = True) -> Iterator[None]:
    """OpenCV's own messages off while a video, camera or URL is opened: the back ends it
    tries and gives up on, and its AVI parser on a damaged file (``Unexpected element.
    Expected: LIST``, raw bytes at times), lines that would precede pyfaceau's one-line
    error. The parser writes to the standard error stream directly, past OpenCV's log
    level, so with ``stderr`` file descriptor 2 points to the null device meanwhile: what
    another thread writes there then is lost too, so keep it for opening a file (a few
    milliseconds), not a camera or a network stream, which can take seconds."""
    log = cv2.utils.logging
    level = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_SILENT)
    try:
        with _stderr_to_null() if stderr else contextlib.nullcontext():
            yield
    finally:
        log.setLogLevel(level)


#: Held while file descriptor 2 points to the null device (one redirection at a time,
#: whatever the thread) and while child processes start (they would inherit it).
_STDERR_LOCK = threading.RLock()


@contextmanager
def stderr_kept() -> Iterator[None]:
    """No redirection of the standard error stream within the block: start child
    processes here (a worker started while it pointed to the null device would keep
    it for its whole life)."""
    with _STDERR_LOCK:
        yield


@contextmanager
def _stderr_to_null() -> Iterator[None]:
    with _STDERR_LOCK:
        try:
            sys.stderr.flush()  # what Python wrote before still goes out
        except (AttributeError, OSError, ValueError):
            pass
        try:
            saved = os.dup(2)
        except OSError:  # no standard error stream: nothing to silence
            yield
            return
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, 2)
            finally:
                os.close(null)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@contextmanager
def opencv_path(path: str | os.PathLike) -> Iterator[str]:
    """A name under which OpenCV can open ``path``, whatever bytes its name holds.

    OpenCV's Python binding converts a path to UTF-8; a name that is not valid UTF-8 (on
    Linux any byte but ``/`` and NUL is legal, e.g. ``caf\\xe9.avi`` from a Latin-1
    system) arrives in Python with surrogate escapes, and passing that to
    ``cv2.VideoCapture`` (or ``cv2.VideoWriter``) crashes the process. Such a file is
    opened through a symbolic link with an ASCII name in a private temporary folder,
    removed on exit (a file to be written need not exist yet: opening the link creates
    it).
    """
    name = os.fsdecode(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        yield name
        return
    folder = tempfile.mkdtemp(prefix="pyfaceau-")
    suffix = Path(name).suffix
    alias = os.path.join(folder, "file" + (suffix if suffix.isascii() else ""))
    try:
        os.symlink(os.path.abspath(name), alias)
        yield alias
    finally:
        if os.path.lexists(alias):
            os.unlink(alias)
        os.rmdir(folder)


def write_image(path: str | os.PathLike, image: np.ndarray) -> bool:
    """Write ``image`` to ``path`` in the format its extension names, as ``cv2.imwrite``
    does, for any file name (encoded by OpenCV, written by Python: see
    :func:`opencv_path`). Returns False when OpenCV cannot encode it; raises OSError
    when the file cannot be written."""
    ok, data = cv2.imencode(Path(os.fsdecode(path)).suffix or ".png", image)
    if not ok:
        return False
    with open(path, "wb") as f:
        f.write(data.tobytes())
    return True
