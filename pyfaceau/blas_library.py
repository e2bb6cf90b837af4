"""NumPy's OpenBLAS, found and registered with LLVM for :mod:`pyfaceau.blas`'s kernels.

:func:`register_symbols` finds the OpenBLAS that NumPy ships and registers its
``cblas_sgemm``/``cblas_sgemv``/``cblas_dgemv`` and LAPACK ``dgesv`` with LLVM under fixed
names (``pyfaceau_cblas_*``), which the kernels of :mod:`pyfaceau.blas` call. Kept apart
from those kernels so that saved kernels (:mod:`pyfaceau.jit_saved`) can register the
same symbols without defining any kernel.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import threading
from typing import Any, Iterator

import numpy as np
from llvmlite import binding as llvm

__all__ = ["AVAILABLE", "library_path", "register_symbols", "single_threaded_blas"]

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


def register_symbols() -> bool:
    """Register NumPy's OpenBLAS functions with LLVM; False when they are not found."""
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
    global _one_thread_users, _one_thread_limits
    with _one_thread_lock:
        if _one_thread_users == 0:
            from threadpoolctl import threadpool_limits

            _take_openblas_control()
            _one_thread_limits = threadpool_limits(limits=1, user_api="blas")
        _one_thread_users += 1
    try:
        yield
    finally:
        # the setting is the process's: the last of overlapping users (several sessions
        # of one pipeline on several threads) restores what the caller had
        with _one_thread_lock:
            _one_thread_users -= 1
            if _one_thread_users == 0 and _one_thread_limits is not None:
                _take_openblas_control()
                _one_thread_limits.restore_original_limits()
                _one_thread_limits = None
                _take_openblas_control()  # leave no thread in control: the caller's limits count


def _take_openblas_control() -> None:
    """threadpoolctl >= 3.6 lets only one Python thread (the first that set a limit,
    while it lives) change OpenBLAS's process-wide thread count and ignores the others:
    a session run on any other thread would have kept BLAS on every core. Calls here
    are serialised by ``_one_thread_lock``: the role is cleared before each change and
    after the last, so that this thread takes it for the change and nobody keeps it."""
    import threadpoolctl

    controller = getattr(threadpoolctl, "OpenBLASController", None)
    clear = getattr(controller, "clear_controlling_thread", None)
    if clear is not None:
        clear(force=True)


_one_thread_lock = threading.Lock()
_one_thread_users = 0
_one_thread_limits: Any = None


#: True when NumPy's OpenBLAS (64-bit integers) was found and registered.
AVAILABLE: bool = os.environ.get("PYFACEAU_NO_BLAS_KERNELS", "") == "" and register_symbols()
