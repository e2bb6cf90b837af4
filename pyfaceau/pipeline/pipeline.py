"""The pipeline: :class:`~pyfaceau.options.Options` plus the models it loads, run over inputs.

>>> import pyfaceau
>>> with pyfaceau.Pipeline(pyfaceau.Options.fast()) as pipe:        # doctest: +SKIP
...     df = pipe.process("video.mp4", output_csv="video.csv")
...     for result in pipe.stream("other.mp4"):
...         print(result.frame, result.aus()["AU12_r"])
"""

from __future__ import annotations

import contextlib
import logging
import os
import weakref
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np

from ..errors import ClosedError, IncompleteInputWarning, InputError
from ..options import Options
from ..validation import require_index, require_number
from .backend import Camera, FrameResult
from .live import LiveSource, open_live
from ..output.table import FrameTable
from .models import INPUT_KINDS, Models
from .session import InputSession, ProgressCallback, ResultCallback, single_threaded_blas
from . import sources
from .sources import Frame, open_source, to_bgr8

if TYPE_CHECKING:
    from ..output.writers import FrameWriters
    import pandas as pd

__all__ = ["LiveResults", "Pipeline", "StreamSession", "side_writers"]

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _cut_inputs_raise(strict: bool) -> Iterator[None]:
    """With ``strict`` (``Options.strict``), an input cut short raises its
    :class:`IncompleteInputWarning` before anything is written; otherwise the caller's
    warning filters are left alone."""
    if not strict:
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error", IncompleteInputWarning)
        yield


class Pipeline:
    """Measure OpenFace's Action Units on inputs, with the models loaded once.

    Parameters
    ----------
    options : what to compute (default: ``Options()``, the OpenFace-faithful path).
    **changes : fields of :class:`~pyfaceau.options.Options` to change, e.g.
        ``Pipeline(threads=1)`` or ``Pipeline(Options.fast(), max_faces=1)``.

    Notes
    -----
    One pipeline serves any number of inputs, one after the other or from several threads
    at once: every input gets its own :class:`InputSession` (face tracks, running medians,
    rows), and the loaded models are shared read-only. Use it as a context manager or call
    :meth:`close` to release the models.
    """

    def __init__(self, options: Options | None = None, /, **changes: object) -> None:
        if options is None and isinstance(changes.get("options"), Options):
            options = changes.pop("options")  # Pipeline(options=Options.fast())
        options = options if options is not None else Options()
        if not isinstance(options, Options):
            raise InputError(f"options: expected pyfaceau.Options, got {type(options).__name__}")
        self.options = options.replace(**changes) if changes else options
        self._models: Models | None = Models(self.options)
        self._live: weakref.WeakSet[LiveSource] = weakref.WeakSet()  # stopped by close()

    @classmethod
    def with_models(cls, models: Models) -> "Pipeline":
        """A pipeline around already loaded (or pre-seeded) :class:`Models`."""
        pipe = cls(models.options)
        pipe._models = models
        return pipe

    # -- lifetime --------------------------------------------------------------------------
    @property
    def models(self) -> Models:
        """The loaded models (shared by every input)."""
        if self._models is None:
            raise ClosedError("this pipeline is closed: make a new one")
        return self._models

    def load(self, kind: str | None = None) -> "Pipeline":
        """Load every model now instead of on the first input (a missing or damaged file
        fails here). ``kind``: only the AU models that inputs of this kind use
        (``"video"``, ``"sequence"``, ``"image"``, ``"stream"``); None: every kind's."""
        if kind is not None and kind not in INPUT_KINDS:
            raise InputError(f"kind: expected one of {', '.join(INPUT_KINDS)}, got {kind!r}")
        self.models.load(INPUT_KINDS if kind is None else (kind,))
        return self

    def close(self) -> None:
        """Release the models and their threads, and stop its live sources; the pipeline
        cannot be used afterwards."""
        for source in list(self._live):
            source.close()
        if self._models is not None:
            self._models.close()
        self._models = None

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sessions --------------------------------------------------------------------------
    def session(
        self,
        kind: str,
        width: int,
        height: int,
        *,
        camera: Camera | None = None,
        batched: bool = False,
        record: bool = True,
        on_result: ResultCallback | None = None,
    ) -> InputSession:
        """A new session for one input of ``kind`` (``"video"``, ``"sequence"``,
        ``"image"``, ``"stream"``) and frame size; see :class:`InputSession`."""
        models = self.models
        return InputSession(
            kind,
            width,
            height,
            new_tracker=models.new_front_end,
            backend=models.backend(self.options.dynamic_for(kind)),
            batched=batched,
            record=record,
            camera=camera,
            on_result=on_result,
            max_faces=self.options.max_faces,
            detector=models.detector() if self.options.max_faces > 1 else None,
        )

    # -- whole inputs ----------------------------------------------------------------------
    def process(
        self,
        input_path: str | os.PathLike,
        output_csv: str | os.PathLike | None = None,
        *,
        on_frame: ProgressCallback | None = None,
        on_result: ResultCallback | None = None,
        as_dataframe: bool = True,
    ) -> pd.DataFrame | FrameTable:
        """Measure AUs on every frame of a video, an image folder or an image.

        Parameters
        ----------
        input_path : a video file, a folder of images (a sequence) or an image (every
            face, static AU models unless ``Options.au_models`` says otherwise).
        output_csv : also write the table there, as OpenFace's CSV (atomically).
        on_frame : called after each frame with (frames done, frames announced).
        on_result : called with each frame and each of its per-face results (aligned face
            and HOG included), e.g. :meth:`pyfaceau.output.FrameWriters.add`; with
            ``(frame, None)`` for a frame without any face (``max_faces`` > 1, before
            anybody is found). Its ``au_intensity`` and ``au_presence`` are NaN: a whole
            input's AUs are predicted at its end, after the person normalisation has seen
            every frame (the returned table has them).
        as_dataframe : False returns the :class:`~pyfaceau.output.table.FrameTable`
            instead (no pandas, no copy of the table: what the CLI uses for long videos)
            when the input has one face; with several faces (``max_faces`` > 1, a still's
            every face) the DataFrame all the same.

        Returns
        -------
        pandas.DataFrame with OpenFace's columns, one row per face per frame, after
        OpenFace's offline post-processing.
        """
        from ..output.atomic import check_output_path
        from ..output.table import write_csv

        for name, callback in (("on_frame", on_frame), ("on_result", on_result)):
            if callback is not None and not callable(callback):
                raise InputError(f"{name}: expected a function, got {type(callback).__name__}")
        input_path = sources.input_path(input_path)
        if output_csv is not None:  # before the work, not after
            if isinstance(output_csv, bytes):
                output_csv = os.fsdecode(output_csv)
            if not isinstance(output_csv, (str, os.PathLike)) or not os.fspath(output_csv):
                raise InputError(f"output_csv: expected a file path, got {output_csv!r}")
            check_output_path(output_csv, [input_path, self.options.landmarks_csv])
        source = open_source(input_path)
        session = self.session(
            source.kind, source.width, source.height, batched=True, on_result=on_result
        )
        with single_threaded_blas(), _cut_inputs_raise(self.options.strict):
            session.run(source, threads=self.options.cores, on_frame=on_frame, total=len(source))
            # the offline re-prediction's products too: the same bits whatever the
            # caller's BLAS threads
            table = session.finish_table()
        if output_csv is not None:  # block by block from the table: no copy of it
            write_csv(table, Path(output_csv))
        if not as_dataframe and isinstance(table, FrameTable):
            return table
        return table if not isinstance(table, FrameTable) else table.to_dataframe()

    # -- streams ---------------------------------------------------------------------------
    def live(self, source: str | int | os.PathLike) -> "LiveResults":
        """Per-frame results of a live source: a camera index, a stream URL, or a video
        file played at its frame rate as if live. Frames that arrive while one is being
        processed are skipped (counted in ``.source.skipped``), so the results keep up
        with the source; memory stays flat. Iterate the results, or call their
        ``close()`` (a closed pipeline stops them too)."""
        self.models  # noqa: B018 - a closed pipeline fails before the source opens
        live = open_live(source)
        self._live.add(live)
        return LiveResults(self, live)

    def open_stream(self, width: int | None = None, height: int | None = None) -> "StreamSession":
        """A live stream fed frame by frame (:meth:`StreamSession.add`); online AU values,
        nothing kept per frame. ``width`` and ``height`` (pixels, both or neither) set
        the frame size up front; otherwise the first frame gives it."""
        self.models  # noqa: B018 - a closed pipeline fails here, not at the first frame
        if (width is None) != (height is None):
            raise InputError("open_stream: give width and height together, or neither")
        if width is not None:
            width = require_index(width, "width", minimum=1)
            height = require_index(height, "height", minimum=1)
        return StreamSession(self, width, height)

    def stream(
        self, source: str | os.PathLike | Iterable[np.ndarray]
    ) -> Iterator[FrameResult]:
        """Per-frame results (online AU values) of a video file, an image folder or an
        iterable of BGR images (or of :class:`~pyfaceau.pipeline.sources.Frame` objects,
        whose index and timestamp are kept; an undecodable image of a folder is a failed
        frame, as in :meth:`process`), as they are computed; memory stays flat. A still
        image is a one-frame stream: the faces ``max_faces`` allows (one: the widest) and
        the dynamic AU models, where :meth:`process` measures its every face with the
        static ones, as OpenFace's ``FaceLandmarkImg``."""
        if isinstance(source, (str, bytes, os.PathLike)):
            frames: Iterable = open_source(os.fsdecode(source))
        elif isinstance(source, np.ndarray) or not isinstance(source, Iterable):
            raise InputError(
                f"stream: expected a video file, an image folder or an iterable of images, "
                f"got {type(source).__name__} (one image: open_stream().add(image))")
        else:
            frames = source
        return self._stream(frames)

    def _stream(self, frames: Iterable) -> Iterator[FrameResult]:
        stream = self.open_stream()
        for item in frames:
            if isinstance(item, Frame):
                yield from stream.add(item.image, item.timestamp, frame_index=item.index,
                                      decoded=item.decoded)
            else:
                yield from stream.add(item)


class LiveResults:
    """The per-frame results of a live source (:meth:`Pipeline.live`), as they come.

    Iterate it for :class:`FrameResult` objects; ``source.skipped`` counts the frames the
    source delivered while the previous one was being processed (skipped to keep up).
    """

    def __init__(self, pipeline: Pipeline, source: LiveSource) -> None:
        self.source = source
        self._pipeline = pipeline
        # dropped without being iterated (or closed): the source stops, a camera is freed
        weakref.finalize(self, source.close)

    def __iter__(self) -> Iterator[FrameResult]:
        try:
            stream = self._pipeline.open_stream()
            for frame in self.source:
                yield from stream.add(frame.image, frame.timestamp, frame_index=frame.index)
        finally:
            self.source.close()

    def close(self) -> None:
        """Stop the source."""
        self.source.close()


class StreamSession:
    """A live stream: frames given one by one, per-frame results with OpenFace's online
    AU values (no offline post-processing, which needs the whole video).

    Use :meth:`Pipeline.open_stream`. A change of frame size starts a new session (new
    tracks, new person normalisation) with a warning.
    """

    def __init__(self, pipeline: Pipeline, width: int | None, height: int | None) -> None:
        self._pipeline = pipeline
        self._session: InputSession | None = None
        self._size: tuple[int, int] | None = None
        self._next_index = 0
        if width is not None and height is not None:
            self._start(int(width), int(height))

    def reset(self) -> None:
        """Start a new stream: new tracks, new person normalisation."""
        self._session, self._size, self._next_index = None, None, 0

    def _start(self, width: int, height: int) -> None:
        self._session = self._pipeline.session("stream", width, height, record=False)
        self._size = (width, height)

    def add(
        self,
        image: np.ndarray,
        timestamp: float | None = None,
        frame_index: int | None = None,
        *,
        decoded: bool = True,
    ) -> list[FrameResult]:
        """Process the next frame (``(H, W, 3)`` uint8 BGR; grey, BGRA and 16-bit images
        are converted); one result per tracked face.

        ``timestamp`` in seconds (default 0); ``frame_index`` the 0-based frame number
        (default: one more than the last; results carry ``frame = frame_index + 1``);
        ``decoded`` False: a frame that could not be decoded (a failed frame, not
        tracked). A frame refused (a bad image or timestamp) changes nothing.
        """
        if self._pipeline._models is None:
            raise ClosedError("this stream's pipeline is closed")
        index = self._next_index if frame_index is None else require_index(frame_index, "frame_index")
        timestamp = require_number(timestamp, "timestamp", allow_none=True)
        img = to_bgr8(image, "image")
        size = (img.shape[1], img.shape[0])
        if self._session is None or self._size != size:
            if self._session is not None:
                log.warning(
                    "frame size changed from %s to %s: a new stream starts", self._size, size
                )
            self._start(*size)
        assert self._session is not None
        frame = Frame(index, float(timestamp or 0.0), img, decoded=bool(decoded))
        self._next_index = index + 1
        with single_threaded_blas():
            return self._session.add(frame)


def side_writers(
    input_path: str | os.PathLike,
    aligned_dir: str | os.PathLike | None = None,
    hog_path: str | os.PathLike | None = None,
    tracked_path: str | os.PathLike | None = None,
) -> "FrameWriters | None":
    """The outputs beside the CSV for one input (OpenFace's ``-simalign``, ``-hogalign``,
    ``-tracked``), set up for it (the tracked video at the input's frame rate, 30 when it
    has none; aligned faces named as for a sequence or a still), or None when none is
    asked for. Pass its ``add`` as :meth:`Pipeline.process`'s ``on_result``, then call
    its ``finish`` with the run's table when the run is complete (``close`` otherwise).
    """
    if aligned_dir is None and hog_path is None and tracked_path is None:
        return None
    from ..output.writers import FrameWriters

    source = open_source(input_path)
    return FrameWriters(aligned_dir, hog_path, tracked_path,
                        fps=source.fps or 30.0, sequence=source.kind != "image")
