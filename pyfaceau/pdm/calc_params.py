"""OpenFace's ``PDM::CalcParams`` from 2D landmarks (``LandmarkDetector/src/PDM.cpp``).

Fits ``params_global`` and ``params_local`` to a set of 2D landmarks by regularised
Gauss-Newton, exactly as OpenFace does (float32 throughout): the initial scale and
translation from the landmarks' bounding box, an identity weight matrix, Tikhonov
regularisation by the inverse eigenvalues, steps damped by 0.75, and a stop after the
third iteration (not necessarily consecutive) that fails to reduce the error by 0.1 %.
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

from .. import blas, jit
from ..errors import InputError
from .kernels import add_diagonal_kernel, jacobian_kernel, shape_3d_kernel, update_kernel
from .opencv_kernels import cholesky_solve_f32
from .pdm import PDM
from .rotation import _euler_to_rotation_kernel, euler_to_rotation_matrix

__all__ = [
    "MIN_VISIBLE_LANDMARKS",
    "calc_params",
    "fittable",
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


@jit.njit(cache=True, nogil=True)
def _project_kernel(shape_3d: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``scaling * shape_3D.t() * R_2D.t()`` then translation, as CalcParams' loop does.

    shape_3d is (3n,) float32 (rows x.., y.., z..), g the float32 global parameters;
    returns the (2n,) float32 column-layout 2D shape. The cv::Mat product sums 3 exact
    double products in order (as OpenCV's gemm and OpenBLAS do), then scales in double.
    """
    n = shape_3d.shape[0] // 3
    r = _euler_to_rotation_kernel(g[1], g[2], g[3])
    scaling = np.float64(g[0])
    out = np.empty(2 * n, dtype=np.float32)
    for i in range(n):
        x = np.float64(shape_3d[i])
        y = np.float64(shape_3d[n + i])
        z = np.float64(shape_3d[2 * n + i])
        px = np.float32(scaling * (x * r[0, 0] + y * r[0, 1] + z * r[0, 2]))
        py = np.float32(scaling * (x * r[1, 0] + y * r[1, 1] + z * r[1, 2]))
        out[i] = px + g[4]
        out[n + i] = py + g[5]
    return out


@jit.njit(cache=True, nogil=True)
def _error_kernel(shape_3d: np.ndarray, g: np.ndarray, target: np.ndarray) -> float:
    """``cv::norm(projection - target)``: double sum of squares, stored in a float."""
    return _norm_kernel(_project_kernel(shape_3d, g), target)


@jit.njit(cache=True, nogil=True)
def _norm_kernel(a: np.ndarray, b: np.ndarray) -> float:
    """``cv::norm(a - b)`` (L2) of float32 vectors: double sums, stored in a float.

    OpenCV's and OpenBLAS's summation orders differ from this one in the last double
    bit at most, which the float rounding hides (it only decides a stopping test).
    """
    acc = 0.0
    for i in range(a.shape[0]):
        d = np.float64(np.float32(a[i] - b[i]))
        acc += d * d
    return np.float64(np.float32(math.sqrt(acc)))


@jit.njit(cache=True, nogil=True)
def _rhs_kernel(
    shape_3d: np.ndarray,
    g: np.ndarray,
    target: np.ndarray,
    jac_w_t: np.ndarray,
    reg: np.ndarray,
    loc: np.ndarray,
) -> np.ndarray:
    """``J^T (target - projection) - R p`` in float32 (OpenCV gemm: double sums)."""
    resid = target - _project_kernel(shape_3d, g)
    k = jac_w_t.shape[0]
    rhs = np.empty(k, dtype=np.float32)
    for c in range(k):
        acc = 0.0
        for row in range(resid.shape[0]):
            acc += np.float64(jac_w_t[c, row]) * np.float64(resid[row])
        rhs[c] = np.float32(acc)
    for j in range(k - 6):
        rhs[6 + j] = rhs[6 + j] - np.float32(np.float64(reg[6 + j]) * np.float64(loc[j]))
    return rhs


@jit.njit(cache=True, nogil=True)
def _step_kernel(
    mean_v: np.ndarray,
    comp_loc: np.ndarray,
    s3_blas: np.ndarray,
    princ_comp: np.ndarray,
    g: np.ndarray,
    target: np.ndarray,
    reg: np.ndarray,
    loc: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One CalcParams iteration up to the linear system, in one call.

    ``comp_loc`` is ``princ_comp @ loc`` formed in double ((3n, 1) float64, OpenCV's
    gemm), ``s3_blas`` the 3D shape ``ComputeJacobian`` forms with float32 BLAS
    (``PDM.shape_3d_f32``). Returns the float32 3D shape, the Jacobian, its transpose
    and the right-hand side (:func:`_rhs_kernel`).
    """
    shape_3d = np.empty(mean_v.shape[0], dtype=np.float32)
    for i in range(mean_v.shape[0]):
        shape_3d[i] = mean_v[i] + np.float32(comp_loc[i, 0])
    # Identity weights (CalcParams' W = I): the weight argument is not read.
    jac, jac_w_t = jacobian_kernel(s3_blas, princ_comp, g, target, False, False)
    rhs = _rhs_kernel(shape_3d, g, target, jac_w_t, reg, loc)
    return shape_3d, jac, jac_w_t, rhs


@jit.njit(cache=True, nogil=True)
def _damp_kernel(update: np.ndarray, step: float) -> np.ndarray:
    """``step * update`` formed in double, stored as float32."""
    out = np.empty(update.shape[0], dtype=np.float32)
    for j in range(update.shape[0]):
        out[j] = np.float32(step * np.float64(update[j]))
    return out


@jit.njit(cache=True, nogil=True)
def _iterations_kernel(
    mean_v: np.ndarray,
    comp_v: np.ndarray,
    comp_v64: np.ndarray,
    glob: np.ndarray,
    loc: np.ndarray,
    target: np.ndarray,
    reg: np.ndarray,
    curr_error: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The Gauss-Newton loop of :func:`calc_params` in one call, without the GIL.

    Same operations as the NumPy/OpenCV loop there, with NumPy's BLAS
    (:mod:`pyfaceau.blas`) and the bit-exact replicas of ``cv::solve``, ``cv::SVD`` and
    ``cv::Rodrigues``: the same bits. Returns float32 ``(params_global, params_local)``.
    """
    not_improved = 0
    for _ in range(CALC_PARAMS_MAX_ITER):
        comp_loc = blas.dgemv(comp_v64, loc.astype(np.float64)).reshape((-1, 1))
        shape_3d, jac, jac_w_t, rhs = _step_kernel(
            mean_v, comp_loc, shape_3d_kernel(mean_v, comp_v, loc), comp_v, glob, target,
            reg, loc,
        )
        hessian = blas.sgemm_nn(jac_w_t, jac)
        add_diagonal_kernel(hessian, reg)
        _, update = cholesky_solve_f32(hessian, rhs)
        update = _damp_kernel(update, CALC_PARAMS_STEP)
        glob, loc = update_kernel(update, loc, glob)
        error = _error_kernel(shape_3d, glob, target)
        if CALC_PARAMS_IMPROVEMENT * curr_error < error:
            not_improved += 1
            if not_improved == CALC_PARAMS_PATIENCE:
                break
        curr_error = error
    return glob, loc


#: Landmarks :func:`calc_params` needs visible (x other than 0, as OpenFace marks them).
MIN_VISIBLE_LANDMARKS = 2


def fittable(landmarks: np.ndarray) -> np.ndarray:
    """Whether :func:`calc_params` can fit ``landmarks`` (``(..., n, 2)`` pixels): at
    least :data:`MIN_VISIBLE_LANDMARKS` with x other than 0; bool, one per landmark set."""
    return (np.asarray(landmarks)[..., 0] != 0).sum(axis=-1) >= MIN_VISIBLE_LANDMARKS


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
    if n < MIN_VISIBLE_LANDMARKS:
        raise InputError(f"landmarks_2d: {n} visible landmarks (x != 0), need at least "
                         f"{MIN_VISIBLE_LANDMARKS}")
    mean_v, comp_v, comp_v64, model_w, model_h, reg = _visible_model(pdm, visible)
    target = np.concatenate([lm32[visible, 0], lm32[visible, 1]])  # (2n,) column layout

    # Initial global parameters from the bounding boxes.
    min_x, max_x = target[:n].min(), target[:n].max()
    min_y, max_y = target[n:].min(), target[n:].max()
    width = _F32(abs(min_x - max_x))
    height = _F32(abs(min_y - max_y))
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
    shape_3d = mean_v + (comp_v64 @ loc.astype(np.float64)[:, None]).astype(_F32)[:, 0]
    sx, sy, sz = shape_3d[:n], shape_3d[n : 2 * n], shape_3d[2 * n :]
    cur = np.concatenate(
        [
            scaling * (r[0, 0] * sx + r[0, 1] * sy + r[0, 2] * sz) + tx,
            scaling * (r[1, 0] * sx + r[1, 1] * sy + r[1, 2] * sz) + ty,
        ]
    ).astype(_F32)
    curr_error = _norm_kernel(cur, target)

    if blas.AVAILABLE:
        glob, loc = _iterations_kernel(
            mean_v, comp_v, comp_v64, glob, loc, target, reg, curr_error
        )
        return glob.astype(np.float64), loc.astype(np.float64)

    sub = PDM(mean_shape=mean_v[:, None], princ_comp=comp_v, eigen_values=pdm.eigen_values)
    reg_mat = np.diag(reg)

    not_improved = 0
    for _ in range(CALC_PARAMS_MAX_ITER):
        # The 3D shape from a double product (cv::Mat), while ComputeJacobian forms its
        # own with a float32 (BLAS) product.
        shape_3d, jac, jac_w_t, rhs = _step_kernel(
            mean_v, comp_v64 @ loc.astype(np.float64)[:, None], sub.shape_3d_f32(loc),
            comp_v, glob, target, reg, loc,
        )
        # OpenFace forms the Hessian with BLAS sgemm: float32.
        hessian = jac_w_t @ jac
        hessian += reg_mat
        _, update = cv2.solve(hessian, rhs[:, None], flags=cv2.DECOMP_CHOLESKY)
        update = _damp_kernel(update.reshape(-1), CALC_PARAMS_STEP)
        glob, loc = sub.update_f32(update, loc, glob)

        # OpenFace measures the error with the updated global parameters but the 3D shape
        # from before this update of the local parameters.
        error = _error_kernel(shape_3d, glob, target)
        if CALC_PARAMS_IMPROVEMENT * curr_error < error:
            not_improved += 1
            if not_improved == CALC_PARAMS_PATIENCE:
                break
        curr_error = error

    return glob.astype(np.float64), loc.astype(np.float64)



def _visible_model(
    pdm: PDM, visible: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float, np.ndarray]:
    """The model restricted to the visible landmarks, cached per PDM and visibility:
    ``(mean (3n,) float32, components (3n, m) float32 and float64, the mean shape's box
    width and height, the regularisation (6 + m,) float32)``. Read-only arrays."""
    cache = pdm.derived_cache("calc_params")
    key = visible.tobytes()
    found = cache.get(key)
    if found is not None:
        return found
    vis3 = np.concatenate([visible, visible, visible])
    mean_v = np.ascontiguousarray(pdm.mean_shape[vis3, 0])  # (3n,)
    comp_v = np.ascontiguousarray(pdm.princ_comp[vis3])  # (3n, m)
    sub = PDM(mean_shape=mean_v[:, None], princ_comp=comp_v, eigen_values=pdm.eigen_values)
    _, _, model_w, model_h = sub.calc_bounding_box((1.0, 0.0, 0.0, 0.0, 0.0, 0.0), None)
    # comp_v in double once: cv::Mat products of floats are formed in double.
    comp_v64 = comp_v.astype(np.float64)
    reg = np.zeros(6 + pdm.n_modes, dtype=_F32)
    reg[6:] = _F32(CALC_PARAMS_REG_FACTOR) / pdm.eigen_values
    for a in (mean_v, comp_v, comp_v64, reg):
        a.setflags(write=False)
    found = (mean_v, comp_v, comp_v64, model_w, model_h, reg)
    if len(cache) < 64:  # visibility patterns seen: normally one or two
        cache[key] = found
    return found
