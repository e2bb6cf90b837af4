"""Recovering landmarks that a CSV rounded to 0.1 px, from the fitter's parameters.

OpenFace prints landmarks at 0.1 px and the CLNF parameters (``p_*``) at 0.001. On a
small face the 0.1 px rounding alone moves AU predictions by a few hundredths (measured in
``docs/accuracy.md``). OpenFace's landmarks are the PDM's projection of its parameters, so
the parameters, constrained to their own rounding interval and fitted to all 136 rounded
coordinates, pin the landmarks down more finely than either column group alone.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import lsq_linear

from .pdm import PDM

__all__ = ["dequantise_landmarks"]

#: OpenFace's CSV precision (``RecorderCSV.cpp``): landmarks "%.1f", parameters "%.3f".
LANDMARK_STEP = 0.1
PARAM_STEP = 0.001
#: Gauss-Newton steps of the bounded fit (it converges in 2-3).
N_ITERATIONS = 4
#: Step for the numerical derivative of the rotation, radians.
_ROT_EPS = 1e-6


def _rotation(euler: np.ndarray) -> np.ndarray:
    s1, s2, s3 = np.sin(euler)
    c1, c2, c3 = np.cos(euler)
    return np.array(
        [
            [c2 * c3, -c2 * s3, s2],
            [c1 * s3 + c3 * s1 * s2, c1 * c3 - s1 * s2 * s3, -c2 * s1],
            [s1 * s3 - c1 * c3 * s2, c3 * s1 + c1 * s2 * s3, c1 * c2],
        ]
    )


def dequantise_landmarks(
    pdm: PDM,
    landmarks: np.ndarray,
    params_global: np.ndarray,
    params_local: np.ndarray,
    landmark_step: float = LANDMARK_STEP,
    param_step: float = PARAM_STEP,
) -> np.ndarray:
    """Best estimate of OpenFace's unrounded landmarks.

    Parameters
    ----------
    pdm : the landmark fitter's PDM.
    landmarks : ``(n, 2)`` float64, pixels, as printed (rounded to ``landmark_step``).
    params_global : ``(6,)`` printed ``[scale, rx, ry, rz, tx, ty]`` (rounded to ``param_step``).
    params_local : ``(m,)`` printed shape parameters.

    Returns
    -------
    ``(n, 2)`` float64 pixels: the projection of the parameters fitted (in float64) to the
    printed landmarks within the parameters' rounding interval, then clipped to each
    landmark's own rounding interval, so no point moves by more than half a step.
    """
    lm = np.asarray(landmarks, np.float64)
    n, m = pdm.n_points, pdm.n_modes
    mean = pdm.mean_shape.astype(np.float64).reshape(3, n)
    modes = pdm.princ_comp.astype(np.float64).reshape(3, n, m)
    q0 = np.concatenate([np.asarray(params_global, np.float64), np.asarray(params_local, np.float64)])
    lo, hi = q0 - param_step / 2, q0 + param_step / 2
    target = lm.T.ravel()
    q = q0.copy()
    for _ in range(N_ITERATIONS):
        shape = mean + modes @ q[6:]
        rot = _rotation(q[1:4])
        proj = q[0] * (rot[:2] @ shape) + q[4:6, None]
        jac = np.empty((2 * n, 6 + m))
        jac[:, 0] = (rot[:2] @ shape).ravel()
        for k in range(3):
            e = q[1:4].copy()
            e[k] += _ROT_EPS
            jac[:, 1 + k] = (q[0] * ((_rotation(e)[:2] - rot[:2]) @ shape) / _ROT_EPS).ravel()
        jac[:, 4] = np.r_[np.ones(n), np.zeros(n)]
        jac[:, 5] = np.r_[np.zeros(n), np.ones(n)]
        jac[:, 6:] = (q[0] * np.einsum("ij,jnm->inm", rot[:2], modes)).reshape(2 * n, m)
        step = lsq_linear(jac, target - proj.ravel(), bounds=(lo - q, hi - q), method="bvls")
        q = np.clip(q + step.x, lo, hi)
    shape = mean + modes @ q[6:]
    est = (q[0] * (_rotation(q[1:4])[:2] @ shape) + q[4:6, None]).T
    half = landmark_step / 2
    return np.clip(est, lm - half, lm + half)
