"""Live sources: a camera, a network stream, or a video file played as if it were live.

A live source does not wait for the consumer: a reader thread takes frames as the source
delivers them (for a file, at its frame rate by the wall clock) and keeps only the newest
one. A consumer slower than the source gets the newest frame each time and the frames in
between are skipped and counted, so the results keep up with the source instead of
falling behind it, and memory stays flat.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..errors import InputError
from ..opencv_io import opencv_log_quiet, opencv_path
from .sources import Frame, to_bgr8

__all__ = ["LiveSource", "open_live"]


class LiveSource:
    """Frames of a live source, newest first; see the module docstring.

    Parameters
    ----------
    capture : an opened ``cv2.VideoCapture``.
    name : for messages.
    paced : deliver at ``fps`` by the wall clock (a file played as if live); a camera or
        network stream is paced by itself.
    fps : frames per second of the source (0: unknown, timestamps from the clock).

    Attributes
    ----------
    skipped : frames the source delivered that the consumer never got.
    delivered : frames the source delivered.
    """

    def __init__(self, capture: cv2.VideoCapture, name: str, *, paced: bool, fps: float) -> None:
        self._capture = capture
        self.name = name
        self.paced = paced
        self.fps = float(fps)
        self.skipped = 0
        self.delivered = 0
        self._latest: Frame | None = None
        self._ended = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="pyfaceau-live", daemon=True)
        self._thread.start()
        _OPEN.add(self)

    def _read(self) -> None:
        start = time.monotonic()
        index = 0
        try:
            while not self._stop.is_set():
                if self.paced and self.fps > 0:
                    delay = start + index / self.fps - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                ok, image = self._capture.read()
                if not ok or image is None:
                    break
                timestamp = index / self.fps if self.fps > 0 else time.monotonic() - start
                frame = Frame(index, timestamp, to_bgr8(image))
                with self._cond:
                    if self._latest is not None:
                        self.skipped += 1
                    self._latest = frame
                    self.delivered += 1
                    self._cond.notify()
                index += 1
        except BaseException as exc:  # raised in the consumer
            self._error = exc
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify()
            if self._stop.is_set():  # closed while reading: close() left it to us
                self._capture.release()

    def __iter__(self) -> Iterator[Frame]:
        try:
            while True:
                with self._cond:
                    while self._latest is None and not self._ended:
                        self._cond.wait()
                    if self._error is not None:
                        raise InputError(f"{self.name}: reading failed ({self._error})")
                    if self._latest is None:
                        return
                    frame, self._latest = self._latest, None
                yield frame
        finally:
            self.close()

    def close(self) -> None:
        """Stop reading and release the source (its reader releases it, should it still
        be inside a read that does not return: a stalled network stream)."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        if not self._thread.is_alive():  # never while the reader is inside read()
            self._capture.release()


#: Sources not closed yet: stopped at exit, before the interpreter tears down the reader
#: threads (one inside OpenCV's read aborted the process: "exception not rethrown").
_OPEN: "weakref.WeakSet[LiveSource]" = weakref.WeakSet()


@atexit.register
def _close_open_sources() -> None:
    for source in list(_OPEN):
        source.close()


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


#: The largest camera index taken (OpenCV's binding takes a C int; Linux numbers video
#: devices far below this).
MAX_CAMERA_INDEX = 9999


def open_live(source: str | int | os.PathLike) -> LiveSource:
    """Open a camera (an index such as ``0``), a stream URL (``rtsp://``, ``http://`` ...)
    or a video file (played at its frame rate, as if live).

    Raises
    ------
    InputError
        If the source cannot be opened or gives no frame.
    """
    if isinstance(source, bool) or not isinstance(source, (str, os.PathLike, int, np.integer)):
        raise InputError(f"{source!r}: a live source is a camera index (0, 1, ...), a "
                         "stream URL or a video file")
    text = os.fspath(source) if isinstance(source, os.PathLike) else source
    if isinstance(text, str) and text.isascii() and text.isdigit():  # "0", not "²" or "٣"
        text = int(text)
    if isinstance(text, (int, np.integer)) and not 0 <= text <= MAX_CAMERA_INDEX:
        # OpenCV takes -1 as "any camera" and crashes on it with some of its backends;
        # its binding takes a C int
        raise InputError(f"camera {int(text)}: a camera index is 0 to {MAX_CAMERA_INDEX}")
    if isinstance(text, (int, np.integer)):
        with opencv_log_quiet(stderr=False):  # a camera can take seconds to open
            capture = cv2.VideoCapture(int(text))
        name, paced = f"camera {int(text)}", False
    elif isinstance(text, str) and "://" in text:
        if not _utf8(text):  # OpenCV's binding would crash on it
            raise InputError(f"{text!r}: a stream URL must be valid UTF-8")
        with opencv_log_quiet(stderr=False):  # a network stream too
            capture = cv2.VideoCapture(text)
        name, paced = text, False
    else:
        if not text:
            raise InputError("the source is empty: give a camera index, a stream URL or a "
                             "video file")
        path = Path(text)
        if path.is_dir():
            raise InputError(f"{path}: a folder; a live source is a camera index, a stream "
                             "URL or a video file ('pyfaceau process' reads image folders)")
        if not path.is_file():
            raise InputError(f"{path}: no such video file (or a camera index / stream URL)")
        # any file name (the alias may go once the file is open: FFmpeg holds it)
        with opencv_path(path) as alias:
            capture = cv2.VideoCapture(alias)
        name, paced = str(path), True
    if not capture.isOpened():
        capture.release()
        raise InputError(f"{name}: cannot be opened as a live source")
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    if paced and fps <= 0:
        fps = 30.0
    return LiveSource(capture, name, paced=paced, fps=fps)
