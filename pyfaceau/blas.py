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
The kernels here must not be called in that case.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
from typing import Iterator

import numba as nb
import numpy as np
from llvmlite import binding as llvm
from numba import types

__all__ = [
    "AVAILABLE", "sgemm_nn", "sgemv", "dgemv", "matmul_f32", "dgesv_inverse", "library_path",
    "single_threaded_blas",
]

# CBLAS enums (cblas.h).
_ROW_MAJOR = 101
_COL_MAJOR = 102
_NO_TRANS = 111
_TRANS = 112

# NumPy >= 2 wheels ship scipy-openblas64 (ILP64, symbols prefixed and suffixed);
# NumPy 1.x wheels shipped openblas64_ with a ``64_`` suffix only. CBLAS names, then the
# Fortran LAPACK name of ``dgesv`` (what ``numpy.linalg.inv`` calls).
_SYMBOL_PATTERNS = (
    ("scipy_cblas_{}64_", "scipy_{}_64_"),
    ("cblas_{}64_", "{}_64_"),
)


def library_path() -> str | None:
    """Path of the OpenBLAS shared library NumPy uses, or None if not found."""
    root = os.path.dirname(os.path.dirname(np.__file__))
    for folder in ("numpy.libs", os.path.join("numpy", ".dylibs")):
        found = sorted(glob.glob(os.path.join(root, folder, "*openblas*")))
        if found:
            return found[0]
    try:  # other layouts (conda, system NumPy): ask the loaded libraries
        from threadpoolctl import threadpool_info

        for info in threadpool_info():
            if info.get("internal_api") == "openblas":
                return str(info["filepath"])
    except Exception:  # pragma: no cover - threadpoolctl missing or failing
        pass
    return None


def _register() -> bool:
    path = library_path()
    if path is None:
        return False
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return False
    for cblas, lapack in _SYMBOL_PATTERNS:
        addresses = {}
        for name in ("sgemm", "sgemv", "dgemv", "dgesv"):
            pattern = lapack if name == "dgesv" else cblas
            fn = getattr(lib, pattern.format(name), None)
            if fn is None:
                break
            addresses[name] = ctypes.cast(fn, ctypes.c_void_p).value
        else:
            for name, address in addresses.items():
                llvm.add_symbol(f"pyfaceau_cblas_{name}", address)
            return True
    return False


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run the BLAS libraries (NumPy's, and the OpenBLAS that OpenCV's wheel bundles for
    its LAPACK back end) on one thread.

    OpenFace does the same (``openblas_set_num_threads(1)`` in ``CCNF_patch_expert::Read``
    and ``CNN::Read``). The products here are small: a second thread adds no speed,
    doubles the CPU time (its workers spin between calls) and makes float32 results
    depend on the core count (OpenBLAS splits a factorisation between its threads).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


#: True when NumPy's OpenBLAS (64-bit integers) was found and registered.
AVAILABLE: bool = os.environ.get("PYFACEAU_NO_BLAS_KERNELS", "") == "" and _register()

_i32, _i64 = types.int32, types.int64
_f32p, _f64p = types.CPointer(types.float32), types.CPointer(types.float64)

_cblas_sgemm = types.ExternalFunction(
    "pyfaceau_cblas_sgemm",
    types.void(
        _i32, _i32, _i32, _i64, _i64, _i64, types.float32, _f32p, _i64, _f32p, _i64,
        types.float32, _f32p, _i64,
    ),
)
_cblas_sgemv = types.ExternalFunction(
    "pyfaceau_cblas_sgemv",
    types.void(
        _i32, _i32, _i64, _i64, types.float32, _f32p, _i64, _f32p, _i64, types.float32,
        _f32p, _i64,
    ),
)
_cblas_dgemv = types.ExternalFunction(
    "pyfaceau_cblas_dgemv",
    types.void(
        _i32, _i32, _i64, _i64, types.float64, _f64p, _i64, _f64p, _i64, types.float64,
        _f64p, _i64,
    ),
)


_i64p = types.CPointer(types.int64)
_dgesv = types.ExternalFunction(
    "pyfaceau_cblas_dgesv",
    types.void(_i64p, _i64p, _f64p, _i64p, _i64p, _f64p, _i64p, _i64p),
)


@nb.njit(cache=True, nogil=True)
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


@nb.njit(cache=True, nogil=True)
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


@nb.njit(cache=True, nogil=True)
def matmul_f32(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for C-contiguous float32 (m, n) and (n, p) with m, n > 1, as NumPy's
    ``matmul`` dispatches it: ``sgemv`` when ``p == 1``, else ``sgemm``. Returns (m, p)."""
    if b.shape[1] == 1:
        return sgemv(a, b[:, 0].copy()).reshape((a.shape[0], 1))
    return sgemm_nn(a, b)


@nb.njit(cache=True, nogil=True)
def dgemv(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    """:func:`sgemv` in float64 (``DOUBLE_gemv``): a new (m,) float64 array."""
    m, n = a.shape
    y = np.empty(m, dtype=np.float64)
    _cblas_dgemv(
        _COL_MAJOR, _TRANS, n, m, 1.0, a.ctypes, n, x.ctypes, 1, 0.0, y.ctypes, 1,
    )
    return y


@nb.njit(cache=True, nogil=True)
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
