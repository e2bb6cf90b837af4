"""Per-frame results collected into an OpenFace-compatible table.

Column names and order follow OpenFace 2.2's ``RecorderCSV.cpp``; pyfaceau writes the
subset it computes (gaze and eye landmarks only where the front end has OpenFace's eye
models). Numbers are printed with OpenFace's precision so files can be compared line by
line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ..errors import InputError
from .atomic import atomic_output

__all__ = [
    "AU_INTENSITY_NAMES",
    "AU_PRESENCE_NAMES",
    "EYE_COLUMNS",
    "OPENFACE_COLUMNS",
    "FrameTable",
    "openface_columns",
    "write_csv",
]

#: AUs with an intensity model (``AU_all_best.txt``), in OpenFace's column order.
AU_INTENSITY_NAMES = (
    "AU01 AU02 AU04 AU05 AU06 AU07 AU09 AU10 AU12 AU14 AU15 AU17 AU20 AU23 AU25 AU26 AU45"
).split()
#: AUs with a presence model (``main_dynamic_svms.txt``), in OpenFace's column order.
AU_PRESENCE_NAMES = (
    "AU01 AU02 AU04 AU05 AU06 AU07 AU09 AU10 AU12 AU14 AU15 AU17 AU20 AU23 AU25 AU26 AU28 AU45"
).split()

_N = 68
_N_MODES = 34
_N_EYE = 56  # two 28-point eye models
GAZE_COLUMNS = [f"gaze_{e}_{a}" for e in (0, 1) for a in "xyz"] + ["gaze_angle_x", "gaze_angle_y"]
EYE_LANDMARK_COLUMNS = [f"eye_lmk_{a}_{i}" for a in "xy" for i in range(_N_EYE)]
EYE_LANDMARK_3D_COLUMNS = [f"eye_lmk_{a}_{i}" for a in "XYZ" for i in range(_N_EYE)]
#: The gaze and eye-landmark columns, written only when the front end has eye models.
EYE_COLUMNS = GAZE_COLUMNS + EYE_LANDMARK_COLUMNS + EYE_LANDMARK_3D_COLUMNS
POSE_COLUMNS = ["pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"]
LANDMARK_COLUMNS = [f"x_{i}" for i in range(_N)] + [f"y_{i}" for i in range(_N)]
LANDMARK_3D_COLUMNS = [f"{a}_{i}" for a in "XYZ" for i in range(_N)]
PARAM_COLUMNS = ["p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty"] + [
    f"p_{i}" for i in range(_N_MODES)
]
AU_COLUMNS = [f"{a}_r" for a in AU_INTENSITY_NAMES] + [f"{a}_c" for a in AU_PRESENCE_NAMES]


def openface_columns(
    intensity_names: Sequence[str] = AU_INTENSITY_NAMES,
    presence_names: Sequence[str] = AU_PRESENCE_NAMES,
) -> list[str]:
    """OpenFace's CSV columns, in its order, for an AU model set with these outputs
    (``RecorderCSV::WriteHeader``: ``AUxx_r`` for each intensity, then ``AUxx_c``)."""
    return (
        ["frame", "face_id", "timestamp", "confidence", "success"]
        + EYE_COLUMNS
        + POSE_COLUMNS
        + LANDMARK_COLUMNS
        + LANDMARK_3D_COLUMNS
        + PARAM_COLUMNS
        + [f"{a}_r" for a in intensity_names]
        + [f"{a}_c" for a in presence_names]
    )


#: Every column pyfaceau writes with OpenFace's default AU models, in OpenFace's order.
OPENFACE_COLUMNS = openface_columns()

#: Group names accepted by :meth:`FrameTable.add`: columns, and whether the value is an
#: array of points (written axis by axis).
_GROUPS = {
    "pose": (POSE_COLUMNS, False),
    "landmarks": (LANDMARK_COLUMNS, True),
    "landmarks_3d": (LANDMARK_3D_COLUMNS, True),
    "params_global": (PARAM_COLUMNS[:6], False),
    "params_local": (PARAM_COLUMNS[6:], False),
    "gaze": (GAZE_COLUMNS, False),
    "eye_landmarks": (EYE_LANDMARK_COLUMNS, True),
    "eye_landmarks_3d": (EYE_LANDMARK_3D_COLUMNS, True),
}

#: printf formats as OpenFace's RecorderCSV writes each group.
_FORMATS = {
    "frame": "%d",
    "face_id": "%d",
    "timestamp": "%.3f",
    "confidence": "%.2f",
    "success": "%d",
    "gaze_angle": "%.3f",
    "gaze": "%.6f",
    "pose_T": "%.1f",
    "pose_R": "%.3f",
    "landmark": "%.1f",
    "p_t": "%.3f",
    "p": "%.3f",
    "au": "%.2f",
}


def _format_of(column: str) -> str:
    if column in _FORMATS:
        return _FORMATS[column]
    if column.startswith("gaze_angle"):
        return _FORMATS["gaze_angle"]
    if column.startswith("gaze_"):
        return _FORMATS["gaze"]
    if column.startswith("eye_lmk_"):
        return _FORMATS["landmark"]
    if column.startswith("pose_T"):
        return _FORMATS["pose_T"]
    if column.startswith("pose_R"):
        return _FORMATS["pose_R"]
    if column[:2] in ("x_", "y_", "X_", "Y_", "Z_"):
        return _FORMATS["landmark"]
    if column.startswith("p_"):
        return _FORMATS["p"]
    if column.startswith("AU"):
        return _FORMATS["au"]
    return "%g"


class FrameTable:
    """Collects one row per frame, in processing order, and builds a DataFrame.

    Parameters
    ----------
    columns : the columns, in output order: :func:`openface_columns` of the AU model
        set, or a subset of it (kept in the given order).
    """

    def __init__(self, columns: Iterable[str]) -> None:
        self.columns = list(columns)
        unknown = [c for c in self.columns if _format_of(c) == "%g"]
        if unknown:
            raise InputError(f"unknown output columns: {unknown[:5]}")
        self._rows: list[np.ndarray] = []
        self._index = {c: i for i, c in enumerate(self.columns)}

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, values: dict[str, float | np.ndarray | Sequence[float]]) -> None:
        """Add a row. ``values`` maps column names or group names to numbers.

        Group names: ``"pose"`` (6,), ``"landmarks"`` (68, 2), ``"landmarks_3d"`` (68, 3),
        ``"params_global"`` (6,), ``"params_local"`` (34,), ``"gaze"`` (8,) (both eyes'
        vectors, then the two angles), ``"eye_landmarks"`` (56, 2), ``"eye_landmarks_3d"``
        (56, 3). Columns not given are NaN.
        """
        row = np.full(len(self.columns), np.nan)
        for key, value in values.items():
            group = _GROUPS.get(key)
            if group is None:
                names, flat = [key], np.atleast_1d(np.asarray(value, float))
            else:
                names, per_point = group
                arr = np.asarray(value, float)
                # point arrays (n, 2|3) are written axis by axis: x_0..x_n, y_0..y_n, ...
                flat = arr.T.ravel() if per_point else arr.ravel()
            for name, v in zip(names, flat):
                i = self._index.get(name)
                if i is not None:
                    row[i] = v
        self._rows.append(row)

    def set_column_block(self, names: Sequence[str], values: np.ndarray) -> None:
        """Overwrite whole columns (e.g. post-processed AUs), ``values`` ``(n_rows, len(names))``."""
        values = np.asarray(values, float)
        if values.shape != (len(self._rows), len(names)):
            raise ValueError(f"expected {(len(self._rows), len(names))}, got {values.shape}")
        for j, name in enumerate(names):
            i = self._index.get(name)
            if i is None:
                continue
            for r, row in enumerate(self._rows):
                row[i] = values[r, j]

    def to_dataframe(self) -> pd.DataFrame:
        """The table, one row per frame; integer columns as int."""
        data = np.vstack(self._rows) if self._rows else np.zeros((0, len(self.columns)))
        df = pd.DataFrame(data, columns=self.columns)
        for c in ("frame", "face_id", "success"):
            if c in df:
                df[c] = df[c].fillna(0).astype(np.int64)
        return df


def write_csv(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``df`` as OpenFace writes its CSV (same names, order and precision).

    The file is written next to its target and renamed into place
    (:func:`~pyfaceau.output.atomic.atomic_output`), so an existing file is replaced only
    by a complete one and nothing is left behind on a failure.
    """
    out = Path(path)
    formats = [_format_of(c) for c in df.columns]
    arr = df.to_numpy(dtype=float)
    with atomic_output(out, "w", newline="\n") as f:
        f.write(",".join(df.columns) + "\n")
        for row in arr:
            f.write(
                ",".join(
                    "nan" if np.isnan(v) else (fmt % v) for fmt, v in zip(formats, row)
                )
                + "\n"
            )
    return out
