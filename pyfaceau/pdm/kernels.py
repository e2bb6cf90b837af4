"""The PDM's numba kernels, in OpenFace's column layout (``LandmarkDetector/src/PDM.cpp``).

Public so that the stages that mirror OpenFace's maths on the PDM -- the CLNF fitter
(:mod:`pyfaceau.landmarks.clnf.fitting`) and ``CalcParams`` (:mod:`pyfaceau.pdm.calc_params`)
-- share one copy. They work on pre-validated float32 arrays and check nothing: call the
:class:`~pyfaceau.pdm.PDM` methods unless you write such a kernel yourself.

Layout: a 2D shape is ``(2n,)`` ``[x_0..x_{n-1}, y_0..y_{n-1}]``, a 3D shape ``(3n,)``
``[x.., y.., z..]``, ``params_global`` ``(6,)`` ``[scale, rx, ry, rz, tx, ty]``, all float32.
All are ``nogil`` and allocate their outputs: safe to call from several threads at once.
"""

from __future__ import annotations

import numpy as np

from .. import blas, jit
from .opencv_kernels import rodrigues_matrix_to_vector_f32, svd3x3_f32
from .rotation import (
    _axis_angle_to_rotation_kernel,
    _euler_to_rotation_kernel,
    _matmul33,
    _orthonormalise_kernel,
    _rotation_to_euler_kernel,
)

__all__ = [
    "shape_3d_kernel",
    "add_diagonal_kernel",
    "update_kernel",
    "project_kernel",
    "jacobian_kernel",
    "update_begin_kernel",
    "update_rotation_kernel",
    "update_end_kernel",
    "clamp_kernel",
]


# --------------------------------------------------------------------------------------
# Kernels. The CLNF fitter calls the PDM maths ~150 times per frame; as NumPy one-liners
# most of that time was per-call overhead, so the element-wise float32 maths lives in
# these njit kernels, written in the same order of float32 operations as before (and as
# PDM.cpp), so that the results are bit for bit the same. Products that OpenFace forms
# with BLAS (``princ_comp @ p``, ``J_w^T J``) stay NumPy calls: their summation order is
# OpenBLAS's and cannot be reproduced in a loop.
# --------------------------------------------------------------------------------------
@jit.njit(cache=True, nogil=True)
def project_kernel(s3: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``CalcShape2D`` from the 3D shape: (3n,) float32 and (6,) float32 -> (2n,) float32."""
    n = s3.shape[0] // 3
    r = _euler_to_rotation_kernel(g[1], g[2], g[3])
    out = np.empty(2 * n, dtype=np.float32)
    for i in range(n):
        x = s3[i]
        y = s3[n + i]
        z = s3[2 * n + i]
        out[i] = g[0] * (r[0, 0] * x + r[0, 1] * y + r[0, 2] * z) + g[4]
        out[n + i] = g[0] * (r[1, 0] * x + r[1, 1] * y + r[1, 2] * z) + g[5]
    return out


@jit.njit(cache=True, nogil=True)
def jacobian_kernel(
    s3: np.ndarray,
    princ_comp: np.ndarray,
    g: np.ndarray,
    w: np.ndarray,
    apply_weights: bool,
    rigid: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """``ComputeRigidJacobian`` (``rigid``) or ``ComputeJacobian``, and ``(W J)^T``.

    ``s3`` (3n,) float32 3D shape, ``g`` (6,) float32, ``w`` (2n,) float32 weights used
    when ``apply_weights``. Returns ``(2n, k)`` and ``(k, 2n)`` float32, k = 6 or 6 + m.
    """
    n = s3.shape[0] // 3
    m = princ_comp.shape[1]
    k = 6 if rigid else 6 + m
    r = _euler_to_rotation_kernel(g[1], g[2], g[3])
    s = g[0]
    jac = np.empty((2 * n, k), dtype=np.float32)
    for i in range(n):
        x = s3[i]
        y = s3[n + i]
        z = s3[2 * n + i]
        jx = jac[i]
        jy = jac[n + i]
        # Small-angle derivative of R @ R' with R' = [[1, -wz, wy], [wz, 1, -wx],
        # [-wy, wx, 1]]: the order of the float32 products follows PDM.cpp.
        jx[0] = x * r[0, 0] + y * r[0, 1] + z * r[0, 2]
        jy[0] = x * r[1, 0] + y * r[1, 1] + z * r[1, 2]
        jx[1] = s * (y * r[0, 2] - z * r[0, 1])
        jy[1] = s * (y * r[1, 2] - z * r[1, 1])
        jx[2] = -s * (x * r[0, 2] - z * r[0, 0])
        jy[2] = -s * (x * r[1, 2] - z * r[1, 0])
        jx[3] = s * (x * r[0, 1] - y * r[0, 0])
        jy[3] = s * (x * r[1, 1] - y * r[1, 0])
        jx[4] = 1.0
        jy[4] = 0.0
        jx[5] = 0.0
        jy[5] = 1.0
        if not rigid:
            # How a shape mode moves the projected points, once rotated and scaled.
            for j in range(m):
                vx = princ_comp[i, j]
                vy = princ_comp[n + i, j]
                vz = princ_comp[2 * n + i, j]
                jx[6 + j] = s * (r[0, 0] * vx + r[0, 1] * vy + r[0, 2] * vz)
                jy[6 + j] = s * (r[1, 0] * vx + r[1, 1] * vy + r[1, 2] * vz)
    jac_w_t = np.empty((k, 2 * n), dtype=np.float32)
    for row in range(2 * n):
        for c in range(k):
            jac_w_t[c, row] = jac[row, c] * w[row] if apply_weights else jac[row, c]
    return jac, jac_w_t


@jit.njit(cache=True, nogil=True)
def update_begin_kernel(d: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First half of ``UpdateModelParameters``: scale and translation, and ``R'``."""
    g2 = g.copy()
    g2[0] += d[0]
    g2[4] += d[4]
    g2[5] += d[5]
    r2 = np.zeros((3, 3), dtype=np.float32)
    r2[0, 0] = 1.0
    r2[1, 1] = 1.0
    r2[2, 2] = 1.0
    r2[2, 1] = d[1]
    r2[1, 2] = -d[1]
    r2[0, 2] = d[2]
    r2[2, 0] = -d[2]
    r2[1, 0] = d[3]
    r2[0, 1] = -d[3]
    return g2, r2


@jit.njit(cache=True, nogil=True)
def update_rotation_kernel(g: np.ndarray, u: np.ndarray, vt: np.ndarray) -> np.ndarray:
    """``R1 @ Orthonormalise(R')`` from the SVD factors of ``R'`` (float32 (3, 3))."""
    r1 = _euler_to_rotation_kernel(g[1], g[2], g[3])
    return _matmul33(r1, _orthonormalise_kernel(u, vt))


@jit.njit(cache=True, nogil=True)
def update_end_kernel(
    g: np.ndarray, axis_angle: np.ndarray, p: np.ndarray, d: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Last half of ``UpdateModelParameters``: Euler angles and the local parameters."""
    euler = _rotation_to_euler_kernel(_axis_angle_to_rotation_kernel(axis_angle))
    if np.isnan(euler[0]) or np.isnan(euler[1]) or np.isnan(euler[2]):
        euler[:] = 0.0  # OpenFace's "temporary fix" for instability
    g[1] = euler[0]
    g[2] = euler[1]
    g[3] = euler[2]
    p2 = p.copy()
    if d.shape[0] > 6:
        for j in range(p.shape[0]):
            p2[j] = p[j] + d[6 + j]
    return g, p2


@jit.njit(cache=True, nogil=True)
def clamp_kernel(p: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """``PDM::Clamp`` of float32 local parameters to +-``limit``."""
    out = p.copy()
    for j in range(p.shape[0]):
        if abs(p[j]) > limit[j]:
            out[j] = limit[j] if p[j] > 0 else -limit[j]
    return out


# The two kernels below call NumPy's BLAS and OpenCV's SVD/Rodrigues replicas: only for
# callers that checked :data:`pyfaceau.blas.AVAILABLE` (the NumPy paths otherwise).
@jit.njit(cache=True, nogil=True)
def shape_3d_kernel(mean_flat: np.ndarray, princ_comp: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``CalcShape3D``: ``mean + princ_comp @ p`` with NumPy's BLAS sgemv, (3n,) float32."""
    return mean_flat + blas.sgemv(princ_comp, p)


@jit.njit(cache=True, nogil=True)
def update_kernel(
    d: np.ndarray, p: np.ndarray, g: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``UpdateModelParameters`` in one call: float32 ``(params_global, params_local)``.

    ``d`` is the (6,) or (6 + m,) float32 update, ``p`` the (m,) local and ``g`` the (6,)
    global parameters (not modified). ``cv::SVD`` of ``R'`` and ``cv::Rodrigues`` of
    ``R1 R2`` are the bit-exact replicas of :mod:`pyfaceau.pdm.opencv_kernels`.
    """
    g2, r2 = update_begin_kernel(d, g)
    _, u, vt = svd3x3_f32(r2)
    r3 = update_rotation_kernel(g2, u, vt)
    axis_angle = rodrigues_matrix_to_vector_f32(r3)
    return update_end_kernel(g2, axis_angle, p, d)


@jit.njit(cache=True, nogil=True)
def add_diagonal_kernel(hessian: np.ndarray, reg: np.ndarray) -> None:
    """``hessian += np.diag(reg)`` in place on float32 (k, k): the off-diagonals get
    ``+ 0`` as in NumPy's add (so a ``-0.0`` becomes ``+0.0`` there too)."""
    k = hessian.shape[0]
    for i in range(k):
        for j in range(k):
            hessian[i, j] = hessian[i, j] + (reg[i] if i == j else np.float32(0.0))
