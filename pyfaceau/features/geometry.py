"""OpenFace's geometry descriptor for the AU models.

``FaceAnalyser::AddNextFrame`` (``FaceAnalyser/src/FaceAnalyser.cpp``) appends to the HOG
descriptor a shape descriptor built from the frame's non-rigid PDM parameters
``params_local`` (float, from ``PDM::CalcParams``):

1. ``params_local`` (float32) is converted to double;
2. the PDM's principal components (float32 ``(3n, m)``) are converted to double and
   multiplied by it, giving the non-rigid 3D displacement of every landmark from the mean
   shape ``locs`` ``(3n,)``, rows ``[x_0..x_{n-1}, y_0.., z_0..]`` (mm);
3. the descriptor is ``[locs, params_local]``, ``3n + m`` values (238 for the 68-point
   PDM with 34 modes).

For a frame where tracking failed OpenFace uses zeros, which gives a zero descriptor.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError

__all__ = ["geometry_descriptor", "geometry_descriptors"]


def _princ_comp(pdm_or_princ_comp: Any) -> np.ndarray:
    pc = getattr(pdm_or_princ_comp, "princ_comp", pdm_or_princ_comp)
    pc = np.asarray(pc)
    if pc.ndim != 2 or pc.shape[0] % 3:
        raise InputError(
            f"geometry_descriptor: principal components must be (3n, m), got {pc.shape}"
        )
    # OpenFace keeps the PDM in float32 and converts it to double for this product.
    return pc.astype(np.float32).astype(np.float64)


def geometry_descriptors(pdm: Any, params_local: np.ndarray) -> np.ndarray:
    """Geometry descriptors of several frames.

    Parameters
    ----------
    pdm : a :class:`pyfaceau.pdm.PDM` (anything with ``princ_comp``) or the ``(3n, m)``
        principal-component matrix itself.
    params_local : (N, m) or (m,) non-rigid PDM parameters from
        :func:`pyfaceau.pdm.calc_params` on the frame's landmarks (OpenFace re-fits them
        in ``FaceAnalyser``; the landmark fitter's ``p_*`` differ); rounded to float32
        first, as OpenFace holds them.

    Returns
    -------
    (N, 3n + m) float64 (``(3n + m,)`` for a single frame): ``[princ_comp @ p, p]``.
    """
    pc = _princ_comp(pdm)
    p = np.asarray(params_local, dtype=np.float64)
    single = p.ndim == 1
    p2 = p.reshape(1, -1) if single else p
    if p2.ndim != 2 or p2.shape[1] != pc.shape[1]:
        raise InputError(
            f"geometry_descriptor: params_local must have {pc.shape[1]} values per frame, "
            f"got shape {p.shape}"
        )
    p64 = p2.astype(np.float32).astype(np.float64)
    locs = p64 @ pc.T
    out = np.concatenate([locs, p64], axis=1)
    return out[0] if single else out


def geometry_descriptor(pdm: Any, params_local: np.ndarray) -> np.ndarray:
    """The geometry descriptor of one frame (``FaceAnalyser::AddNextFrame``).

    Parameters
    ----------
    pdm : a :class:`pyfaceau.pdm.PDM` or its ``(3n, m)`` ``princ_comp``.
    params_local : (m,) non-rigid PDM parameters from ``calc_params``; rounded to float32.

    Returns
    -------
    (3n + m,) float64, ``[princ_comp @ params_local (mm), params_local]``; 238 values for
    OpenFace's 68-point, 34-mode PDM.
    """
    p = np.asarray(params_local)
    if p.ndim != 1:
        raise InputError(f"geometry_descriptor: params_local must be 1-D, got shape {p.shape}")
    return geometry_descriptors(pdm, p)
