"""Readers of OpenFace's triangulation files.

- ``tris_68_full.txt`` (FaceAnalyser, the AU alignment mask): one integer text matrix
  (``ReadMat``), ``(n_triangles, 3)`` landmark indices. OpenFace's ``FaceAnalyser``
  constructor reads it with a single ``ReadMat``.
- ``tris_68.txt`` (CLNF, one triangulation per view): a count, then that many integer text
  matrices, each preceded by comments (``CLNF::Read_CLNF`` reads the count, then
  ``SkipComments`` + ``ReadMat`` per view).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ModelFileError
from ._matrix import TextReader

__all__ = ["read_triangulation", "read_triangulations"]


def _check_tris(path: Path, tris: np.ndarray, n_points: int | None) -> np.ndarray:
    if tris.ndim != 2 or tris.shape[1] != 3 or tris.shape[0] == 0:
        raise ModelFileError(f"{path}: triangulation must be (n, 3), found {tris.shape}")
    if not np.issubdtype(tris.dtype, np.integer):
        raise ModelFileError(
            f"{path}: triangulation must be an integer matrix (OpenCV type 4), "
            f"found {tris.dtype}"
        )
    out = tris.astype(np.int32)
    if out.min() < 0 or (n_points is not None and out.max() >= n_points):
        bound = n_points if n_points is not None else "n"
        raise ModelFileError(f"{path}: triangle vertex index out of range [0, {bound})")
    return out


def read_triangulation(path: str | Path, n_points: int | None = 68) -> np.ndarray:
    """Read a single-matrix triangulation (``tris_68_full.txt``).

    Parameters
    ----------
    path : path of the file.
    n_points : number of landmarks the indices refer to (checked), or None to skip.

    Returns
    -------
    (n_triangles, 3) int32 landmark indices (111 triangles for ``tris_68_full.txt``).

    Raises
    ------
    ModelFileError
        If the file ends early, is not an integer ``(n, 3)`` matrix, has out-of-range
        indices or has trailing data.
    """
    reader = TextReader(path)
    tris = reader.mat()
    if not reader.at_end():
        raise ModelFileError(
            f"{reader.path}: unexpected data after the triangulation "
            "(a multi-view file like tris_68.txt? use read_triangulations)"
        )
    return _check_tris(reader.path, tris, n_points)


def read_triangulations(path: str | Path, n_points: int | None = 68) -> list[np.ndarray]:
    """Read a per-view triangulation file (``tris_68.txt``).

    Parameters
    ----------
    path : path of the file.
    n_points : number of landmarks the indices refer to (checked), or None to skip.

    Returns
    -------
    list of (n_triangles_v, 3) int32 arrays, one per view (7 for ``tris_68.txt``).

    Raises
    ------
    ModelFileError
        As :func:`read_triangulation`, and if the count is not positive.
    """
    reader = TextReader(path)
    count = reader.int()
    if count <= 0:
        raise ModelFileError(f"{reader.path}: number of triangulations must be > 0, found {count}")
    out = [_check_tris(reader.path, reader.mat(), n_points) for _ in range(count)]
    if not reader.at_end():
        raise ModelFileError(f"{reader.path}: unexpected data after {count} triangulations")
    return out
