"""OpenFace's binary HOG file (``FeatureExtraction -hogalign``), written frame by frame.

OpenFace 2.2 writes one record per face and frame (``RecorderOpenFace::WriteObservation``
calls ``RecorderHOG::Write``), in the order it processes them; the format
(:mod:`pyfaceau.output.hog_file`) has no frame number or face id. A frame whose face was
not tracked still gets a record: ``FaceAnalyser::AddNextFrame`` computes the FHOG of an
all-black aligned face, and ``RecorderHOG`` writes it with the success flag -1.
"""

from __future__ import annotations

import os
from typing import Iterable

import numpy as np

from ..errors import InputError
from .closing import ClosingWriter
from .hog_file import FHOG_NUM_FEATURES, HogFileWriter

__all__ = ["HogWriter"]


class HogWriter(ClosingWriter):
    """Write OpenFace's ``.hog`` file as the faces of a video are processed.

    Parameters
    ----------
    path : the ``.hog`` file; created or truncated.

    Examples
    --------
    >>> with HogWriter("video.hog") as w:  # doctest: +SKIP
    ...     w.add(1, 0, True, fhog(aligned))     # (12, 12, 31) grid
    ...     w.add(2, 0, False, fhog(black_face)) # a failed frame, flag -1
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._writer = HogFileWriter(path)
        self.path = self._writer.path
        self.written = 0

    def add(
        self,
        frame_number: int,
        face_id: int,
        success: bool,
        hog: np.ndarray | None = None,
    ) -> None:
        """Append one face of one frame.

        Parameters
        ----------
        frame_number, face_id : which frame and face (not stored: OpenFace's format has
            neither; records follow the order of the calls).
        success : whether the face was tracked (flag 1 or -1).
        hog : the face's FHOG grid ``(rows, cols, 31)`` or its descriptor
            ``(rows * cols * 31,)`` of a square grid (``hog_descriptor``). On a failed
            frame OpenFace writes the FHOG of an all-black aligned face: the back end
            gives that (:class:`pyfaceau.pipeline.backend.FrameResult` ``hog``).

        Raises
        ------
        InputError
            ``hog`` is missing or of the wrong shape, or the writer is closed.
        """
        self._writer.write(self._as_grid(hog, success), success=bool(success))
        self.written += 1

    def _as_grid(self, hog: np.ndarray | None, success: bool) -> np.ndarray:
        if hog is None:
            what = "a tracked frame" if success else (
                "a failed frame too (OpenFace writes the FHOG of a black aligned face)"
            )
            raise InputError(f"hog: {what} needs its FHOG grid (rows, cols, 31)")
        arr = np.asarray(hog)
        if arr.ndim == 1:
            cells, rest = divmod(arr.size, FHOG_NUM_FEATURES)
            side = int(round(np.sqrt(cells)))
            if rest or side * side != cells or side < 1:
                raise InputError(
                    f"hog: a flat descriptor must hold a square grid of {FHOG_NUM_FEATURES}-"
                    f"feature cells, got {arr.size} values"
                )
            arr = arr.reshape(side, side, FHOG_NUM_FEATURES)
        return arr

    def close(self) -> None:
        """Flush and close the file (idempotent)."""
        self._writer.close()

    def close_without(self, records: Iterable[int]) -> None:
        """Close the file without the records numbered ``records`` (0-based, in the order
        of :meth:`add`); :attr:`written` becomes the number kept."""
        self.written = self._writer.close_without(records)

