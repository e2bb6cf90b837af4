"""The outputs beside the CSV, attached to a run: aligned faces, HOG file, tracked video.

:class:`FrameWriters` takes each frame and its per-face result as the pipeline produces
them (``pyfaceau.Pipeline(options).process(path, on_result=writers.add)``) and feeds the
writers that were asked for. It reads the result's attributes only (``frame``,
``face_id``, ``success``, ``confidence``, ``landmarks``, ``pose``, ``aligned_face``,
``hog``, ``eye_landmarks``, ``eye_landmarks_3d``, ``gaze``), so any per-face result with
those fields fits.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .closing import ClosingWriter
from .aligned import AlignedFaceWriter
from .hog import HogWriter
from .table import row_keys
from .tracked import DEFAULT_FPS, TrackedFace, TrackedVideoWriter

if TYPE_CHECKING:
    from .table import TableLike

__all__ = ["FrameWriters"]


class FrameWriters(ClosingWriter):
    """The requested side outputs of one input.

    Parameters
    ----------
    aligned_dir : folder for the aligned faces (OpenFace's ``-simalign``), or None.
    hog_path : the ``.hog`` file (``-hogalign``), or None.
    tracked_path : the tracked video (``-tracked``), or None.
    fps : frame rate of the tracked video (the input's; 30 when 0).
    sequence : True for a video or image sequence, False for a still (aligned-face names).
    intrinsics : ``(fx, fy, cx, cy)`` used for the pose; default OpenFace's guess for the
        frame size.

    Notes
    -----
    Frames come in the order processed; with several faces in a frame, call :meth:`add`
    once per face and the tracked frame is written when the next frame starts (or at
    :meth:`close`), with every face of the frame drawn.
    """

    def __init__(
        self,
        aligned_dir: str | os.PathLike[str] | None = None,
        hog_path: str | os.PathLike[str] | None = None,
        tracked_path: str | os.PathLike[str] | None = None,
        *,
        fps: float = DEFAULT_FPS,
        sequence: bool = True,
        intrinsics: tuple[float, float, float, float] | None = None,
    ) -> None:
        self.aligned = (
            AlignedFaceWriter(aligned_dir, sequence=sequence) if aligned_dir is not None else None
        )
        self.hog = HogWriter(hog_path) if hog_path is not None else None
        self.tracked = (
            TrackedVideoWriter(tracked_path, fps, intrinsics=intrinsics)
            if tracked_path is not None
            else None
        )
        self._pending_image: np.ndarray | None = None
        self._pending_key: object = None
        self._pending_faces: list[TrackedFace] = []
        # each failed face's records (frame, face id, HOG record number, aligned-face
        # file): finish() drops those whose row the run's table does not keep
        self._failed: list[tuple[int, int, int | None, Path | None]] = []

    @property
    def active(self) -> bool:
        """Whether any output was asked for."""
        return any(w is not None for w in (self.aligned, self.hog, self.tracked))

    def add(self, frame: Any, result: Any) -> None:
        """Write one face of one frame.

        Parameters
        ----------
        frame : the frame (``index``, ``image``: ``(H, W, 3)`` uint8 BGR).
        result : its per-face result (:class:`pyfaceau.pipeline.backend.FrameResult`), or
            None for a frame without any face (the tracked video shows it undrawn).
        """
        if result is None:
            if self.tracked is not None and int(frame.index) != self._pending_key:
                self._flush()
                self._pending_key, self._pending_image = int(frame.index), frame.image
            return
        frame_number = int(result.frame)
        face_id = int(getattr(result, "face_id", 0))
        success = bool(result.success)
        record = self.hog.written if self.hog is not None else None
        image = None
        if self.aligned is not None:
            # a still's face the validator rejected is measured (FaceLandmarkImg writes its
            # aligned face); any other failed face is written black
            measured = success or getattr(result, "aligned_face", None) is not None
            image = self.aligned.add(frame_number, face_id, measured, result.aligned_face)
        if self.hog is not None:
            self.hog.add(frame_number, face_id, success, result.hog)
        if not success:
            self._failed.append((frame_number, face_id, record, image))
        if self.tracked is not None:
            key = int(frame.index)
            if key != self._pending_key:
                self._flush()
                self._pending_key, self._pending_image = key, frame.image
            if success:
                # Only tracked faces are drawn: a failed frame's pose is not kept.
                gaze = getattr(result, "gaze", None)
                self._pending_faces.append(
                    TrackedFace(
                        landmarks=result.landmarks,
                        pose=result.pose,
                        confidence=float(result.confidence),
                        face_id=face_id,
                        eye_landmarks=getattr(result, "eye_landmarks", None),
                        eye_landmarks_3d=getattr(result, "eye_landmarks_3d", None),
                        gaze=None if gaze is None else np.asarray(gaze)[:6].reshape(2, 3),
                    )
                )

    def _flush(self) -> None:
        if self.tracked is not None and self._pending_image is not None:
            self.tracked.add(self._pending_image, self._pending_faces)
        self._pending_image, self._pending_key, self._pending_faces = None, None, []

    def finish(self, table: "TableLike | None" = None) -> None:
        """Close every file after a complete run, without the aligned faces and HOG records
        of failed faces whose rows ``table`` (the run's table) does not keep: with several
        faces each person's rows end at their last appearance
        (:meth:`pyfaceau.pipeline.session.InputSession.finish`), so the files match the
        CSV row for row."""
        if table is not None and self._failed:
            kept = row_keys(table)
            dropped = [(record, image) for frame, face_id, record, image in self._failed
                       if (frame, face_id) not in kept]
            if self.hog is not None:
                self.hog.close_without(record for record, _ in dropped if record is not None)
            if self.aligned is not None:
                for _, image in dropped:
                    if image is not None:
                        image.unlink(missing_ok=True)
                        self.aligned.written -= 1
        self._failed = []
        self.close()

    def close(self) -> None:
        """Write what is pending and close every file (idempotent)."""
        self._flush()
        for writer in (self.aligned, self.hog, self.tracked):
            if writer is not None:
                writer.close()

