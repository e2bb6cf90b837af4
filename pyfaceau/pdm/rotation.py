"""Rotation conversions as OpenFace's ``Utilities/include/RotationHelpers.h`` does them.

OpenFace's Euler convention is XYZ: ``R = Rx(pitch) @ Ry(yaw) @ Rz(roll)``, angles in
radians, and everything is computed in single precision (``cv::Matx33f``, ``cv::Vec3f``).
These helpers return ``float32`` arrays so that callers that mirror OpenFace's maths keep
its rounding; callers that want float64 convert at their boundary.

Axis-angle conversions go through ``cv2.Rodrigues`` exactly as OpenFace's
``cv::Rodrigues`` calls do (same OpenCV code, same float32 inputs); the vector-to-matrix
direction, a closed formula, is OpenCV's code ported to a numba kernel (same double
operations in the same order, so the same float32 results).

The small kernels (``_*_kernel``) are numba-compiled so that the CLNF fitter's hot loop
can call them without NumPy's per-call overhead; each was checked to give bit-identical
results to the NumPy/OpenCV expressions it replaced.
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

from .. import jit
from ..libm import fma as _fma
from .opencv_kernels import svd2x2_f32

__all__ = [
    "align_shapes_with_scale",
    "align_shapes_with_scale_kernel",
    "euler_to_rotation_matrix",
    "rotation_matrix_to_euler",
    "euler_to_axis_angle",
    "axis_angle_to_euler",
    "axis_angle_to_rotation_matrix",
    "rotation_matrix_to_axis_angle",
    "orthonormalise",
]

_F32 = np.float32


@jit.njit(cache=True, nogil=True)
def _matmul33(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float32 ``a @ b`` of (3, 3) matrices as NumPy's BLAS (OpenBLAS) forms it.

    OpenBLAS's small-matrix sgemm accumulates each element over ``k`` in order with
    fused multiply-adds; this reproduces its results bit for bit (checked on 20 000 random
    matrices), without the cost of a NumPy call per 3x3 product.
    """
    out = np.empty((3, 3), dtype=np.float32)
    for i in range(3):
        for j in range(3):
            acc = np.float32(0.0)
            for k in range(3):
                acc = _fma(a[i, k], b[k, j], acc)
            out[i, j] = acc
    return out


def euler_to_rotation_matrix(euler: Sequence[float] | np.ndarray) -> np.ndarray:
    """OpenFace's ``Euler2RotationMatrix``: XYZ Euler angles to a rotation matrix.

    Parameters
    ----------
    euler : (3,) array-like, radians ``[pitch (x), yaw (y), roll (z)]``; rounded to
        float32 first, as OpenFace's ``cv::Vec3f`` argument is.

    Returns
    -------
    (3, 3) float32 rotation matrix ``Rx @ Ry @ Rz``.

    Notes
    -----
    Matches OpenFace: the sines and cosines are rounded to float32 and the products are
    formed in float32, in the same order as ``RotationHelpers.h``.
    """
    e = np.asarray(euler, dtype=_F32).reshape(3)
    return _euler_to_rotation_kernel(e[0], e[1], e[2])


@jit.njit(cache=True, nogil=True)
def _euler_to_rotation_kernel(e1: np.float32, e2: np.float32, e3: np.float32) -> np.ndarray:
    """Kernel of :func:`euler_to_rotation_matrix` (float32 angles, float32 products)."""
    # sin/cos of a float argument: computed in double then rounded, like C's sin(float)
    # promoted through <cmath>; the float32 rounding of the result is what matters.
    s1 = np.float32(math.sin(np.float64(e1)))
    s2 = np.float32(math.sin(np.float64(e2)))
    s3 = np.float32(math.sin(np.float64(e3)))
    c1 = np.float32(math.cos(np.float64(e1)))
    c2 = np.float32(math.cos(np.float64(e2)))
    c3 = np.float32(math.cos(np.float64(e3)))
    r = np.empty((3, 3), dtype=np.float32)
    r[0, 0] = c2 * c3
    r[0, 1] = -c2 * s3
    r[0, 2] = s2
    r[1, 0] = c1 * s3 + c3 * s1 * s2
    r[1, 1] = c1 * c3 - s1 * s2 * s3
    r[1, 2] = -c2 * s1
    r[2, 0] = s1 * s3 - c1 * c3 * s2
    r[2, 1] = c3 * s1 + c1 * s2 * s3
    r[2, 2] = c1 * c2
    return r


def rotation_matrix_to_euler(rotation: np.ndarray) -> np.ndarray:
    """OpenFace's ``RotationMatrix2Euler`` (through a quaternion, in float32).

    Parameters
    ----------
    rotation : (3, 3) rotation matrix (rounded to float32).

    Returns
    -------
    (3,) float32 ``[pitch, yaw, roll]`` radians.
    """
    r = np.ascontiguousarray(rotation, dtype=_F32)
    return _rotation_to_euler_kernel(r)


@jit.njit(cache=True, nogil=True)
def _rotation_to_euler_kernel(r: np.ndarray) -> np.ndarray:
    """Kernel of :func:`rotation_matrix_to_euler` ((3, 3) float32 in, (3,) float32 out)."""
    two = np.float32(2.0)
    four = np.float32(4.0)
    one = np.float32(1.0)
    q0 = np.float32(math.sqrt(one + r[0, 0] + r[1, 1] + r[2, 2])) / two
    q1 = (r[2, 1] - r[1, 2]) / (four * q0)
    q2 = (r[0, 2] - r[2, 0]) / (four * q0)
    q3 = (r[1, 0] - r[0, 1]) / (four * q0)
    # OpenFace clamps t1 to [-1, 1] against rounding before the asin.
    t1 = two * (q0 * q2 + q1 * q3)
    t1 = min(max(t1, -one), one)
    out = np.empty(3, dtype=np.float32)
    out[1] = np.float32(math.asin(np.float64(t1)))
    out[0] = np.float32(
        math.atan2(
            np.float64(two * (q0 * q1 - q2 * q3)),
            np.float64(q0 * q0 - q1 * q1 - q2 * q2 + q3 * q3),
        )
    )
    out[2] = np.float32(
        math.atan2(
            np.float64(two * (q0 * q3 - q1 * q2)),
            np.float64(q0 * q0 + q1 * q1 - q2 * q2 - q3 * q3),
        )
    )
    return out


def axis_angle_to_rotation_matrix(axis_angle: Sequence[float] | np.ndarray) -> np.ndarray:
    """OpenFace's ``AxisAngle2RotationMatrix`` (``cv::Rodrigues``), (3,) -> (3, 3) float32."""
    v = np.asarray(axis_angle, dtype=_F32).reshape(3)
    return _axis_angle_to_rotation_kernel(v)


@jit.njit(cache=True, nogil=True)
def _axis_angle_to_rotation_kernel(v: np.ndarray) -> np.ndarray:
    """Kernel of :func:`axis_angle_to_rotation_matrix`: OpenCV's ``Rodrigues`` (vector to
    matrix) in its own order of double operations, rounded to float32 at the end."""
    rx = np.float64(v[0])
    ry = np.float64(v[1])
    rz = np.float64(v[2])
    theta = math.sqrt(rx * rx + ry * ry + rz * rz)
    out = np.zeros((3, 3), dtype=np.float32)
    if theta < 2.220446049250313e-16:  # DBL_EPSILON: the identity, as OpenCV
        out[0, 0] = 1.0
        out[1, 1] = 1.0
        out[2, 2] = 1.0
        return out
    c = math.cos(theta)
    s = math.sin(theta)
    c1 = 1.0 - c
    itheta = 1.0 / theta
    rx *= itheta
    ry *= itheta
    rz *= itheta
    rrt = (rx * rx, rx * ry, rx * rz, rx * ry, ry * ry, ry * rz, rx * rz, ry * rz, rz * rz)
    r_x = (0.0, -rz, ry, rz, 0.0, -rx, -ry, rx, 0.0)
    eye = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    for k in range(9):
        out[k // 3, k % 3] = np.float32(c * eye[k] + c1 * rrt[k] + s * r_x[k])
    return out


def rotation_matrix_to_axis_angle(rotation: np.ndarray) -> np.ndarray:
    """OpenFace's ``RotationMatrix2AxisAngle`` (``cv::Rodrigues``), (3, 3) -> (3,) float32."""
    r = np.ascontiguousarray(rotation, dtype=_F32)
    return cv2.Rodrigues(r)[0].astype(_F32).reshape(3)


def euler_to_axis_angle(euler: Sequence[float] | np.ndarray) -> np.ndarray:
    """OpenFace's ``Euler2AxisAngle``, (3,) radians -> (3,) float32 axis-angle."""
    return rotation_matrix_to_axis_angle(euler_to_rotation_matrix(euler))


def axis_angle_to_euler(axis_angle: Sequence[float] | np.ndarray) -> np.ndarray:
    """OpenFace's ``AxisAngle2Euler``, (3,) axis-angle -> (3,) float32 ``[pitch, yaw, roll]``."""
    return rotation_matrix_to_euler(axis_angle_to_rotation_matrix(axis_angle))


def orthonormalise(rotation: np.ndarray) -> np.ndarray:
    """OpenFace's ``PDM::Orthonormalise``: nearest rotation to a 3x3 matrix, via SVD.

    Parameters
    ----------
    rotation : (3, 3) matrix (rounded to float32).

    Returns
    -------
    (3, 3) float32 ``U @ diag(1, 1, det(U V^T)) @ V^T`` (no reflection).

    Notes
    -----
    Uses ``cv2.SVDecomp`` on float32, the same Jacobi SVD as OpenFace's ``cv::SVD``.
    """
    r = np.ascontiguousarray(rotation, dtype=_F32)
    _, u, vt = cv2.SVDecomp(r)
    return _orthonormalise_kernel(u, vt)


@jit.njit(cache=True, nogil=True)
def _det33(x: np.ndarray) -> np.float64:
    """OpenCV's ``determinant`` of a (3, 3) float32 matrix (double products and sums)."""
    return (
        x[0, 0] * (np.float64(x[1, 1]) * x[2, 2] - np.float64(x[1, 2]) * x[2, 1])
        - x[0, 1] * (np.float64(x[1, 0]) * x[2, 2] - np.float64(x[1, 2]) * x[2, 0])
        + x[0, 2] * (np.float64(x[1, 0]) * x[2, 1] - np.float64(x[1, 1]) * x[2, 0])
    )


@jit.njit(cache=True, nogil=True)
def _orthonormalise_kernel(u: np.ndarray, vt: np.ndarray) -> np.ndarray:
    """Kernel of :func:`orthonormalise` from the float32 SVD factors ``u`` and ``vt``."""
    x = _matmul33(u, vt)
    w = np.zeros((3, 3), dtype=np.float32)
    w[0, 0] = 1.0
    w[1, 1] = 1.0
    w[2, 2] = np.float32(_det33(x))
    return _matmul33(_matmul33(u, w), vt)


def align_shapes_with_scale(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """OpenFace's ``Utilities::AlignShapesWithScale`` (Kabsch with scale, no translation).

    Parameters
    ----------
    src : (n, 2) points to align (float32 in OpenFace).
    dst : (n, 2) points to align onto.

    Returns
    -------
    (2, 2) float32 ``A = s R`` minimising ``|A (src - mean) - (dst - mean)|``.

    Notes
    -----
    Matches ``RotationHelpers.h``: means and scales in float32 from double sums, a
    reflection-free rotation from OpenCV's SVD of the float32 ``src_n.T @ dst_n``.
    """
    src = np.ascontiguousarray(src, dtype=_F32)
    dst = np.ascontiguousarray(dst, dtype=_F32)
    s, cov = _kabsch_prepare(src, dst)
    # OpenFace takes cv::SVD of the float32 product (AlignShapesKabsch2D); its last bits
    # move the aligned face by a grey level here and there, which some AU SVMs notice.
    _, u, vt = cv2.SVDecomp(cov.astype(np.float32))
    return _kabsch_finish(s, u.astype(np.float64), vt.astype(np.float64))


@jit.njit(cache=True, nogil=True)
def align_shapes_with_scale_kernel(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """:func:`align_shapes_with_scale` on contiguous float32 (n, 2) arrays, in numba: the
    same bits, with the replica of ``cv::SVD`` (:func:`~.opencv_kernels.svd2x2_f32`)."""
    s, cov = _kabsch_prepare(src, dst)
    _, u, vt = svd2x2_f32(cov.astype(np.float32))
    return _kabsch_finish(s, u.astype(np.float64), vt.astype(np.float64))


@jit.njit(cache=True, nogil=True)
def _pairwise_sum_sq(x: np.ndarray) -> float:
    """``np.sum(x * x, dtype=np.float64)`` of a contiguous float32 array, bit for bit:
    the squares in float32, then NumPy's pairwise summation in double (blocks of 128,
    eight interleaved partial sums)."""
    return _pairwise(x.ravel(), 0, x.size)


@jit.njit(cache=True, nogil=True)
def _pairwise_block(x: np.ndarray, start: int, n: int) -> float:
    """A leaf of NumPy's ``pairwise_sum`` (n <= 128) of float32 squares, in double."""
    if n < 8:
        res = 0.0
        for i in range(start, start + n):
            res += np.float64(x[i] * x[i])
        return res
    r = np.empty(8, dtype=np.float64)
    for j in range(8):
        r[j] = np.float64(x[start + j] * x[start + j])
    i = 8
    while i < n - (n % 8):
        for j in range(8):
            r[j] += np.float64(x[start + i + j] * x[start + i + j])
        i += 8
    res = (r[0] + r[1]) + (r[2] + r[3]) + ((r[4] + r[5]) + (r[6] + r[7]))
    for k in range(i, n):
        res += np.float64(x[start + k] * x[start + k])
    return res


@jit.njit(cache=True, nogil=True)
def _pairwise(x: np.ndarray, start: int, n: int) -> float:
    """NumPy's ``pairwise_sum`` (``loops_utils.h``) of float32 squares, in double.

    Segments longer than 128 are split in two (the first part a multiple of 8 long) and
    the two sums added; evaluated with an explicit stack (numba caches no recursion).
    """
    seg_start = np.empty(128, dtype=np.int64)
    seg_len = np.empty(128, dtype=np.int64)
    seg_done = np.zeros(128, dtype=np.bool_)
    values = np.empty(128, dtype=np.float64)
    top = 0
    nv = 0
    seg_start[0] = start
    seg_len[0] = n
    seg_done[0] = False
    top = 1
    while top > 0:
        top -= 1
        s0 = seg_start[top]
        n0 = seg_len[top]
        if n0 <= 128:
            values[nv] = _pairwise_block(x, s0, n0)
            nv += 1
        elif seg_done[top]:
            nv -= 1
            values[nv - 1] = values[nv - 1] + values[nv]
        else:
            n2 = n0 // 2
            n2 -= n2 % 8
            seg_done[top] = True
            top += 1
            seg_start[top] = s0 + n2
            seg_len[top] = n0 - n2
            seg_done[top] = False
            top += 1
            seg_start[top] = s0
            seg_len[top] = n2
            seg_done[top] = False
            top += 1
    return values[0]


@jit.njit(cache=True, nogil=True)
def _kabsch_prepare(src: np.ndarray, dst: np.ndarray) -> tuple[np.float32, np.ndarray]:
    """Centre and normalise both shapes; returns the scale ``s_dst / s_src`` and the
    (2, 2) float64 matrix ``src_n.T @ dst_n`` whose SVD gives the rotation."""
    n = src.shape[0]
    # Column means: NumPy's axis-0 reduction adds the rows in order, in double.
    sm0 = 0.0
    sm1 = 0.0
    dm0 = 0.0
    dm1 = 0.0
    for i in range(n):
        sm0 += np.float64(src[i, 0])
        sm1 += np.float64(src[i, 1])
        dm0 += np.float64(dst[i, 0])
        dm1 += np.float64(dst[i, 1])
    sm0f = np.float32(sm0 / n)
    sm1f = np.float32(sm1 / n)
    dm0f = np.float32(dm0 / n)
    dm1f = np.float32(dm1 / n)
    src_c = np.empty((n, 2), dtype=np.float32)
    dst_c = np.empty((n, 2), dtype=np.float32)
    for i in range(n):
        src_c[i, 0] = src[i, 0] - sm0f
        src_c[i, 1] = src[i, 1] - sm1f
        dst_c[i, 0] = dst[i, 0] - dm0f
        dst_c[i, 1] = dst[i, 1] - dm1f
    s_src = np.float32(math.sqrt(_pairwise_sum_sq(src_c) / n))
    s_dst = np.float32(math.sqrt(_pairwise_sum_sq(dst_c) / n))
    # src_n.T @ dst_n: OpenBLAS's small-matrix sgemm, an in-order chain of fused
    # multiply-adds per element (reproduced bit for bit).
    cov = np.empty((2, 2), dtype=np.float64)
    for a in range(2):
        for b in range(2):
            acc = np.float32(0.0)
            for i in range(n):
                acc = _fma(src_c[i, a] / s_src, dst_c[i, b] / s_dst, acc)
            cov[a, b] = np.float64(acc)
    return s_dst / s_src, cov


@jit.njit(cache=True, nogil=True)
def _matmul22(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 (2, 2) product as OpenBLAS's small-matrix dgemm (in-order FMA chain)."""
    out = np.empty((2, 2), dtype=np.float64)
    for i in range(2):
        for j in range(2):
            acc = 0.0
            for k in range(2):
                acc = _fma(a[i, k], b[k, j], acc)
            out[i, j] = acc
    return out


@jit.njit(cache=True, nogil=True)
def _kabsch_finish(s: np.float32, u: np.ndarray, vt: np.ndarray) -> np.ndarray:
    """``s * V diag(1, sign det(V U^T)) U^T`` as float32 (2, 2)."""
    v = np.ascontiguousarray(vt.T)
    ut = np.ascontiguousarray(u.T)
    m = _matmul22(v, ut)
    det = m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]  # +-1: only its sign is used
    corr = np.zeros((2, 2), dtype=np.float64)
    corr[0, 0] = 1.0
    corr[1, 1] = 1.0 if det > 0 else -1.0
    rot = _matmul22(_matmul22(v, corr), ut)
    out = np.empty((2, 2), dtype=np.float32)
    for i in range(2):
        for j in range(2):
            out[i, j] = s * np.float32(rot[i, j])
    return out
