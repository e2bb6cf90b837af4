"""OpenFace's binary ``.hog`` files (``FeatureExtraction -hogalign``).

Format (OpenFace 2.2 ``lib/local/Utilities/src/RecorderHOG.cpp``, ``RecorderHOG::Write``),
little-endian, one record per frame, no file header::

    int32   num_cols
    int32   num_rows
    int32   num_channels          (31)
    float32 success               (1 for a successfully tracked frame, -1 otherwise)
    float32 values[num_rows * num_cols * 31]

The values are the frame's HOG descriptor (``Face_utils.cpp``,
``Extract_FHOG_descriptor``) in its own order: cell rows, then cell columns, then the
31 features, i.e. ``fhog(aligned_face).reshape(-1)`` cast to float32. (OpenFace writes
``num_cols * num_rows * 31`` values whatever ``num_channels`` says; the two agree in
practice and the reader requires ``num_channels == 31``.) Frames whose face was not
tracked are still written, from an all-black aligned face, with the flag -1.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Iterable, NamedTuple

import numpy as np

from .closing import ClosingWriter
from ..errors import InputError

__all__ = ["HogFile", "read_hog_file", "HogFileWriter", "write_hog_file"]

#: Features per FHOG cell, the only channel count OpenFace writes (FeatureExtraction.cpp:
#: "The number of channels in HOG is fixed at the moment, as using FHOG"; the same as
#: ``pyfaceau.features.fhog.FHOG_NUM_FEATURES``).
FHOG_NUM_FEATURES: int = 31

#: Bytes of a record header: int32 cols, int32 rows, int32 channels, float32 success.
HOG_RECORD_HEADER_BYTES: int = 16
#: Values of the success flag OpenFace writes (``good_frame_float`` in RecorderHOG.cpp).
HOG_SUCCESS_TRUE: float = 1.0
HOG_SUCCESS_FALSE: float = -1.0


class HogFile(NamedTuple):
    """Contents of a ``.hog`` file.

    Attributes
    ----------
    features : ``(frames, rows, cols, 31)`` float32, each frame's FHOG grid (the
        descriptor is ``features[i].reshape(-1)``). ``(0, 0, 0, 31)`` for an empty file.
    success : ``(frames,)`` bool, OpenFace's per-frame success flag.
    """

    features: np.ndarray
    success: np.ndarray


def read_hog_file(path: str | os.PathLike[str]) -> HogFile:
    """Read an OpenFace ``.hog`` file, strictly.

    Parameters
    ----------
    path : the ``.hog`` file.

    Returns
    -------
    HogFile
        ``(features, success)``: ``(frames, rows, cols, 31)`` float32 and ``(frames,)``
        bool; unpacks as a tuple.

    Raises
    ------
    InputError
        The file cannot be read, is truncated (its size is not a whole number of
        records), a record's header differs from the first one, sizes are not positive,
        ``channels != 31``, or a success flag is neither 1 nor -1. The message names the
        file and the frame (0-based).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the .hog file ({exc.strerror})") from exc
    if len(data) == 0:
        empty = np.zeros((0, 0, 0, FHOG_NUM_FEATURES), dtype=np.float32)
        return HogFile(empty, np.zeros(0, dtype=bool))
    if len(data) < HOG_RECORD_HEADER_BYTES:
        raise InputError(
            f"{path}: truncated .hog file: {len(data)} bytes, shorter than one record "
            f"header ({HOG_RECORD_HEADER_BYTES} bytes)"
        )
    cols, rows, channels = (int(v) for v in np.frombuffer(data, dtype="<i4", count=3))
    if cols <= 0 or rows <= 0 or channels != FHOG_NUM_FEATURES:
        raise InputError(
            f"{path}: not an OpenFace .hog file: frame 0 header says cols={cols}, "
            f"rows={rows}, channels={channels} (expected positive sizes and "
            f"{FHOG_NUM_FEATURES} channels)"
        )
    n_values = rows * cols * channels
    record = np.dtype(
        [
            ("cols", "<i4"),
            ("rows", "<i4"),
            ("channels", "<i4"),
            ("success", "<f4"),
            ("values", "<f4", (n_values,)),
        ]
    )
    n_frames, rest = divmod(len(data), record.itemsize)
    if rest:
        raise InputError(
            f"{path}: truncated .hog file: {len(data)} bytes is {n_frames} whole records "
            f"of {record.itemsize} bytes ({cols}x{rows}x{channels}) plus {rest} bytes of "
            f"frame {n_frames}; the file was cut short or is not a .hog file"
        )
    recs = np.frombuffer(data, dtype=record, count=n_frames)
    bad = np.flatnonzero(
        (recs["cols"] != cols) | (recs["rows"] != rows) | (recs["channels"] != channels)
    )
    if bad.size:
        i = int(bad[0])
        raise InputError(
            f"{path}: frame {i} header says {recs['cols'][i]}x{recs['rows'][i]}x"
            f"{recs['channels'][i]} but frame 0 says {cols}x{rows}x{channels}; the file is "
            "damaged or not a .hog file"
        )
    flags = recs["success"]
    bad = np.flatnonzero((flags != HOG_SUCCESS_TRUE) & (flags != HOG_SUCCESS_FALSE))
    if bad.size:
        i = int(bad[0])
        raise InputError(
            f"{path}: frame {i} has success flag {flags[i]!r}, expected 1 or -1; the file "
            "is damaged or not a .hog file"
        )
    features = recs["values"].reshape(n_frames, rows, cols, channels).copy()
    return HogFile(features, flags == HOG_SUCCESS_TRUE)


class HogFileWriter(ClosingWriter):
    """Write a ``.hog`` file frame by frame, as OpenFace's ``RecorderHOG`` does.

    Parameters
    ----------
    path : output file; created or truncated.

    Examples
    --------
    >>> with HogFileWriter("out.hog") as w:  # doctest: +SKIP
    ...     w.write(fhog(aligned), success=True)
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self._fh: BinaryIO | None = open(self.path, "wb")
        except OSError as exc:
            msg = f"{self.path}: cannot write the .hog file ({exc.strerror})"
            raise InputError(msg) from exc
        self._shape: tuple[int, int] | None = None

    def write(self, features: np.ndarray, success: bool) -> None:
        """Append one frame.

        Parameters
        ----------
        features : ``(rows, cols, 31)`` FHOG grid (any float dtype; stored as float32).
            Every frame of a file must have the same shape.
        success : the frame's success flag (written as 1.0 / -1.0).
        """
        if self._fh is None:
            raise InputError(f"{self.path}: the .hog writer is closed")
        arr = np.asarray(features)
        if arr.ndim != 3 or arr.shape[2] != FHOG_NUM_FEATURES or min(arr.shape[:2]) < 1:
            raise InputError(
                f"features must be (rows, cols, {FHOG_NUM_FEATURES}), got shape {arr.shape}"
            )
        if not np.issubdtype(arr.dtype, np.floating):
            raise InputError(f"features must be a float array, got dtype {arr.dtype}")
        rows, cols = int(arr.shape[0]), int(arr.shape[1])
        if self._shape is None:
            self._shape = (rows, cols)
        elif self._shape != (rows, cols):
            raise InputError(
                f"{self.path}: frame of {rows}x{cols} cells after frames of "
                f"{self._shape[0]}x{self._shape[1]}; a .hog file holds one grid size"
            )
        header = np.array([cols, rows, FHOG_NUM_FEATURES], dtype="<i4").tobytes()
        flag = np.array(
            [HOG_SUCCESS_TRUE if success else HOG_SUCCESS_FALSE], dtype="<f4"
        ).tobytes()
        self._fh.write(header + flag + np.ascontiguousarray(arr, dtype="<f4").tobytes())

    def close(self) -> None:
        """Flush and close the file (idempotent)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def close_without(self, records: Iterable[int]) -> int:
        """Close the file without the records numbered ``records`` (0-based, in the order
        written): the later records move up in place and the file is cut to the rest.
        Returns the number of records kept."""
        self.close()
        if self._shape is None:  # nothing written
            return 0
        size = HOG_RECORD_HEADER_BYTES + 4 * self._shape[0] * self._shape[1] * FHOG_NUM_FEATURES
        n_records = self.path.stat().st_size // size
        dropped = {int(i) for i in records if 0 <= int(i) < n_records}
        if not dropped:
            return n_records
        try:
            with open(self.path, "r+b") as f:
                kept = min(dropped)  # the records before the first one dropped stay put
                for i in range(kept + 1, n_records):
                    if i in dropped:
                        continue
                    f.seek(i * size)
                    data = f.read(size)
                    f.seek(kept * size)
                    f.write(data)
                    kept += 1
                f.truncate(kept * size)
        except OSError as exc:
            raise InputError(f"{self.path}: cannot rewrite the .hog file ({exc.strerror})") from exc
        return kept



def write_hog_file(
    path: str | os.PathLike[str], features: np.ndarray, success: np.ndarray
) -> None:
    """Write a whole ``.hog`` file.

    Parameters
    ----------
    path : output file; created or truncated.
    features : ``(frames, rows, cols, 31)`` float array.
    success : ``(frames,)`` bool (or anything truthy per frame).

    Raises
    ------
    InputError
        Shapes that do not match the format or each other.
    """
    feats = np.asarray(features)
    flags = np.asarray(success)
    if feats.ndim != 4:
        raise InputError(
            f"features must be (frames, rows, cols, {FHOG_NUM_FEATURES}), "
            f"got shape {feats.shape}"
        )
    if flags.shape != (feats.shape[0],):
        raise InputError(
            f"success must be ({feats.shape[0]},) to match features, got shape {flags.shape}"
        )
    with HogFileWriter(path) as writer:
        for frame, ok in zip(feats, flags):
            writer.write(frame, bool(ok))
