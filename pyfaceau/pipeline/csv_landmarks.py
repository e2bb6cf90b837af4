"""Landmark input from an OpenFace CSV (``--landmarks-csv``).

Re-scores existing OpenFace landmark output with pyfaceau's AU back end, and lets the
back end be tested in isolation. As in OpenFace's ``FaceAnalyser``, the back end uses the 2D
landmarks and the success flag and fits the PDM itself.

OpenFace prints landmarks rounded to 0.1 px. When the CSV also has the fitter's parameters
(``p_*``), the landmarks are first recovered below that rounding
(:func:`pyfaceau.pdm.dequantise.dequantise_landmarks`, never moving a point by more than
0.05 px); ``dequantise=False`` uses the printed values as they are.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import IncompleteInputWarning, InputError
from ..validation import require_numeric_columns
from ..modelstore import resolve
from ..pdm import MIN_VISIBLE_LANDMARKS, fittable, load_pdm
from ..landmarks.types import VALIDATION_BOUNDARY
from ..pdm.dequantise import dequantise_landmarks
from .types import LandmarkResult

#: The landmark fitter's PDM (the same file as the AU back end's).
FITTER_PDM_FILE = "model/pdms/In-the-wild_aligned_PDM_68.txt"
_GLOBAL_COLUMNS = ["p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty"]

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
    if df.empty:
        raise InputError(f"{p}: no rows")
    used = needed + [c for c in ["confidence", "face_id", *_GLOBAL_COLUMNS] if c in df.columns]
    used += [c for c in df.columns if c.startswith("p_") and c[2:].isdigit()]
    require_numeric_columns(df, used, str(p))
    frames, success = df["frame"].to_numpy(np.float64), df["success"].to_numpy(np.float64)
    bad = ~((frames >= 1) & (frames == np.round(frames)) & (frames < 2**53))
    if bad.any():  # OpenFace numbers frames 1, 2, ...
        raise InputError(f"{p}: row {int(np.argmax(bad)) + 2} has frame {frames[bad][0]:g}; "
                         "frames are numbered 1, 2, ... as OpenFace writes them")
    bad = ~np.isin(success, (0.0, 1.0))
    if bad.any():
        raise InputError(f"{p}: row {int(np.argmax(bad)) + 2} has success {success[bad][0]:g}; "
                         "expected 0 or 1")
    points = df[needed[2:]].to_numpy(np.float64)
    broken = (df["success"].to_numpy() > 0) & ~np.isfinite(points).all(axis=1)
    if broken.any():
        row = int(np.argmax(broken))
        raise InputError(f"{p}: frame {df['frame'].iloc[row]} has missing or infinite "
                         "landmarks (a truncated file?)")
    landmarks = points.reshape(len(df), 2, 68).swapaxes(1, 2)  # (rows, 68, 2): x_*, y_*
    empty = (df["success"].to_numpy() > 0) & ~fittable(landmarks)
    if empty.any():  # x = 0 marks a landmark not visible (CalcParams leaves it out)
        raise InputError(f"{p}: frame {df['frame'][empty].iloc[0]} has success 1 but fewer "
                         f"than {MIN_VISIBLE_LANDMARKS} landmarks with x other than 0")
    keys = ["frame", "face_id"] if "face_id" in df.columns else ["frame"]
    twice = df.duplicated(keys)
    if twice.any():
        raise InputError(f"{p}: frame {df['frame'][twice].iloc[0]} appears twice")
    return df


class CsvLandmarkFrontEnd:
    """Replays the landmarks of an OpenFace CSV frame by frame.

    Rows are matched by the ``frame`` column (1-based); a frame with no row, or with
    ``success == 0``, gives a failed result.

    Parameters
    ----------
    path : the OpenFace CSV.
    dequantise : recover the landmarks below their 0.1 px rounding from the ``p_*``
        columns when the CSV has them.
    models : model folders searched first (for the fitter's PDM).
    """

    def __init__(self, path: str | os.PathLike, *, dequantise: bool = True, models=None) -> None:
        self.csv_path = Path(path)  # an input of the run: never its output
        df = read_openface_csv(path)
        if "face_id" in df.columns and df["face_id"].nunique() > 1:
            first = df["face_id"].min()
            warnings.warn(  # FaceLandmarkVidMulti's ids are slots that change person
                f"{path}: holds {df['face_id'].nunique()} faces; only face_id {first} is "
                "re-scored (one CSV per face for the others)", UserWarning, stacklevel=2)
            df = df[df["face_id"] == first]
        xs = df[[f"x_{i}" for i in range(68)]].to_numpy(np.float64)
        ys = df[[f"y_{i}" for i in range(68)]].to_numpy(np.float64)
        self._landmarks = np.stack([xs, ys], axis=-1)
        self._success = df["success"].to_numpy() > 0
        param_columns = _GLOBAL_COLUMNS + [f"p_{i}" for i in range(34)]
        self._params: np.ndarray | None = None
        self._pdm = None
        if dequantise and all(c in df.columns for c in param_columns):
            self._params = df[param_columns].to_numpy(np.float64)
            self._pdm = load_pdm(resolve(FITTER_PDM_FILE, models))
        self._confidence = (
            df["confidence"].to_numpy(np.float64) if "confidence" in df else np.ones(len(df))
        )
        self._row_of_frame = {int(f): i for i, f in enumerate(df["frame"].to_numpy())}
        self.reset()

    def reset(self) -> None:
        self._next_frame = 1
        self._last_frame = 0  # the last frame of the input given so far (1-based)
        self._warned = False  # about frames without a row: once per replay

    def fresh(self) -> "CsvLandmarkFrontEnd":
        """A new replay from the first frame, sharing the parsed CSV (one per input)."""
        clone = object.__new__(CsvLandmarkFrontEnd)
        clone.__dict__.update(self.__dict__)
        clone.reset()
        return clone

    def seek(self, index: int) -> None:
        """The next :meth:`track` replays the row of frame ``index`` (0-based): a stream's
        frames may skip (a live source) or be numbered by the caller."""
        self._next_frame = int(index) + 1
        self._last_frame = max(self._last_frame, self._next_frame)

    def end_of_input(self) -> None:
        """Warn when the CSV has rows for frames after the input's last: a CSV of another
        (longer) video, or of this one's frames numbered otherwise."""
        last = self._last_frame
        beyond = [f for f in self._row_of_frame if f > last]
        if beyond:
            warnings.warn(
                f"{self.csv_path}: {len(beyond)} row(s) for frames after the input's last "
                f"({last}), from frame {min(beyond)}: the CSV of another (or a longer) video?",
                UserWarning,
                stacklevel=2)

    def track(self, frame_bgr: np.ndarray) -> LandmarkResult:
        self._last_frame = max(self._last_frame, self._next_frame)
        row = self._row_of_frame.get(self._next_frame)
        if row is None and not self._warned:
            self._warned = True
            warnings.warn(IncompleteInputWarning(
                f"{self.csv_path}: no row for frame {self._next_frame} of the input (nor, "
                "perhaps, for later ones): success = 0 there"), stacklevel=2)
        self._next_frame += 1
        if row is None or not self._success[row]:
            return LandmarkResult.failed()
        landmarks = self._landmarks[row].copy()
        if self._params is not None:
            p = self._params[row]
            landmarks = dequantise_landmarks(self._pdm, landmarks, p[:6], p[6:])
        confidence = float(self._confidence[row])
        # A success row under the validator's boundary is a first detection OpenFace kept
        # though its validator rejected it: not analysed (LandmarkResult.validated).
        return LandmarkResult(success=True, confidence=confidence, landmarks=landmarks,
                              validated=confidence > VALIDATION_BOUNDARY)
