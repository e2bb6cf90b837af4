"""Reader of OpenFace's PDM (point distribution model) text files.

Format (``PDM::Read`` in OpenFace's ``LandmarkDetector/src/PDM.cpp``): three text
matrices (``ReadMat``), each preceded by comment lines,

1. the mean shape, ``(3n, 1)``, column layout ``[x_0..x_{n-1}, y_0.., z_0..]`` (mm);
2. the principal components, ``(3n, m)``, same row layout;
3. the eigenvalues (variances), ``(1, m)``.

OpenFace reads them as double and converts them to float32 ``"for speed"``; this reader
does the same so that every later computation starts from OpenFace's exact values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelFileError
from ._matrix import TextReader

__all__ = ["PDMData", "read_pdm"]


@dataclass(frozen=True)
class PDMData:
    """The raw content of a PDM file, in OpenFace's layout.

    Attributes
    ----------
    mean_shape : (3n, 1) float32, mm, rows ``[x_0..x_{n-1}, y_0..y_{n-1}, z_0..z_{n-1}]``.
    princ_comp : (3n, m) float32, principal components, same row layout.
    eigen_values : (m,) float32, variances of the modes (mm^2).
    path : the file read.
    """

    mean_shape: np.ndarray
    princ_comp: np.ndarray
    eigen_values: np.ndarray
    path: Path


def read_pdm(path: str | Path) -> PDMData:
    """Read an OpenFace PDM text file strictly.

    Parameters
    ----------
    path : path of e.g. ``In-the-wild_aligned_PDM_68.txt``.

    Returns
    -------
    PDMData with float32 arrays.

    Raises
    ------
    ModelFileError
        If the file cannot be read, ends early, has a non-numeric value, has matrices whose
        shapes do not fit together (mean ``(3n, 1)``, components ``(3n, m)``, eigenvalues
        ``(1, m)``), has non-positive or non-finite eigenvalues, or has data after the
        eigenvalues.
    """
    reader = TextReader(path)
    p = reader.path
    mean = reader.mat()
    comps = reader.mat()
    eig = reader.mat()
    if not reader.at_end():
        raise ModelFileError(
            f"{p}: unexpected data after the eigenvalues (not an OpenFace PDM file?)"
        )
    if mean.ndim != 2 or mean.shape[1] != 1 or mean.shape[0] == 0 or mean.shape[0] % 3:
        raise ModelFileError(
            f"{p}: mean shape must be (3n, 1), found {mean.shape} (not an OpenFace PDM file?)"
        )
    n3 = mean.shape[0]
    if comps.shape[0] != n3 or comps.shape[1] == 0:
        raise ModelFileError(
            f"{p}: principal components must be ({n3}, m), found {comps.shape}"
        )
    m = comps.shape[1]
    if eig.shape != (1, m):
        raise ModelFileError(f"{p}: eigenvalues must be (1, {m}), found {eig.shape}")
    mean32 = mean.astype(np.float32)
    comps32 = comps.astype(np.float32)
    eig32 = eig.reshape(m).astype(np.float32)
    if not (np.isfinite(mean32).all() and np.isfinite(comps32).all()):
        raise ModelFileError(f"{p}: non-finite value in the mean shape or components")
    if not (np.isfinite(eig32).all() and (eig32 > 0).all()):
        raise ModelFileError(f"{p}: eigenvalues must be finite and positive")
    return PDMData(mean_shape=mean32, princ_comp=comps32, eigen_values=eig32, path=p)
