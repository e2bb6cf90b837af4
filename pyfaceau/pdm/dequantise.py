"""Recovering landmarks that a CSV rounded to 0.1 px, from the fitter's parameters.

OpenFace prints landmarks at 0.1 px and the CLNF parameters (``p_*``) at 0.001. On a
small face the 0.1 px rounding alone moves AU predictions by a few hundredths (measured in
``docs/accuracy.md``). OpenFace's landmarks are the PDM's projection of its parameters, so
the true parameters lie in the small set where every printed number is within half a step
of the projection. Rounding errors are uniform, not Gaussian, so the centre of that set
(the minimax fit, a linear programme) pins the landmarks down about twice as well as a
least-squares fit: 0.002 px RMS against 0.005 px on OpenFace-like faces.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog

from .pdm import PDM

__all__ = ["dequantise_landmarks"]

#: OpenFace's CSV precision (``RecorderCSV.cpp``): landmarks "%.1f", parameters "%.3f".
LANDMARK_STEP = 0.1
PARAM_STEP = 0.001
#: Step for the numerical derivative of the rotation, radians.
_ROT_EPS = 1e-6
#: A minimax residual above this (pixels) means the parameters do not describe the
#: landmarks (a CSV from another fitter, or edited): the printed landmarks are kept.
MAX_CONSISTENT_RESIDUAL = 0.5


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


def _projection_and_jacobian(
    mean: np.ndarray, modes: np.ndarray, q: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """PDM projection ``(2n,)`` (x block then y block) and its ``(2n, 6+m)`` Jacobian in q."""
    n = mean.shape[1]
    shape = mean + modes @ q[6:]
    rot = _rotation(q[1:4])
    proj = q[0] * (rot[:2] @ shape) + q[4:6, None]
    jac = np.empty((2 * n, q.size))
    jac[:, 0] = (rot[:2] @ shape).ravel()
    for k in range(3):
        e = q[1:4].copy()
        e[k] += _ROT_EPS
        jac[:, 1 + k] = (q[0] * ((_rotation(e)[:2] - rot[:2]) @ shape) / _ROT_EPS).ravel()
    jac[:, 4] = np.r_[np.ones(n), np.zeros(n)]
    jac[:, 5] = np.r_[np.zeros(n), np.ones(n)]
    jac[:, 6:] = (q[0] * np.einsum("ij,jnm->inm", rot[:2], modes)).reshape(2 * n, -1)
    return proj.ravel(), jac


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
    ``(n, 2)`` float64 pixels: the projection of the parameters, within their rounding
    interval, that minimise the largest distance to a printed coordinate (one linear
    programme, linearised at the printed parameters: they are within 0.0005 of the truth,
    so the second-order error is below 1e-4 px). Clipped to each landmark's own rounding
    interval, so no point moves by more than half a step. If no such parameters come within
    :data:`MAX_CONSISTENT_RESIDUAL` of the landmarks, the printed landmarks are returned.
    """
    lm = np.asarray(landmarks, np.float64)
    n = pdm.n_points
    mean = pdm.mean_shape.astype(np.float64).reshape(3, n)
    modes = pdm.princ_comp.astype(np.float64).reshape(3, n, pdm.n_modes)
    q0 = np.concatenate([np.asarray(params_global, np.float64), np.asarray(params_local, np.float64)])
    if not (np.isfinite(q0).all() and np.isfinite(lm).all()):
        return lm.copy()
    proj, jac = _projection_and_jacobian(mean, modes, q0)
    residual = lm.T.ravel() - proj
    # Variables: the parameter step dq and the bound t; minimise t subject to
    # |jac @ dq - residual| <= t and |dq| <= param_step / 2.
    k = q0.size
    ones = np.ones((2 * n, 1))
    a_ub = np.block([[jac, -ones], [-jac, -ones]])
    cost = np.zeros(k + 1)
    cost[-1] = 1.0
    half_p = param_step / 2
    bounds = [(-half_p, half_p)] * k + [(0.0, None)]
    res = linprog(cost, A_ub=a_ub, b_ub=np.r_[residual, -residual], bounds=bounds, method="highs")
    if res.status != 0 or res.x[-1] > MAX_CONSISTENT_RESIDUAL:
        return lm.copy()
    exact, _ = _projection_and_jacobian(mean, modes, q0 + res.x[:k])
    est = exact.reshape(2, n).T
    half = landmark_step / 2
    return np.clip(est, lm - half, lm + half)
