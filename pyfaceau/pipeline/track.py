"""One face followed through one input: its landmark tracker state and its AU state."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .backend import BackendSession, FrameResult
from .sources import Frame
from .types import LandmarkFrontEnd, LandmarkResult

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FaceTrack"]


class FaceTrack:
    """Everything that belongs to one face of one input, and nothing shared.

    Parameters
    ----------
    face_id : the face's id in the output (``face_id`` column), 0, 1, ... in order of
        first appearance.
    tracker : the landmark tracker's state for this face (a fresh front end around the
        pipeline's shared models); None while the face is lost (several faces: the
        :class:`~pyfaceau.pipeline.faces.MultiFaceTracker` gives it a new one when the
        face is found again).
    au : the face's AU session: person normalisation (running medians), the rows kept for
        the offline post-processing, the table.

    Notes
    -----
    :meth:`track` (landmarks) and :meth:`measure` (the back end) are separate so that the
    session may run them on different threads for consecutive frames; each must be called
    once per frame, in frame order.
    """

    def __init__(
        self, face_id: int, tracker: LandmarkFrontEnd | None, au: BackendSession
    ) -> None:
        self.face_id = int(face_id)
        self.tracker = tracker
        self.au = au
        self.frames = 0

    def track(self, image: np.ndarray) -> LandmarkResult:
        """The face's landmarks in the next frame (``(H, W, 3)`` uint8 BGR); a failed
        result while the face is lost."""
        if self.tracker is None:
            return LandmarkResult.failed()
        return self.tracker.track(image)

    def landmarks(self, frame: Frame, upcoming: Frame | None = None) -> LandmarkResult:
        """:meth:`track` on ``frame``'s image, or, for an image of a folder that could not
        be decoded (``frame.decoded`` False), a ``success = 0`` result without tracking;
        the tracker's ``seek``, if it has one, is given the frame's index first (a
        landmark CSV's rows: the row of this frame, whatever frames came before).

        ``upcoming``: the frame the next call will receive, when already read; announced
        to a tracker that can start on it early (``expect_next``), with the same results.
        """
        seek = getattr(self.tracker, "seek", None)
        if callable(seek):  # a landmark CSV: the row of this frame, whatever came before
            seek(frame.index)
        if frame.decoded:
            expect_next = getattr(self.tracker, "expect_next", None)
            if upcoming is not None and upcoming.decoded and expect_next is not None:
                expect_next(upcoming.image)
            return self.track(frame.image)
        return LandmarkResult.failed()

    def measure(self, frame: Frame, landmarks: LandmarkResult) -> FrameResult:
        """PDM fit, alignment, features and AUs of this face in ``frame``."""
        self.frames += 1
        return self.au.add(frame, landmarks)

    def step(self, frame: Frame) -> FrameResult:
        """:meth:`track` then :meth:`measure`."""
        return self.measure(frame, self.landmarks(frame))

    def end_of_input(self) -> None:
        """The input has no more frames: the tracker's ``end_of_input``, if it has one,
        checks what it was given against that (a landmark CSV with rows for frames the
        input does not have)."""
        end = getattr(self.tracker, "end_of_input", None)
        if callable(end):
            end()

    def finish(self) -> pd.DataFrame:
        """The face's table, after OpenFace's offline post-processing."""
        return self.au.finish()
