"""OpenFace's aligned-face images (``FeatureExtraction -simalign``), one file per face and frame.

OpenFace 2.2 (``lib/local/Utilities/src/RecorderOpenFace.cpp``,
``RecorderOpenFace::WriteObservation``) names the files ``frame_det_%02d_%06d.bmp`` (face
id, 1-based frame number) for videos and image sequences, and ``face_det_%06d.bmp`` (face
id) for a still, in a folder ``<input name>_aligned``. A frame whose face was not tracked
still gets its file (``record_aligned_bad`` is true unless ``-nobadaligned``), and its image
is all black: ``FaceAnalyser::AddNextFrame`` sets the aligned face to zeros when
``success`` is false.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .closing import ClosingWriter
from ..errors import InputError
from ..opencv_io import write_image

__all__ = [
    "ALIGNED_FORMAT",
    "ALIGNED_SIZE",
    "AlignedFaceWriter",
    "aligned_face_name",
]

#: OpenFace's default image format for aligned faces (``image_format_aligned``,
#: ``RecorderOpenFaceParameters.cpp``; ``-format_aligned`` changes it).
ALIGNED_FORMAT = "bmp"
#: Side of OpenFace's output aligned face in pixels (``FaceAnalyserParameters``:
#: ``sim_size_out = 112``).
ALIGNED_SIZE = 112
#: File name stems, ``RecorderOpenFace::WriteObservation``: sequences (videos, image
#: folders) and stills.
_SEQUENCE_NAME = "frame_det_{face_id:02d}_{frame:06d}"
_STILL_NAME = "face_det_{face_id:06d}"


def aligned_face_name(
    frame_number: int, face_id: int, *, sequence: bool = True, image_format: str = ALIGNED_FORMAT
) -> str:
    """OpenFace's file name of an aligned face.

    Parameters
    ----------
    frame_number : 1-based frame number (the CSV's ``frame``); unused for a still.
    face_id : the face's id (the CSV's ``face_id``, or ``face`` for stills).
    sequence : True for videos and image sequences (``frame_det_00_000001.bmp``), False for
        a still (``face_det_000000.bmp``).
    image_format : file extension without the dot.

    Returns
    -------
    str, e.g. ``"frame_det_00_000001.bmp"``.
    """
    stem = (_SEQUENCE_NAME if sequence else _STILL_NAME).format(
        face_id=int(face_id), frame=int(frame_number)
    )
    return f"{stem}.{image_format}"


class AlignedFaceWriter(ClosingWriter):
    """Write aligned faces into a folder as OpenFace does.

    Parameters
    ----------
    directory : output folder; created if needed (with its parents).
    sequence : True for a video or image sequence, False for a still (file names, see
        :func:`aligned_face_name`).
    image_format : extension of the files (OpenFace: ``bmp``, lossless); any format
        OpenCV writes.
    write_failed : also write frames whose face was not tracked, as black images
        (OpenFace's default; False is OpenFace's ``-nobadaligned``).

    Examples
    --------
    >>> with AlignedFaceWriter("video_aligned") as w:  # doctest: +SKIP
    ...     w.add(1, 0, True, aligned)        # video_aligned/frame_det_00_000001.bmp
    ...     w.add(2, 0, False)                # black, as OpenFace writes it
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        sequence: bool = True,
        image_format: str = ALIGNED_FORMAT,
        write_failed: bool = True,
    ) -> None:
        self.directory = Path(directory)
        self.sequence = sequence
        self.image_format = image_format.lstrip(".")
        self.write_failed = write_failed
        self.written = 0
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(
                f"{self.directory}: cannot create the aligned-face folder ({exc.strerror or exc})"
            ) from exc
        self._black: np.ndarray | None = None
        self._closed = False

    def add(
        self,
        frame_number: int,
        face_id: int,
        success: bool,
        aligned_face: np.ndarray | None = None,
    ) -> Path | None:
        """Write one face of one frame.

        Parameters
        ----------
        frame_number : 1-based frame number.
        face_id : the face's id.
        success : whether the face was tracked in this frame. When False the image
            written is black whatever ``aligned_face`` holds, as OpenFace writes it.
        aligned_face : ``(112, 112, 3)`` uint8 BGR (or ``(112, 112)`` grey); required
            when ``success``.

        Returns
        -------
        The file written, or None when a failed frame is skipped (``write_failed=False``).

        Raises
        ------
        InputError
            The writer is closed, ``aligned_face`` is missing or not an 8-bit image, or
            the file cannot be written.
        """
        if self._closed:
            raise InputError(f"{self.directory}: the aligned-face writer is closed")
        if not success:
            if not self.write_failed:
                return None
            image = self._black_face(aligned_face)
        else:
            image = _require_face(aligned_face)
        path = self.directory / aligned_face_name(
            frame_number, face_id, sequence=self.sequence, image_format=self.image_format
        )
        write_picture(path, image, "the aligned face")
        self.written += 1
        return path

    def _black_face(self, like: np.ndarray | None) -> np.ndarray:
        # FaceAnalyser::AddNextFrame: cv::Mat(align_height_out, align_width_out, CV_8UC3) = 0.
        if like is not None and isinstance(like, np.ndarray) and like.ndim in (2, 3):
            return np.zeros_like(like, dtype=np.uint8)
        if self._black is None:
            self._black = np.zeros((ALIGNED_SIZE, ALIGNED_SIZE, 3), dtype=np.uint8)
        return self._black

    def close(self) -> None:
        """Finish (idempotent); files are written as they are added."""
        self._closed = True



def write_picture(path: Path, image: np.ndarray, what: str) -> None:
    """Write ``image`` to ``path`` in the format its extension names, for any file name
    (:func:`pyfaceau.opencv_io.write_image`); one-line :class:`InputError` naming
    ``what`` when it cannot be."""
    try:
        written = write_image(path, image)
    except OSError as exc:
        raise InputError(f"{path}: cannot write {what} ({exc.strerror})") from exc
    if not written:
        raise InputError(f"{path}: cannot write {what} (a format OpenCV writes?)")


def _require_face(face: object) -> np.ndarray:
    if (
        not isinstance(face, np.ndarray)
        or face.dtype != np.uint8
        or face.ndim not in (2, 3)
        or (face.ndim == 3 and face.shape[2] not in (1, 3))
        or min(face.shape[:2]) < 1
    ):
        got = getattr(face, "shape", type(face).__name__)
        raise InputError(
            f"aligned_face: expected an (H, W, 3) or (H, W) uint8 image for a tracked "
            f"frame, got {got} {getattr(face, 'dtype', '')}".rstrip()
        )
    return face
