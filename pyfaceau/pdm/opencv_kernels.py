"""Bit-exact numba replicas of the OpenCV calls made in the CLNF / CalcParams loops.

So that the whole Gauss-Newton loop can run in numba without the GIL, the OpenCV calls
are re-written here as ``@jit.njit(nogil=True, cache=True)`` kernels that give the same
bits as opencv-python (checked against ``cv2`` by ``tests/test_opencv_kernels.py``):

``svd3x3_f32``
    ``cv2.SVDecomp(a)`` (flags 0) of a float32 (3, 3) matrix: ``cv::SVD::compute`` ->
    ``_SVDcompute`` (modules/core/src/lapack.cpp; m = n = 3, so no swap: it works on
    ``At = transpose(a)`` and returns ``u = transpose(At)``) -> ``hal::SVD32f`` ->
    ``JacobiSVDImpl_<float>`` (one-sided Jacobi with a double ``W`` buffer,
    ``eps = 2 FLT_EPSILON``, ``minval = FLT_MIN``, ``n1 = 3``), including the descending
    sort and the completion of ``U`` for zero singular values from ``cv::RNG(0x12345678)``.
    The LAPACK HAL (OpenBLAS) only takes over from m = 25, and the ``VBLAS<float>`` SIMD
    helper returns 0 for rows shorter than 4, so the scalar loops run.
``svd2x2_f32``
    ``cv2.SVDecomp(a)`` of a float32 (2, 2) matrix: the same code path with m = n = 2
    (``n1 = 2``, RNG completion vectors of +-1/2), as used on the 2x2 cross-covariance
    of two normalised point sets (Kabsch / Umeyama alignment).
``svd3x3_f64``
    The same for float64 (``JacobiSVDImpl_<double>``, ``eps = 10 DBL_EPSILON``,
    ``minval = DBL_MIN``), as ``cv::Rodrigues`` calls it. ``VBLAS<double>::givens`` rotates
    two elements of the ``Vt`` rows with SSE2 mul and add: the same roundings as the
    scalar ``c*x + s*y`` (no FMA at the SSE3 baseline).
``rodrigues_matrix_to_vector_f32``
    ``cv2.Rodrigues(R)`` of a float32 (3, 3) matrix (``cv::Rodrigues`` in
    modules/calib3d/src/calibration_base.cpp, calibration.cpp in older 4.x; the matrix ->
    vector branch): ``checkRange`` guard, double SVD, ``R = U*Vt`` (``Matx33d`` product),
    then the trace / acos formula with its special cases (``s < 1e-5``: angle 0 or pi),
    rounded to float32.
``cholesky_solve_f32``
    ``cv2.solve(A, b, flags=cv2.DECOMP_CHOLESKY)`` for a float32 (k, k) system:
    ``cv::solve`` (lapack.cpp) -> ``hal::Cholesky32f`` -> ``CholImpl<float>``
    (modules/core/src/matrix_decomp.cpp): a ``double`` accumulator from which float*float
    products (rounded to float first, as in C++) are subtracted, except the diagonal whose
    squares are double products; the diagonal is stored as inverse square roots. For
    k <= 3 ``cv::solve`` uses Cramer's rule instead (replicated too). LAPACK only takes
    over from k = 100.

The order and the precision (float32 vs float64) of every operation follow the C++ code.
numba does not fuse ``a*b + c`` into an FMA without ``fastmath`` (not used here), and the
opencv-python 4.14 wheel compiles lapack.cpp, matrix_decomp.cpp and calibration_base.cpp
for its SSE3 baseline (not CPU-dispatched), so there is no FMA there either: the results
are identical with ``OPENCV_CPU_DISABLE=AVX2,FMA3,AVX,FP16``. (Newer OpenCV sources move
the Jacobi SVD to a CPU-dispatched ``lapack.simd.hpp`` whose AVX2/AVX-512 builds may fuse;
``tests/test_opencv_kernels.py`` would catch such a change on upgrade.)
``error_model="numpy"`` gives C++'s IEEE division (inf/NaN instead of an exception).
"""

from __future__ import annotations

import numpy as np

from .. import jit

__all__ = [
    "svd2x2_f32",
    "svd3x3_f32",
    "svd3x3_f64",
    "rodrigues_matrix_to_vector_f32",
    "cholesky_solve_f32",
]

_FLT_EPSILON = np.float32(np.finfo(np.float32).eps)
_FLT_MIN = float(np.finfo(np.float32).tiny)
_DBL_EPSILON = float(np.finfo(np.float64).eps)
_DBL_MIN = float(np.finfo(np.float64).tiny)
_F32_ZERO = np.float32(0.0)
_F32_ONE = np.float32(1.0)


# --------------------------------------------------------------------------------------
# cv::RNG (core/include/opencv2/core/operations.hpp): multiply-with-carry, used by the
# SVD to complete the left singular vectors of zero singular values.
# --------------------------------------------------------------------------------------
@jit.njit(cache=True, nogil=True, error_model="numpy")
def _rng_next(state: np.uint64) -> tuple[np.uint64, np.uint32]:
    """``cv::RNG::next``: ``state = (uint32)state * 4164903690 + (state >> 32)``."""
    lo = state & np.uint64(0xFFFFFFFF)
    hi = state >> np.uint64(32)
    state = lo * np.uint64(4164903690) + hi
    return state, np.uint32(state & np.uint64(0xFFFFFFFF))


@jit.njit(cache=True, nogil=True, error_model="numpy")
def _hypot_f64(a: float, b: float) -> float:
    """OpenCV's own ``hypot`` template of lapack.cpp (not ``std::hypot``), in double."""
    a = abs(a)
    b = abs(b)
    if a > b:
        b /= a
        return a * np.sqrt(1.0 + b * b)
    if b > 0:
        a /= b
        return b * np.sqrt(1.0 + a * a)
    return 0.0


# --------------------------------------------------------------------------------------
# JacobiSVDImpl_<float> for small square matrices, m = n (lapack.cpp).
# --------------------------------------------------------------------------------------
@jit.njit(cache=True, nogil=True, error_model="numpy")
def _jacobi_svd_f32(at: np.ndarray, vt: np.ndarray, w_out: np.ndarray) -> None:
    """``JacobiSVDImpl_<float>(At, W, Vt, m=n, n, n1=n, FLT_MIN, 2 FLT_EPSILON)``.

    In place: ``at`` (n, n) float32 holds ``A^T`` on entry and ``U^T`` on exit, ``vt``
    (n, n) float32 receives ``V^T``, ``w_out`` (n,) float32 the singular values.
    Checked bit-exact for n in {2, 3} only: the ``VBLAS<float>`` SIMD helpers skip rows
    shorter than 4, but may change the roundings for longer ones (and the LAPACK HAL
    takes over from m = 25).
    """
    n = at.shape[0]  # columns of A
    m = at.shape[1]  # rows of A (= n here: cv2 swaps to m >= n, and n1 = n)
    eps = np.float32(2.0) * _FLT_EPSILON  # _Tp eps = FLT_EPSILON*2
    minval = _FLT_MIN
    w = np.empty(n, dtype=np.float64)  # the double W buffer
    for i in range(n):
        sd = 0.0
        for k in range(m):
            t = at[i, k]
            sd += np.float64(t) * np.float64(t)
        w[i] = sd
        for k in range(n):
            vt[i, k] = _F32_ZERO
        vt[i, i] = _F32_ONE

    for _ in range(max(m, 30)):
        changed = False
        for i in range(n - 1):
            for j in range(i + 1, n):
                a = w[i]
                b = w[j]
                p = 0.0
                for k in range(m):
                    p += np.float64(at[i, k]) * np.float64(at[j, k])
                if abs(p) <= np.float64(eps) * np.sqrt(a * b):
                    continue
                p *= 2.0
                beta = a - b
                gamma = _hypot_f64(p, beta)
                if beta < 0:
                    delta = (gamma - beta) * 0.5
                    s = np.float32(np.sqrt(delta / gamma))
                    c = np.float32(p / (gamma * np.float64(s) * 2.0))
                else:
                    c = np.float32(np.sqrt((gamma + beta) / (gamma * 2.0)))
                    s = np.float32(p / (gamma * np.float64(c) * 2.0))
                a = 0.0
                b = 0.0
                for k in range(m):
                    # float products and sums, as _Tp t0 = c*Ai[k] + s*Aj[k]
                    t0 = c * at[i, k] + s * at[j, k]
                    t1 = -s * at[i, k] + c * at[j, k]
                    at[i, k] = t0
                    at[j, k] = t1
                    a += np.float64(t0) * np.float64(t0)
                    b += np.float64(t1) * np.float64(t1)
                w[i] = a
                w[j] = b
                changed = True
                for k in range(n):
                    t0 = c * vt[i, k] + s * vt[j, k]
                    t1 = -s * vt[i, k] + c * vt[j, k]
                    vt[i, k] = t0
                    vt[j, k] = t1
        if not changed:
            break

    for i in range(n):
        sd = 0.0
        for k in range(m):
            t = at[i, k]
            sd += np.float64(t) * np.float64(t)
        w[i] = np.sqrt(sd)

    for i in range(n - 1):
        j = i
        for k in range(i + 1, n):
            if w[j] < w[k]:
                j = k
        if i != j:
            tmp = w[i]
            w[i] = w[j]
            w[j] = tmp
            for k in range(m):
                tf = at[i, k]
                at[i, k] = at[j, k]
                at[j, k] = tf
            for k in range(n):
                tf = vt[i, k]
                vt[i, k] = vt[j, k]
                vt[j, k] = tf

    for i in range(n):
        w_out[i] = np.float32(w[i])

    # Left singular vectors of zero singular values: random +-1/m vectors from
    # cv::RNG(0x12345678), orthogonalised (twice) against the previous rows.
    state = np.uint64(0x12345678)
    val0 = np.float32(1.0 / m)
    for i in range(n):
        sd = w[i]
        ii = 0
        while ii < 100 and sd <= minval:
            ii += 1
            for k in range(m):
                state, r = _rng_next(state)
                at[i, k] = val0 if (r & np.uint32(256)) != 0 else -val0
            for _it in range(2):
                for j in range(i):
                    sd = 0.0
                    for k in range(m):
                        sd += np.float64(at[i, k] * at[j, k])  # float product
                    asum = _F32_ZERO
                    for k in range(m):
                        t = np.float32(np.float64(at[i, k]) - sd * np.float64(at[j, k]))
                        at[i, k] = t
                        asum += abs(t)
                    if asum > eps * np.float32(100.0):
                        asum = np.float32(_F32_ONE / asum)
                    else:
                        asum = _F32_ZERO
                    for k in range(m):
                        at[i, k] *= asum
            sd = 0.0
            for k in range(m):
                t = at[i, k]
                sd += np.float64(t) * np.float64(t)
            sd = np.sqrt(sd)
        s = np.float32(1.0 / sd) if sd > minval else _F32_ZERO
        for k in range(m):
            at[i, k] *= s


@jit.njit(cache=True, nogil=True, error_model="numpy")
def _svd_square_f32(a: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``cv2.SVDecomp(a)`` of a float32 (n, n) matrix, n in {2, 3}: the shared code path
    of :func:`svd2x2_f32` and :func:`svd3x3_f32`."""
    # _SVDcompute: m = n, so no swap; the kernel works on At = transpose(a) and returns
    # U^T in At; cv2 then hands back transpose(At) and Vt.
    at = np.empty((n, n), dtype=np.float32)
    for i in range(n):
        for j in range(n):
            at[i, j] = a[j, i]
    vt = np.empty((n, n), dtype=np.float32)
    w = np.empty(n, dtype=np.float32)
    _jacobi_svd_f32(at, vt, w)
    u = np.empty((n, n), dtype=np.float32)
    for i in range(n):
        for j in range(n):
            u[i, j] = at[j, i]
    return w, u, vt


@jit.njit(cache=True, nogil=True, error_model="numpy")
def svd3x3_f32(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``cv2.SVDecomp(a)`` of a float32 (3, 3) matrix, bit for bit.

    Parameters
    ----------
    a : (3, 3) float32
        Not modified.

    Returns
    -------
    w : (3,) float32
        Singular values, descending (``cv2`` returns them as (3, 1)).
    u : (3, 3) float32
        Left singular vectors (columns).
    vt : (3, 3) float32
        Right singular vectors (rows), ``a = u @ diag(w) @ vt``.
    """
    return _svd_square_f32(a, 3)


@jit.njit(cache=True, nogil=True, error_model="numpy")
def svd2x2_f32(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``cv2.SVDecomp(a)`` of a float32 (2, 2) matrix, bit for bit.

    Same algorithm as :func:`svd3x3_f32` (``JacobiSVDImpl_<float>`` with m = n = 2,
    ``U`` completed from ``cv::RNG(0x12345678)`` with +-1/2 vectors for zero singular
    values).

    Parameters
    ----------
    a : (2, 2) float32
        Not modified.

    Returns
    -------
    w : (2,) float32
        Singular values, descending (``cv2`` returns them as (2, 1)).
    u : (2, 2) float32
        Left singular vectors (columns).
    vt : (2, 2) float32
        Right singular vectors (rows), ``a = u @ diag(w) @ vt``.
    """
    return _svd_square_f32(a, 2)


# --------------------------------------------------------------------------------------
# JacobiSVDImpl_<double> for m = n = 3, as cv::Rodrigues calls it.
# --------------------------------------------------------------------------------------
@jit.njit(cache=True, nogil=True, error_model="numpy")
def _jacobi_svd_f64(at: np.ndarray, vt: np.ndarray, w_out: np.ndarray) -> None:
    """``JacobiSVDImpl_<double>(At, W, Vt, m=3, n=3, n1=3, DBL_MIN, 10 DBL_EPSILON)``.

    In place, as :func:`_jacobi_svd_f32` but in float64 throughout.
    """
    m = 3
    n = 3
    eps = 10.0 * _DBL_EPSILON
    minval = _DBL_MIN
    w = np.empty(n, dtype=np.float64)
    for i in range(n):
        sd = 0.0
        for k in range(m):
            sd += at[i, k] * at[i, k]
        w[i] = sd
        for k in range(n):
            vt[i, k] = 0.0
        vt[i, i] = 1.0

    for _ in range(max(m, 30)):
        changed = False
        for i in range(n - 1):
            for j in range(i + 1, n):
                a = w[i]
                b = w[j]
                p = 0.0
                for k in range(m):
                    p += at[i, k] * at[j, k]
                if abs(p) <= eps * np.sqrt(a * b):
                    continue
                p *= 2.0
                beta = a - b
                gamma = _hypot_f64(p, beta)
                if beta < 0:
                    delta = (gamma - beta) * 0.5
                    s = np.sqrt(delta / gamma)
                    c = p / (gamma * s * 2.0)
                else:
                    c = np.sqrt((gamma + beta) / (gamma * 2.0))
                    s = p / (gamma * c * 2.0)
                a = 0.0
                b = 0.0
                for k in range(m):
                    t0 = c * at[i, k] + s * at[j, k]
                    t1 = -s * at[i, k] + c * at[j, k]
                    at[i, k] = t0
                    at[j, k] = t1
                    a += t0 * t0
                    b += t1 * t1
                w[i] = a
                w[j] = b
                changed = True
                for k in range(n):
                    t0 = c * vt[i, k] + s * vt[j, k]
                    t1 = -s * vt[i, k] + c * vt[j, k]
                    vt[i, k] = t0
                    vt[j, k] = t1
        if not changed:
            break

    for i in range(n):
        sd = 0.0
        for k in range(m):
            sd += at[i, k] * at[i, k]
        w[i] = np.sqrt(sd)

    for i in range(n - 1):
        j = i
        for k in range(i + 1, n):
            if w[j] < w[k]:
                j = k
        if i != j:
            tmp = w[i]
            w[i] = w[j]
            w[j] = tmp
            for k in range(m):
                tmp = at[i, k]
                at[i, k] = at[j, k]
                at[j, k] = tmp
            for k in range(n):
                tmp = vt[i, k]
                vt[i, k] = vt[j, k]
                vt[j, k] = tmp

    for i in range(n):
        w_out[i] = w[i]

    state = np.uint64(0x12345678)
    val0 = 1.0 / m
    for i in range(n):
        sd = w[i]
        ii = 0
        while ii < 100 and sd <= minval:
            ii += 1
            for k in range(m):
                state, r = _rng_next(state)
                at[i, k] = val0 if (r & np.uint32(256)) != 0 else -val0
            for _it in range(2):
                for j in range(i):
                    sd = 0.0
                    for k in range(m):
                        sd += at[i, k] * at[j, k]
                    asum = 0.0
                    for k in range(m):
                        t = at[i, k] - sd * at[j, k]
                        at[i, k] = t
                        asum += abs(t)
                    asum = 1.0 / asum if asum > eps * 100.0 else 0.0
                    for k in range(m):
                        at[i, k] *= asum
            sd = 0.0
            for k in range(m):
                sd += at[i, k] * at[i, k]
            sd = np.sqrt(sd)
        s = 1.0 / sd if sd > minval else 0.0
        for k in range(m):
            at[i, k] *= s


@jit.njit(cache=True, nogil=True, error_model="numpy")
def svd3x3_f64(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``cv::SVD::compute`` of a float64 (3, 3) matrix (as in ``cv::Rodrigues``).

    Parameters
    ----------
    a : (3, 3) float64
        Not modified.

    Returns
    -------
    w : (3,) float64
    u : (3, 3) float64
    vt : (3, 3) float64
    """
    at = np.empty((3, 3), dtype=np.float64)
    for i in range(3):
        for j in range(3):
            at[i, j] = a[j, i]
    vt = np.empty((3, 3), dtype=np.float64)
    w = np.empty(3, dtype=np.float64)
    _jacobi_svd_f64(at, vt, w)
    u = np.empty((3, 3), dtype=np.float64)
    for i in range(3):
        for j in range(3):
            u[i, j] = at[j, i]
    return w, u, vt


# --------------------------------------------------------------------------------------
# cv::Rodrigues, 3x3 matrix -> rotation vector (calib3d).
# --------------------------------------------------------------------------------------
@jit.njit(cache=True, nogil=True, error_model="numpy")
def rodrigues_matrix_to_vector_f32(r: np.ndarray) -> np.ndarray:
    """``cv2.Rodrigues(r)`` of a float32 (3, 3) rotation matrix, bit for bit.

    Parameters
    ----------
    r : (3, 3) float32
        Not modified.

    Returns
    -------
    (3,) float32
        The axis-angle vector (``cv2`` returns it as (3, 1)); zeros if an element of
        ``r`` is outside [-100, 100] or NaN (OpenCV's ``checkRange`` guard).
    """
    out = np.zeros(3, dtype=np.float32)
    rd = np.empty((3, 3), dtype=np.float64)
    for i in range(3):
        for j in range(3):
            v = np.float64(r[i, j])
            if not (v >= -100.0 and v < 100.0):  # checkRange(R, true, 0, -100, 100)
                return out
            rd[i, j] = v
    _, u, vt = svd3x3_f64(rd)
    # R = U*Vt as Matx33d: s = 0; s += U(i,k)*Vt(k,j) for k = 0..2
    q = np.empty((3, 3), dtype=np.float64)
    for i in range(3):
        for j in range(3):
            acc = 0.0
            for k in range(3):
                acc += u[i, k] * vt[k, j]
            q[i, j] = acc
    rx = q[2, 1] - q[1, 2]
    ry = q[0, 2] - q[2, 0]
    rz = q[1, 0] - q[0, 1]
    s = np.sqrt((rx * rx + ry * ry + rz * rz) * 0.25)
    c = (q[0, 0] + q[1, 1] + q[2, 2] - 1.0) * 0.5
    c = 1.0 if c > 1.0 else (-1.0 if c < -1.0 else c)
    theta = np.arccos(c)
    if s < 1e-5:
        if c > 0:
            rx = 0.0
            ry = 0.0
            rz = 0.0
        else:
            t = (q[0, 0] + 1.0) * 0.5
            rx = np.sqrt(max(t, 0.0))
            t = (q[1, 1] + 1.0) * 0.5
            ry = np.sqrt(max(t, 0.0)) * (-1.0 if q[0, 1] < 0 else 1.0)
            t = (q[2, 2] + 1.0) * 0.5
            rz = np.sqrt(max(t, 0.0)) * (-1.0 if q[0, 2] < 0 else 1.0)
            if abs(rx) < abs(ry) and abs(rx) < abs(rz) and (q[1, 2] > 0) != (ry * rz > 0):
                rz = -rz
            theta /= np.sqrt(rx * rx + ry * ry + rz * rz)  # norm(Point3d)
            rx *= theta
            ry *= theta
            rz *= theta
    else:
        vth = 1.0 / (2.0 * s)
        vth *= theta
        rx *= vth
        ry *= vth
        rz *= vth
    out[0] = np.float32(rx)
    out[1] = np.float32(ry)
    out[2] = np.float32(rz)
    return out


# --------------------------------------------------------------------------------------
# cv::solve(A, b, DECOMP_CHOLESKY) (core lapack.cpp) -> CholImpl<float> (matrix_decomp.cpp)
# --------------------------------------------------------------------------------------
@jit.njit(cache=True, nogil=True, error_model="numpy")
def _solve_small_f32(a: np.ndarray, b: np.ndarray) -> tuple[bool, np.ndarray]:
    """``cv::solve``'s Cramer's-rule branch for k <= 3 (any method but SVD/EIG/QR)."""
    k = a.shape[0]
    x = np.zeros(k, dtype=np.float32)
    if k == 1:
        d = np.float64(a[0, 0])
        if d == 0.0:
            return False, x
        x[0] = np.float32(np.float64(b[0]) / d)
        return True, x
    if k == 2:
        a00 = np.float64(a[0, 0])
        a01 = np.float64(a[0, 1])
        a10 = np.float64(a[1, 0])
        a11 = np.float64(a[1, 1])
        b0 = np.float64(b[0])
        b1 = np.float64(b[1])
        d = a00 * a11 - a01 * a10  # det2: double products
        if d == 0.0:
            return False, x
        d = 1.0 / d
        t = np.float32((b0 * a11 - b1 * a01) * d)
        x[1] = np.float32((b1 * a00 - b0 * a10) * d)
        x[0] = t
        return True, x
    # k == 3: det3 and the three cofactor expansions, with the float/double mix of the
    # C++ (Sf(i,j) are floats; ``(double)x*y`` are double products, ``x*y`` float ones).
    a00 = np.float64(a[0, 0])
    a01 = np.float64(a[0, 1])
    a02 = np.float64(a[0, 2])
    a10 = np.float64(a[1, 0])
    a11 = np.float64(a[1, 1])
    a12 = np.float64(a[1, 2])
    a20 = np.float64(a[2, 0])
    a21 = np.float64(a[2, 1])
    a22 = np.float64(a[2, 2])
    b0 = np.float64(b[0])
    b1 = np.float64(b[1])
    b2 = np.float64(b[2])
    d = (
        a00 * (a11 * a22 - a12 * a21)
        - a01 * (a10 * a22 - a12 * a20)
        + a02 * (a10 * a21 - a11 * a20)
    )
    if d == 0.0:
        return False, x
    d = 1.0 / d
    t0 = np.float32(
        d
        * (
            b0 * (a11 * a22 - a12 * a21)
            - a01 * (b1 * a22 - a12 * b2)
            + a02 * (b1 * a21 - a11 * b2)
        )
    )
    # ``Sf(0,0)*(double)(bf(1)*Sf(2,2) - (double)Sf(1,2)*bf(2))``: bf(1)*Sf(2,2) is a
    # float product in the C++.
    t1 = np.float32(
        d
        * (
            a00 * (np.float64(b[1] * a[2, 2]) - a12 * b2)
            - b0 * (a10 * a22 - a12 * a20)
            + a02 * (a10 * b2 - b1 * a20)
        )
    )
    t2 = np.float32(
        d
        * (
            a00 * (a11 * b2 - b1 * a21)
            - a01 * (a10 * b2 - b1 * a20)
            + b0 * (a10 * a21 - a11 * a20)
        )
    )
    x[0] = t0
    x[1] = t1
    x[2] = t2
    return True, x


@jit.njit(cache=True, nogil=True, error_model="numpy")
def cholesky_solve_f32(a: np.ndarray, b: np.ndarray) -> tuple[bool, np.ndarray]:
    """``cv2.solve(a, b[:, None], flags=cv2.DECOMP_CHOLESKY)``, bit for bit.

    Parameters
    ----------
    a : (k, k) float32
        Symmetric positive definite; only the lower triangle is read (as OpenCV does).
        Not modified (the factorisation works on a copy).
    b : (k,) float32
        Right-hand side. Not modified.

    Returns
    -------
    ok : bool
        False when the factorisation meets a pivot ``s < FLT_EPSILON`` (not positive
        definite enough): ``cv2.solve`` then returns ``(False, zeros)``, and so does this.
        For k <= 3 OpenCV solves by Cramer's rule instead and fails only on a zero
        determinant (then ``cv2`` leaves its output uninitialised; zeros here).
    x : (k,) float32
        The solution (``cv2`` returns it as (k, 1)).
    """
    m = a.shape[0]
    if m <= 3:
        return _solve_small_f32(a, b)
    eps = np.float64(_FLT_EPSILON)
    L = np.empty((m, m), dtype=np.float32)
    for i in range(m):
        for j in range(i + 1):
            L[i, j] = a[i, j]
    x = np.empty(m, dtype=np.float32)
    for i in range(m):
        x[i] = b[i]

    for i in range(m):
        for j in range(i):
            s = np.float64(L[i, j])
            for k in range(j):
                s -= np.float64(L[i, k] * L[j, k])  # float product, as in C++
            L[i, j] = np.float32(s * np.float64(L[j, j]))
        s = np.float64(L[i, i])
        for k in range(i):
            t = np.float64(L[i, k])
            s -= t * t  # double product
        if s < eps:
            return False, np.zeros(m, dtype=np.float32)
        L[i, i] = np.float32(1.0 / np.sqrt(s))  # the inverse of the diagonal

    # L y = b, then L^T x = y (nb = 1)
    for i in range(m):
        s = np.float64(x[i])
        for k in range(i):
            s -= np.float64(L[i, k] * x[k])
        x[i] = np.float32(s * np.float64(L[i, i]))
    for i in range(m - 1, -1, -1):
        s = np.float64(x[i])
        for k in range(m - 1, i, -1):
            s -= np.float64(L[k, i] * x[k])
        x[i] = np.float32(s * np.float64(L[i, i]))
    return True, x
