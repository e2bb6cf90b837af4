"""Agreement of a pyfaceau table with OpenFace's output for the same input.

Used by the parity tests and ``bench/accuracy.py``; also handy for users who want to check
pyfaceau against their own OpenFace runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError
from .output.hog_file import read_hog_file
from .output.table import AU_INTENSITY_NAMES, AU_PRESENCE_NAMES

__all__ = [
    "au_agreement", "landmark_distances", "common_success", "aligned_face_differences",
    "hog_differences",
]


def common_success(ours: pd.DataFrame, ref: pd.DataFrame) -> np.ndarray:
    """Boolean mask over ``ref``'s rows where both tables succeeded (rows matched by
    ``frame``)."""
    merged = ref[["frame", "success"]].merge(
        ours[["frame", "success"]], on="frame", how="left", suffixes=("_ref", "_ours")
    )
    return (merged["success_ref"].to_numpy() > 0) & (merged["success_ours"].fillna(0).to_numpy() > 0)


def _aligned(ours: pd.DataFrame, ref: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, np.ndarray]:
    merged = ref[["frame"] + columns].merge(ours[["frame"] + columns], on="frame", how="left",
                                            suffixes=("_ref", "_ours"))
    a = merged[[f"{c}_ours" for c in columns]].to_numpy(float)
    b = merged[[f"{c}_ref" for c in columns]].to_numpy(float)
    return a, b


def au_agreement(ours: pd.DataFrame, ref: pd.DataFrame, mask: np.ndarray | None = None) -> pd.DataFrame:
    """Per-AU agreement over the frames where both succeeded (or ``mask``).

    Returns
    -------
    DataFrame indexed by AU name with columns ``r`` (Pearson, intensity), ``mae``
    (intensity), ``ref_std`` (std of OpenFace's intensity), ``presence_agree`` (fraction of
    frames with the same ``_c``), ``n`` (frames compared). NaN where an AU lacks that model.
    """
    if mask is None:
        mask = common_success(ours, ref)
    names = sorted(set(AU_INTENSITY_NAMES) | set(AU_PRESENCE_NAMES))
    rows = []
    for name in names:
        row = {"au": name, "r": np.nan, "mae": np.nan, "ref_std": np.nan, "presence_agree": np.nan}
        if name in AU_INTENSITY_NAMES:
            a, b = _aligned(ours, ref, [f"{name}_r"])
            a, b = a[mask, 0], b[mask, 0]
            row["mae"] = float(np.mean(np.abs(a - b))) if len(a) else np.nan
            row["ref_std"] = float(np.std(b)) if len(b) else np.nan
            if len(a) > 1 and np.std(a) > 0 and np.std(b) > 0:
                row["r"] = float(np.corrcoef(a, b)[0, 1])
        if name in AU_PRESENCE_NAMES:
            a, b = _aligned(ours, ref, [f"{name}_c"])
            a, b = a[mask, 0], b[mask, 0]
            row["presence_agree"] = float(np.mean((a > 0.5) == (b > 0.5))) if len(a) else np.nan
        row["n"] = int(mask.sum())
        rows.append(row)
    return pd.DataFrame(rows).set_index("au")


def landmark_distances(ours: pd.DataFrame, ref: pd.DataFrame, mask: np.ndarray | None = None,
                       points: list[int] | None = None) -> np.ndarray:
    """Per-frame mean Euclidean distance (pixels) between the two tables' 2D landmarks,
    over the frames where both succeeded (or ``mask``) and the given landmark indices."""
    if mask is None:
        mask = common_success(ours, ref)
    idx = list(range(68)) if points is None else list(points)
    cols = [f"x_{i}" for i in idx] + [f"y_{i}" for i in idx]
    a, b = _aligned(ours, ref, cols)
    a, b = a[mask], b[mask]
    n = len(idx)
    d = np.hypot(a[:, :n] - b[:, :n], a[:, n:] - b[:, n:])
    return d.mean(axis=1)


def aligned_face_differences(
    folder: str | os.PathLike[str], reference_folder: str | os.PathLike[str]
) -> np.ndarray:
    """Per-frame mean absolute difference (grey levels, every channel) between the aligned
    faces in ``folder`` and OpenFace's in ``reference_folder`` (``-simalign``).

    Returns
    -------
    (frames,) float64, in the order of the reference's file names.

    Raises
    ------
    InputError
        If the two folders do not hold the same image names.
    """
    import cv2  # here: the table comparisons above do not need it

    ours, ref = Path(folder), Path(reference_folder)
    names = sorted(p.name for p in ref.glob("*.bmp"))
    if sorted(p.name for p in ours.iterdir()) != names:
        raise InputError(f"{ours}: not the aligned faces of {ref} (other file names)")
    return np.array([
        np.abs(cv2.imread(str(ref / n)).astype(np.float64)
               - cv2.imread(str(ours / n)).astype(np.float64)).mean()
        for n in names
    ])


def hog_differences(
    path: str | os.PathLike[str], reference_path: str | os.PathLike[str]
) -> np.ndarray:
    """Per-frame mean absolute difference between two ``.hog`` files (OpenFace's
    ``-hogalign``).

    Returns
    -------
    (frames,) float64.

    Raises
    ------
    InputError
        If the files differ in frames, grid size or per-frame success flags.
    """
    ours, ref = read_hog_file(path), read_hog_file(reference_path)
    if ours.features.shape != ref.features.shape or not np.array_equal(ours.success,
                                                                        ref.success):
        raise InputError(f"{path}: not comparable with {reference_path} (frames, grid size "
                         "or success flags differ)")
    diff = np.abs(ours.features.astype(np.float64) - ref.features.astype(np.float64))
    return diff.reshape(len(diff), -1).mean(axis=1)
