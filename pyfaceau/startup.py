"""Process start-up for pyfaceau's own processes (the CLI and batch workers).

numba, the first time it loads a kernel, imports ``scipy.linalg.cython_blas`` only to learn
whether ``np.dot`` and ``np.linalg`` may be used inside jitted code (``numba.np.arraymath``
at import). With SciPy installed that import alone takes about 0.4 s, a large part of
pyfaceau's start-up, and pyfaceau's kernels never use ``np.dot`` or ``np.linalg`` in
jitted code (``tests/test_startup.py`` checks it). In a process pyfaceau owns, the probe is
answered "no" without importing SciPy; the library never does this in someone else's
process, where other jitted code may need numba's BLAS.
"""

from __future__ import annotations

import sys

__all__ = ["skip_numba_blas_probe"]

_PROBED_MODULE = "scipy.linalg.cython_blas"


def skip_numba_blas_probe() -> None:
    """Make numba's BLAS probe fail fast (no SciPy import) in this process.

    Call before any numba kernel is loaded; later calls, or calls after numba already
    probed, change nothing. SciPy itself stays importable afterwards.
    """
    if "numba.np.arraymath" in sys.modules or _PROBED_MODULE in sys.modules:
        return
    sys.modules[_PROBED_MODULE] = None  # type: ignore[assignment]  # import -> ImportError
    try:
        import numba.np.arraymath  # noqa: F401  (runs the probe now, while it fails)
    finally:
        if sys.modules.get(_PROBED_MODULE, 0) is None:
            del sys.modules[_PROBED_MODULE]
