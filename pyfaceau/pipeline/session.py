"""One input (a video, an image folder, an image or a stream) and its face tracks.

:class:`InputSession` is created by :class:`~pyfaceau.pipeline.pipeline.Pipeline` for every
input and never reused: it owns the input's face tracks (their tracker state and AU
state) and runs the frames through them, overlapping the stages of consecutive frames on
threads when asked to. :func:`process` and :func:`make_front_end` are the earlier API, kept
as deprecated shims.
"""

from __future__ import annotations

import dataclasses

import os
import queue
import threading
import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from ..blas import single_threaded_blas
from ..errors import InputError
from ..options import ModelsArg
from ..output.atomic import check_output_path
from ..output.table import FrameTable
from ..pdm import fittable
from ..validation import require_index
from .backend import AUBackend, Camera, FrameResult
from .faces import FaceDetector, MultiFaceTracker
from .sources import Frame
from .track import FaceTrack
from .types import LandmarkFrontEnd, LandmarkResult

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "InputSession",
    "has_eye_models",
    "make_front_end",
    "process",
    "single_threaded_blas",
]

#: Frames decoded ahead of the landmark stage, and frames waiting for the back end, when
#: the stages run on their own threads (bounded, so memory does not grow with the video).
DECODE_AHEAD = 4
BACKEND_BEHIND = 4

#: A live stream that skipped more than this many seconds (of its own clock) since the
#: last frame measured has its faces detected again instead of tracked across the gap: a
#: track carried over a head movement can settle on a wrong optimum that the validator
#: still accepts (``docs/speed.md``, "Live streams that skip frames") ...
REDETECT_AFTER_GAP_SECONDS = 0.15
#: ... at most once per this many seconds, so that a detection's own cost (which makes the
#: next gap) cannot turn every frame into a detection.
REDETECT_AFTER_GAP_AT_MOST_EVERY = 2.0

ProgressCallback = Callable[[int, int], None]
ResultCallback = Callable[[Frame, FrameResult], None]


class InputSession:
    """The state of one input: its face tracks, in ``face_id`` order.

    Parameters
    ----------
    kind : ``"video"``, ``"sequence"``, ``"image"`` (a still: every face, each fitted on
        its own, as OpenFace's FaceLandmarkImg) or ``"stream"``.
    width, height : frame size in pixels (the default camera).
    new_tracker : makes a fresh landmark tracker (state of one face) around shared models.
    backend : the loaded AU back end (dynamic or static models).
    batched : defer the AU models of re-predicted frames to the end (whole-input runs
        only: their per-frame results then carry NaN online AUs).
    record : keep rows for the table (False for live streams).
    camera : intrinsics; default OpenFace's guess from the frame size.
    on_result : called with each frame and each of its per-face results, in frame order,
        e.g. :meth:`pyfaceau.output.FrameWriters.add`; the results then carry the aligned
        face and its HOG descriptor.
    max_faces : faces tracked at once in a video, sequence or stream; above 1 the faces
        are followed by a :class:`~pyfaceau.pipeline.faces.MultiFaceTracker` and
        ``new_tracker`` is called with ``detector=`` (the per-face view of ``detector``).
    detector : the full-image face detector shared by the faces (``max_faces`` > 1).
    """

    def __init__(
        self,
        kind: str,
        width: int,
        height: int,
        *,
        new_tracker: Callable[[], LandmarkFrontEnd],
        backend: AUBackend,
        batched: bool = False,
        record: bool = True,
        camera: Camera | None = None,
        on_result: ResultCallback | None = None,
        max_faces: int = 1,
        detector: FaceDetector | None = None,
    ) -> None:
        if kind not in ("video", "sequence", "image", "stream"):
            raise InputError(f"unknown input kind {kind!r}")
        self.kind = kind
        self.width = require_index(width, "width", minimum=1)
        self.height = require_index(height, "height", minimum=1)
        self.camera = camera
        self.backend = backend
        self._new_tracker = new_tracker
        self._batched = batched
        self._record = record
        self._on_result = on_result
        self.tracks: list[FaceTrack] = []
        self._finished = False
        self._last_seen: tuple[int, float] | None = None  # (index, timestamp) of a stream
        self._last_gap_redetection = float("-inf")
        self._faces: MultiFaceTracker | None = None
        if kind != "image" and max_faces > 1:
            if detector is None:
                raise InputError("max_faces > 1 needs the face detector")
            self._faces = MultiFaceTracker(
                max_faces,
                detector,
                new_tracker=lambda view: new_tracker(detector=view),  # type: ignore[call-arg]
                new_track=self._append_track,
                pdm=backend.pdm,
                triangulation=backend.triangulation,
            )
        elif kind != "image":
            self.tracks.append(self._new_track(new_tracker()))

    def _append_track(self, tracker: LandmarkFrontEnd) -> FaceTrack:
        track = self._new_track(tracker)
        self.tracks.append(track)
        return track

    def _new_track(self, tracker: LandmarkFrontEnd) -> FaceTrack:
        face_id = len(self.tracks)
        au = self.backend.new_session(
            self.width,
            self.height,
            camera=self.camera,
            batched=self._batched,
            face_id=face_id,
            record=self._record,
            eye_columns=has_eye_models(tracker),
            keep_aligned=self._on_result is not None,
        )
        return FaceTrack(face_id, tracker, au)

    # -- per frame -------------------------------------------------------------------------
    def add(self, frame: Frame) -> list[FrameResult]:
        """Process one frame: one result per face track, in ``face_id`` order."""
        if self._finished:
            raise RuntimeError("this input session is finished; a new input needs a new one")
        if self.kind == "image":
            results = self._add_still(frame)
        else:
            if self.kind == "stream":
                self._redetect_after_gap(frame)
            results = [track.measure(frame, lm) for track, lm in self._landmarks(frame)]
        if self._on_result is not None:
            for result in results:
                self._on_result(frame, result)
            if not results:  # nobody yet (several faces): the frame still counts
                self._on_result(frame, None)
        return results

    def _redetect_after_gap(self, frame: Frame) -> None:
        """Faces detected again in a stream frame that follows skipped frames spanning more
        than :data:`REDETECT_AFTER_GAP_SECONDS` (at most once per
        :data:`REDETECT_AFTER_GAP_AT_MOST_EVERY` seconds); each track keeps its person and
        normalisation, only its landmark tracking starts again."""
        last, self._last_seen = self._last_seen, (frame.index, frame.timestamp)
        if last is None or frame.index <= last[0] + 1:
            return
        if frame.timestamp - last[1] <= REDETECT_AFTER_GAP_SECONDS:
            return
        if frame.timestamp - self._last_gap_redetection < REDETECT_AFTER_GAP_AT_MOST_EVERY:
            return
        self._last_gap_redetection = frame.timestamp
        for track in self.tracks:
            reset = getattr(track.tracker, "reset", None)
            if callable(reset):
                reset()

    def _landmarks(
        self, frame: Frame, upcoming: Frame | None = None
    ) -> list[tuple[FaceTrack, LandmarkResult]]:
        """Every face track's landmarks in ``frame``, in ``face_id`` order (``upcoming``:
        the next frame, when already read; see :meth:`FaceTrack.landmarks`)."""
        if self._faces is None:
            return [(track, track.landmarks(frame, upcoming)) for track in self.tracks]
        if not frame.decoded:  # an image of a folder that could not be decoded
            return [(track, LandmarkResult.failed()) for track in self.tracks]
        return self._faces.step(frame.index, frame.image)

    def _add_still(self, frame: Frame) -> list[FrameResult]:
        """Every face of a still, each fitted on its own (FaceLandmarkImg); one failed row
        when there is none or the tracker cannot detect every face."""
        tracker = self._new_tracker()
        detect_all = getattr(tracker, "detect_all", None)
        if callable(detect_all):
            # every detected face measured, as FaceLandmarkImg does whatever its validator
            # said (AUs, gaze); no face: one failed row
            # (a face whose fit was dropped has no landmarks to measure: the fast path's)
            faces: list[LandmarkResult] = [
                dataclasses.replace(face, measure_anyway=bool(fittable(face.landmarks)))
                for face in detect_all(frame.image)
            ] or [LandmarkResult.failed()]
        else:
            faces = [tracker.track(frame.image)]
        results = []
        for landmarks in faces:
            track = self._new_track(tracker)
            self.tracks.append(track)
            results.append(track.measure(frame, landmarks))
        return results

    def run(
        self,
        frames: Iterable[Frame],
        *,
        threads: int = 1,
        on_frame: ProgressCallback | None = None,
        total: int = 0,
    ) -> int:
        """Process every frame of ``frames``; returns how many were processed.

        With ``threads > 1`` decoding, landmark tracking and the back end of consecutive
        frames overlap on three threads (bounded queues, frame order kept: the results are
        those of ``threads=1``).
        """
        if threads <= 1 or self.kind == "image":
            done = 0
            for frame in frames:
                self.add(frame)
                done += 1
                if on_frame is not None:
                    on_frame(done, total)
            return done
        return self._run_overlapped(frames, on_frame, total)

    def _run_overlapped(
        self, frames: Iterable[Frame], on_frame: ProgressCallback | None, total: int
    ) -> int:
        decoded: queue.Queue = queue.Queue(maxsize=DECODE_AHEAD)
        stop = threading.Event()
        end = object()

        def decode() -> None:
            try:
                for frame in frames:
                    while not stop.is_set():
                        try:
                            decoded.put(frame, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                item: object = end
            except BaseException as exc:  # handed to the consumer, raised there
                item = exc
            while not stop.is_set():
                try:
                    decoded.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        reader = threading.Thread(target=decode, name="pyfaceau-decode", daemon=True)
        reader.start()
        done = 0
        pending: deque[tuple[Frame, list[Future]]] = deque()

        def settle(item: tuple[Frame, list[Future]]) -> None:
            nonlocal done
            frame, futures = item
            for future in futures:
                result = future.result()
                if self._on_result is not None:
                    self._on_result(frame, result)
            if not futures and self._on_result is not None:  # nobody yet (several faces)
                self._on_result(frame, None)
            done += 1
            if on_frame is not None:
                on_frame(done, total)

        # One face of a file: the next frame is taken from the queue before this one is
        # tracked, so that its fit may start while this one is validated (a live stream
        # would wait a frame for it: not there).
        read_ahead = self._faces is None and self.kind != "stream"
        try:
            with ThreadPoolExecutor(1, thread_name_prefix="pyfaceau-backend") as back:
                item = decoded.get()
                while True:
                    if item is end:
                        break
                    if isinstance(item, BaseException):
                        raise item
                    frame: Frame = item  # type: ignore[assignment]
                    item = decoded.get() if read_ahead else None
                    upcoming = item if isinstance(item, Frame) else None
                    futures = []
                    for track, landmarks in self._landmarks(frame, upcoming):
                        futures.append(back.submit(track.measure, frame, landmarks))
                    pending.append((frame, futures))
                    while pending and (
                        len(pending) > BACKEND_BEHIND or all(f.done() for f in pending[0][1])
                    ):
                        settle(pending.popleft())
                    if not read_ahead:
                        item = decoded.get()
                while pending:
                    settle(pending.popleft())
        finally:
            stop.set()
            for _, futures in pending:
                for future in futures:
                    future.cancel()
            reader.join(timeout=5)
        return done

    # -- end -------------------------------------------------------------------------------
    def finish_table(self) -> "pd.DataFrame | FrameTable":
        """:meth:`finish`, as the track's :class:`~pyfaceau.output.table.FrameTable` when
        the input has one track (no pandas, no copy), else the DataFrame (always with
        several faces: each person's rows are cut after their last appearance)."""
        if len(self.tracks) == 1 and self._faces is None:
            self._finished = True
            self.tracks[0].end_of_input()
            return self.tracks[0].au.finish_table()
        return self.finish()

    def finish(self) -> pd.DataFrame:
        """The input's table: every track's rows after OpenFace's offline
        post-processing, sorted by frame, then ``face_id``."""
        import pandas as pd  # here: a single track's CSV path does not need it

        self._finished = True
        for track in self.tracks:
            track.end_of_input()
        tables = [track.finish() for track in self.tracks]
        if self._faces is not None:
            # each person's rows run from its first to its last appearance
            tables = [_until_last_success(t) for t in tables]
            if not tables:  # nobody found: the header, in the layout of this front end
                eyes = has_eye_models(self._new_tracker())
                return self.backend.new_session(self.width, self.height,
                                                eye_columns=eyes).finish()
        if len(tables) == 1:
            return tables[0]
        df = pd.concat(tables, ignore_index=True)
        return df.sort_values(["frame", "face_id"], kind="stable").reset_index(drop=True)


def _until_last_success(df: pd.DataFrame) -> pd.DataFrame:
    """The rows up to the last successful one (after the offline post-processing, so the
    values are those of a run over every frame)."""
    ok = df["success"].to_numpy() > 0
    if not ok.any():
        return df.iloc[:0]
    return df.iloc[: int(ok.nonzero()[0][-1]) + 1]


# -- the earlier API ---------------------------------------------------------------------------
def make_front_end(
    mode: str,
    models: ModelsArg = None,
    *,
    landmarks_csv: str | os.PathLike | None = None,
    refine: bool | str = "clnf",
) -> LandmarkFrontEnd:
    """Deprecated: use :class:`pyfaceau.Pipeline` with :class:`pyfaceau.Options`.

    A landmark front end: ``"faithful"``, ``"fast"`` (``refine``: ``"clnf"``, True for
    SVR, False for none) or ``"csv"`` (``landmarks_csv``).
    """
    warnings.warn(
        "make_front_end is deprecated; use pyfaceau.Pipeline(pyfaceau.Options.faithful() / "
        ".fast(refinement=...) / .openface_csv(path))",
        DeprecationWarning,
        stacklevel=2,
    )
    from ..options import Options
    from .models import Models

    if mode == "csv":
        if landmarks_csv is None:
            raise InputError("mode 'csv' needs a landmark CSV")
        options = Options.openface_csv(landmarks_csv, models=models)
    elif mode == "fast":
        if refine not in ("clnf", True, False):
            raise InputError(f"refine: expected 'clnf', True or False, got {refine!r}")
        refinement = {"clnf": "clnf", True: "svr", False: "none"}[refine]  # type: ignore[index]
        options = Options.fast(refinement, models=models)
    elif mode == "faithful":
        options = Options.faithful(models=models)
    else:
        raise InputError(f"unknown mode '{mode}' (faithful, fast or csv)")
    return Models(options).new_front_end()


def has_eye_models(front_end: object) -> bool:
    """Whether ``front_end`` fits OpenFace's eye models (its ``has_eye_models``
    attribute), so that its table always has the gaze and eye-landmark columns."""
    return bool(getattr(front_end, "has_eye_models", False))


def process(
    input_path: str | os.PathLike,
    front_end: LandmarkFrontEnd,
    *,
    output_csv: str | os.PathLike | None = None,
    models: ModelsArg = None,
    dynamic: bool | None = None,
    backend: AUBackend | None = None,
    on_frame: ProgressCallback | None = None,
) -> pd.DataFrame:
    """Deprecated: use :meth:`pyfaceau.Pipeline.process`.

    Measure AUs on every frame of ``input_path`` with a given front end (reset first) and
    back end (default: loaded from ``models``; dynamic models except for a single image).
    """
    warnings.warn(
        "pyfaceau.process is deprecated; use pyfaceau.Pipeline(options).process(input)",
        DeprecationWarning,
        stacklevel=2,
    )
    from ..output.table import write_csv
    from .sources import open_source

    if output_csv is not None:  # before the work, not after
        check_output_path(output_csv, [input_path, getattr(front_end, "csv_path", None)])
    source = open_source(input_path)
    if backend is None:
        use_dynamic = dynamic if dynamic is not None else source.kind != "image"
        backend = AUBackend(models, dynamic=use_dynamic)
    front_end.reset()
    session = InputSession(
        source.kind,
        source.width,
        source.height,
        new_tracker=lambda: front_end,
        backend=backend,
        batched=True,
    )
    with single_threaded_blas():
        session.run(source, on_frame=on_frame, total=len(source))
    df = session.finish()
    if output_csv is not None:
        write_csv(df, output_csv)
    return df
