"""NumPy's own BLAS, callable from numba kernels without the GIL.

OpenFace forms several float32 products with BLAS (``J_w^T J`` in ``NU_RLMS`` and
``CalcParams``, ``princ_comp * p`` in ``CalcShape3D``), and pyfaceau reproduces them with
NumPy's ``@``, which calls the OpenBLAS that NumPy ships. Their summation order is
OpenBLAS's (and depends on the kernel it picks for the CPU), so a loop cannot reproduce
them; calling the very same library function can. This module finds NumPy's OpenBLAS,
registers its ``cblas_sgemm``/``cblas_sgemv``/``cblas_dgemv`` with LLVM under fixed
names, and exposes them as numba functions that make exactly the call NumPy's ``matmul``
makes (``numpy/_core/src/umath/matmul.c.src``): the results are bit for bit those of
``a @ b``, and a kernel holding a whole Gauss-Newton loop can run without the GIL.

:data:`AVAILABLE` is False where NumPy's BLAS is not a 64-bit-integer OpenBLAS whose
symbols can be found (other builds of NumPy); callers then keep their NumPy code path.
The kernels here must not be called in that case. Finding and registering the library
is :mod:`pyfaceau.blas_library`'s.
"""

from __future__ import annotations

import numpy as np

from . import jit
from .blas_library import AVAILABLE, library_path, single_threaded_blas

__all__ = [
    "AVAILABLE", "sgemm_nn", "sgemv", "dgemv", "matmul_f32", "dgesv_inverse", "library_path",
    "single_threaded_blas",
]

# CBLAS enums (cblas.h).
_ROW_MAJOR = 101
_COL_MAJOR = 102
_NO_TRANS = 111
_TRANS = 112


def _cblas_gemm_signature(types, real):  # noqa: ANN001, ANN202 - numba's types module
    i32, i64, ptr = types.int32, types.int64, types.CPointer(real)
    return types.void(i32, i32, i32, i64, i64, i64, real, ptr, i64, ptr, i64, real, ptr, i64)


def _cblas_gemv_signature(types, real):  # noqa: ANN001, ANN202 - numba's types module
    i32, i64, ptr = types.int32, types.int64, types.CPointer(real)
    return types.void(i32, i32, i64, i64, real, ptr, i64, ptr, i64, real, ptr, i64)


_cblas_sgemm = jit.external_function(
    "pyfaceau_cblas_sgemm", lambda t: _cblas_gemm_signature(t, t.float32))
_cblas_sgemv = jit.external_function(
    "pyfaceau_cblas_sgemv", lambda t: _cblas_gemv_signature(t, t.float32))
_cblas_dgemv = jit.external_function(
    "pyfaceau_cblas_dgemv", lambda t: _cblas_gemv_signature(t, t.float64))
_dgesv = jit.external_function(
    "pyfaceau_cblas_dgesv",
    lambda t: t.void(*[t.CPointer(t.int64)] * 2, t.CPointer(t.float64),
                     *[t.CPointer(t.int64)] * 2, t.CPointer(t.float64),
                     *[t.CPointer(t.int64)] * 2),
)


@jit.njit(cache=True, nogil=True)
def sgemm_nn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for C-contiguous float32 matrices (m, n) and (n, p), as NumPy calls it.

    NumPy: ``cblas_sgemm(RowMajor, NoTrans, NoTrans, m, p, n, 1, a, n, b, p, 0, c, p)``.
    Returns a new (m, p) float32 array.
    """
    m, n = a.shape
    p = b.shape[1]
    c = np.empty((m, p), dtype=np.float32)
    _cblas_sgemm(
        _ROW_MAJOR, _NO_TRANS, _NO_TRANS, m, p, n, np.float32(1.0), a.ctypes, n,
        b.ctypes, p, np.float32(0.0), c.ctypes, p,
    )
    return c


@jit.njit(cache=True, nogil=True)
def sgemv(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``a @ x`` for a C-contiguous float32 (m, n) matrix and a contiguous (n,) vector.

    NumPy (``FLOAT_gemv``): ``cblas_sgemv(ColMajor, Trans, n, m, 1, a, n, x, 1, 0, y, 1)``.
    Returns a new (m,) float32 array.
    """
    m, n = a.shape
    y = np.empty(m, dtype=np.float32)
    _cblas_sgemv(
        _COL_MAJOR, _TRANS, n, m, np.float32(1.0), a.ctypes, n, x.ctypes, 1,
        np.float32(0.0), y.ctypes, 1,
    )
    return y


@jit.njit(cache=True, nogil=True)
def matmul_f32(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for C-contiguous float32 (m, n) and (n, p) with m, n > 1, as NumPy's
    ``matmul`` dispatches it: ``sgemv`` when ``p == 1``, else ``sgemm``. Returns (m, p)."""
    if b.shape[1] == 1:
        return sgemv(a, b[:, 0].copy()).reshape((a.shape[0], 1))
    return sgemm_nn(a, b)


@jit.njit(cache=True, nogil=True)
def dgemv(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    """:func:`sgemv` in float64 (``DOUBLE_gemv``): a new (m,) float64 array."""
    m, n = a.shape
    y = np.empty(m, dtype=np.float64)
    _cblas_dgemv(
        _COL_MAJOR, _TRANS, n, m, 1.0, a.ctypes, n, x.ctypes, 1, 0.0, y.ctypes, 1,
    )
    return y


@jit.njit(cache=True, nogil=True)
def dgesv_inverse(a: np.ndarray) -> tuple[bool, np.ndarray]:
    """``numpy.linalg.inv(a)`` for a C-contiguous float64 (n, n) matrix, as NumPy calls it.

    NumPy (``umath_linalg``): LAPACK ``dgesv`` on ``a`` in Fortran order with the identity
    as right-hand side. Returns ``(ok, inverse)``; ``ok`` is False where NumPy raises
    ``LinAlgError`` (singular matrix), and the inverse is then meaningless.
    """
    n = a.shape[0]
    af = np.ascontiguousarray(a.T)  # a in Fortran order
    b = np.zeros((n, n), dtype=np.float64)
    for i in range(n):
        b[i, i] = 1.0
    ipiv = np.zeros(n, dtype=np.int64)
    ints = np.array([n, 0], dtype=np.int64)  # n, info
    _dgesv(
        ints.ctypes, ints.ctypes, af.ctypes, ints.ctypes, ipiv.ctypes, b.ctypes, ints.ctypes,
        ints[1:].ctypes,
    )
    return ints[1] == 0, np.ascontiguousarray(b.T)
