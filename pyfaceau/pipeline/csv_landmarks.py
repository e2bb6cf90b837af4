"""Landmark input from an OpenFace CSV (``--landmarks-csv``).

Re-scores existing OpenFace landmark output with pyfaceau's AU back end, and lets the
back end be tested in isolation. As in OpenFace's ``FaceAnalyser``, only the 2D landmarks
and the success flag are used; the back end fits the PDM itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from .types import LandmarkResult

__all__ = ["CsvLandmarkFrontEnd", "read_openface_csv"]


def read_openface_csv(path: str | os.PathLike) -> pd.DataFrame:
    """An OpenFace CSV with stripped column names; raises InputError if unusable."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such landmark CSV")
    try:
        df = pd.read_csv(p, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: not a readable CSV ({exc})") from None
    df.columns = [str(c).strip() for c in df.columns]
    needed = ["frame", "success"] + [f"x_{i}" for i in range(68)] + [f"y_{i}" for i in range(68)]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise InputError(
            f"{p}: not an OpenFace landmark CSV (missing columns {', '.join(missing[:4])}...)"
        )
    return df


class CsvLandmarkFrontEnd:
    """Replays the landmarks of an OpenFace CSV frame by frame.

    Rows are matched by the ``frame`` column (1-based); a frame with no row, or with
    ``success == 0``, gives a failed result.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        df = read_openface_csv(path)
        if "face_id" in df.columns and df["face_id"].nunique() > 1:
            df = df[df["face_id"] == df["face_id"].min()]
        xs = df[[f"x_{i}" for i in range(68)]].to_numpy(np.float64)
        ys = df[[f"y_{i}" for i in range(68)]].to_numpy(np.float64)
        self._landmarks = np.stack([xs, ys], axis=-1)
        self._success = df["success"].to_numpy() > 0
        self._confidence = (
            df["confidence"].to_numpy(np.float64) if "confidence" in df else np.ones(len(df))
        )
        self._row_of_frame = {int(f): i for i, f in enumerate(df["frame"].to_numpy())}
        self._next_frame = 1

    def reset(self) -> None:
        self._next_frame = 1

    def track(self, frame_bgr: np.ndarray) -> LandmarkResult:
        row = self._row_of_frame.get(self._next_frame)
        self._next_frame += 1
        if row is None or not self._success[row]:
            return LandmarkResult.failed()
        return LandmarkResult(
            success=True,
            confidence=float(self._confidence[row]),
            landmarks=self._landmarks[row].copy(),
        )
