"""OpenFace's ``PDM::CalcParams`` from 2D landmarks (``LandmarkDetector/src/PDM.cpp``).

Fits ``params_global`` and ``params_local`` to a set of 2D landmarks by regularised
Gauss-Newton, exactly as OpenFace does (float32 throughout): the initial scale and
translation from the landmarks' bounding box, an identity weight matrix, Tikhonov
regularisation by the inverse eigenvalues, steps damped by 0.75, and a stop after the
third iteration (not necessarily consecutive) that fails to reduce the error by 0.1 %.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from ..errors import InputError
from .pdm import PDM
from .rotation import euler_to_rotation_matrix

__all__ = [
    "calc_params",
    "CALC_PARAMS_MAX_ITER",
    "CALC_PARAMS_STEP",
    "CALC_PARAMS_IMPROVEMENT",
    "CALC_PARAMS_PATIENCE",
    "CALC_PARAMS_REG_FACTOR",
]

#: Maximum number of Gauss-Newton iterations (``for (size_t i = 0; i < 1000; ++i)``, PDM.cpp).
CALC_PARAMS_MAX_ITER = 1000
#: Damping of each step, "to not overshoot" (``param_update = 0.75 * param_update``, PDM.cpp).
CALC_PARAMS_STEP = 0.75
#: An iteration "improves" if ``error <= 0.999 * previous error`` (PDM.cpp).
CALC_PARAMS_IMPROVEMENT = 0.999
#: Stop at the 3rd non-improving iteration; the count is never reset (PDM.cpp).
CALC_PARAMS_PATIENCE = 3
#: Regularisation weight on the inverse eigenvalues (``reg_factor = 1``, PDM.cpp).
CALC_PARAMS_REG_FACTOR = 1.0

_F32 = np.float32


def _cv_gemm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A float32 matrix product as OpenCV's own ``gemm`` forms it (double sums, float out)."""
    return (a.astype(np.float64) @ b.astype(np.float64)).astype(_F32)


def _cv_norm(v: np.ndarray) -> float:
    """``cv::norm`` (L2) of a float vector: double accumulation, stored in a float."""
    return float(_F32(np.sqrt(np.dot(v.astype(np.float64), v.astype(np.float64)))))


def _project(
    shape_3d: np.ndarray, scaling: np.float32, rot: np.ndarray, tx: np.float32, ty: np.float32
) -> np.ndarray:
    """``scaling * shape_3D.t() * R_2D.t()`` then translation, as CalcParams' loop does.

    shape_3d is (3, n) float32; returns the (2n,) float32 column-layout 2D shape.
    """
    proj = (np.float64(scaling) * (shape_3d.T.astype(np.float64) @ rot[:2].T.astype(np.float64)))
    proj = proj.astype(_F32)
    x = proj[:, 0] + tx
    y = proj[:, 1] + ty
    return np.concatenate([x, y]).astype(_F32)


def calc_params(
    pdm: PDM,
    landmarks_2d: np.ndarray,
    rotation: Sequence[float] = (0.0, 0.0, 0.0),
) -> tuple[np.ndarray, np.ndarray]:
    """Fit the PDM to 2D landmarks (OpenFace's ``PDM::CalcParams``).

    Parameters
    ----------
    pdm : the model (68 points for OpenFace's face PDM).
    landmarks_2d : (n, 2) pixels, columns x, y. A landmark whose x is exactly 0 is treated
        as invisible and left out of the fit, as OpenFace does.
    rotation : (3,) initial Euler angles ``[rx, ry, rz]`` radians.

    Returns
    -------
    params_global : (6,) float64 ``[scale, rx, ry, rz, tx, ty]`` (float32-rounded values).
    params_local : (m,) float64 shape parameters (float32-rounded values).

    Raises
    ------
    InputError
        If ``landmarks_2d`` is not ``(n, 2)`` with the PDM's ``n``, has non-finite values,
        or has fewer than 2 visible landmarks.

    Notes
    -----
    Matches OpenFace ``PDM.cpp`` in order of operations and float32 precision:

    - invisible landmarks (x == 0) are dropped from the landmarks, the mean shape and the
      principal components (all three coordinates);
    - initial scale = mean of width and height ratios of the landmarks' box to the mean
      shape's box; initial translation = box centre (uncorrected for the model's offset);
    - each iteration: the error of the *pre-update* shape with the *updated* global
      parameters is compared with ``0.999 *`` the previous error;
    - no clamping of the result.

    Deviates only where BLAS/OpenCV summation order is not reproducible: products are
    float32 (BLAS) or double-accumulated (OpenCV ``gemm``) as in OpenFace, but the
    summation order may differ, so results can differ in the last float32 bits.
    """
    lm = np.asarray(landmarks_2d, dtype=np.float64)
    n_all = pdm.n_points
    if lm.shape != (n_all, 2):
        raise InputError(f"landmarks_2d: expected ({n_all}, 2), got {lm.shape}")
    if not np.isfinite(lm).all():
        raise InputError("landmarks_2d: has NaN or infinite values")
    m = pdm.n_modes
    lm32 = lm.astype(_F32)

    # OpenFace tests only the x coordinate for invisibility.
    visible = lm32[:, 0] != 0
    n = int(visible.sum())
    if n < 2:
        raise InputError(f"landmarks_2d: {n} visible landmarks (x != 0), need at least 2")
    vis3 = np.concatenate([visible, visible, visible])
    mean_v = pdm.mean_shape[vis3, 0]  # (3n,)
    comp_v = pdm.princ_comp[vis3]  # (3n, m)
    sub = PDM(mean_shape=mean_v[:, None], princ_comp=comp_v, eigen_values=pdm.eigen_values)
    target = np.concatenate([lm32[visible, 0], lm32[visible, 1]])  # (2n,) column layout

    # Initial global parameters from the bounding boxes.
    min_x, max_x = target[:n].min(), target[:n].max()
    min_y, max_y = target[n:].min(), target[n:].max()
    width = _F32(abs(min_x - max_x))
    height = _F32(abs(min_y - max_y))
    _, _, model_w, model_h = sub.calc_bounding_box((1.0, 0.0, 0.0, 0.0, 0.0, 0.0), None)
    scaling = ((width / _F32(model_w)) + (height / _F32(model_h))) / _F32(2.0)
    rot = np.asarray(rotation, dtype=np.float64).reshape(-1).astype(_F32)
    if rot.shape != (3,):
        raise InputError(f"rotation: expected 3 values, got {rot.shape[0]}")
    r = euler_to_rotation_matrix(rot)
    tx = (min_x + max_x) / _F32(2.0)
    ty = (min_y + max_y) / _F32(2.0)

    loc = np.zeros(m, dtype=_F32)
    glob = np.array([scaling, rot[0], rot[1], rot[2], tx, ty], dtype=_F32)

    # Initial error, with CalcShape2D's element-wise float32 projection.
    shape_3d = (mean_v + _cv_gemm(comp_v, loc[:, None])[:, 0]).astype(_F32)
    sx, sy, sz = shape_3d[:n], shape_3d[n : 2 * n], shape_3d[2 * n :]
    cur = np.concatenate(
        [
            scaling * (r[0, 0] * sx + r[0, 1] * sy + r[0, 2] * sz) + tx,
            scaling * (r[1, 0] * sx + r[1, 1] * sy + r[1, 2] * sz) + ty,
        ]
    ).astype(_F32)
    curr_error = _cv_norm(cur - target)

    reg = np.zeros(6 + m, dtype=_F32)
    reg[6:] = _F32(CALC_PARAMS_REG_FACTOR) / pdm.eigen_values
    reg_mat = np.diag(reg)

    not_improved = 0
    for _ in range(CALC_PARAMS_MAX_ITER):
        shape_3d = (mean_v + _cv_gemm(comp_v, loc[:, None])[:, 0]).astype(_F32).reshape(3, n)
        cur = _project(shape_3d, scaling, r, tx, ty)
        resid = (target - cur).astype(_F32)

        jac, jac_w_t = sub.compute_jacobian(loc, glob, None)
        rhs = _cv_gemm(jac_w_t, resid[:, None])[:, 0]
        rhs[6:] = rhs[6:] - _cv_gemm(reg_mat[6:, 6:], loc[:, None])[:, 0]
        # OpenFace forms the Hessian with BLAS sgemm: float32.
        hessian = (jac_w_t @ jac + reg_mat).astype(_F32)
        _, update = cv2.solve(hessian, rhs[:, None], flags=cv2.DECOMP_CHOLESKY)
        update = (np.float64(CALC_PARAMS_STEP) * update[:, 0].astype(np.float64)).astype(_F32)

        g64, l64 = sub.update_model_parameters(update, loc, glob)
        glob = g64.astype(_F32)
        loc = l64.astype(_F32)
        scaling = glob[0]
        r = euler_to_rotation_matrix(glob[1:4])
        tx, ty = glob[4], glob[5]

        # OpenFace measures the error with the updated global parameters but the 3D shape
        # from before this update of the local parameters.
        cur = _project(shape_3d, scaling, r, tx, ty)
        error = _cv_norm(cur - target)
        if CALC_PARAMS_IMPROVEMENT * curr_error < error:
            not_improved += 1
            if not_improved == CALC_PARAMS_PATIENCE:
                break
        curr_error = error

    return glob.astype(np.float64), loc.astype(np.float64)

