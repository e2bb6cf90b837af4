"""The GIL-free Gauss-Newton loops give the bits of the NumPy/OpenCV loops (issue 8).

``pyfaceau.blas`` calls NumPy's own OpenBLAS from numba; with it, NU-RLMS and
``CalcParams`` run as one numba call each (``pyfaceau.pdm.opencv_kernels`` replaces
``cv2.solve``, ``cv2.SVDecomp`` and ``cv2.Rodrigues``). Switching ``blas.AVAILABLE`` off
runs the NumPy/OpenCV loops that mirror OpenFace line by line: both must agree bit for bit
on real fits, on every CPU.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import SAMPLES
from pyfaceau import blas
from pyfaceau.landmarks.clnf.model import CLNF, WINDOW_SIZES_INIT
from pyfaceau.pdm import calc_params

pytestmark = pytest.mark.skipif(not blas.AVAILABLE, reason="NumPy's OpenBLAS not found")


def test_blas_calls_match_numpy_matmul() -> None:
    rng = np.random.default_rng(1)
    for k, rows in ((6, 136), (40, 136), (20, 56)):
        j = (rng.standard_normal((rows, k)) * 37.0).astype(np.float32)
        jt = np.ascontiguousarray((j * rng.uniform(0.5, 2.0, (rows, 1))).T.astype(np.float32))
        assert np.array_equal((jt @ j).view(np.uint32), blas.sgemm_nn(jt, j).view(np.uint32))
        a = rng.standard_normal((rows, k)).astype(np.float32)
        x = rng.standard_normal(k).astype(np.float32)
        assert np.array_equal((a @ x).view(np.uint32), blas.sgemv(a, x).view(np.uint32))
        a64, x64 = a.astype(np.float64), x.astype(np.float64)
        assert np.array_equal((a64 @ x64[:, None])[:, 0], blas.dgemv(a64, x64))
        # NumPy's matmul dispatch: gemm, or gemv for a one-column right factor
        b = rng.standard_normal((k, 7)).astype(np.float32)
        for right in (b, np.ascontiguousarray(b[:, :1])):
            assert np.array_equal((a @ right).view(np.uint32), blas.matmul_f32(a, right).view(np.uint32))


def test_dgesv_inverse_matches_numpy_inv() -> None:
    rng = np.random.default_rng(3)
    for _ in range(2000):
        a = (rng.standard_normal((2, 2)) * rng.uniform(0.01, 100)).astype(np.float32)
        ok, inv = blas.dgesv_inverse(a.astype(np.float64))
        assert ok and np.array_equal(inv, np.linalg.inv(a.astype(np.float64)))
    ok, _ = blas.dgesv_inverse(np.zeros((2, 2)))
    assert not ok  # where numpy.linalg.inv raises LinAlgError


def _with_and_without_kernels(monkeypatch, fn):
    out = fn()
    monkeypatch.setattr(blas, "AVAILABLE", False)
    ref = fn()
    monkeypatch.setattr(blas, "AVAILABLE", True)
    return out, ref


def test_calc_params_loop_matches(monkeypatch) -> None:
    pdm = CLNF().pdm
    rng = np.random.default_rng(2)
    for _ in range(40):
        glob = np.array([rng.uniform(0.5, 4), *rng.normal(0, 0.3, 3), *rng.uniform(50, 400, 2)])
        loc = rng.normal(0, 1, pdm.n_modes) * np.sqrt(pdm.eigen_values)
        lm = pdm.shape_2d(glob, loc) + rng.normal(0, 2.0, (pdm.n_points, 2))
        (g1, l1), (g0, l0) = _with_and_without_kernels(monkeypatch, lambda: calc_params(pdm, lm))
        assert np.array_equal(g1, g0) and np.array_equal(l1, l0)


@pytest.mark.parametrize("video", ["2015-10-15-15-14.avi", "default.wmv"])
def test_clnf_fits_match(monkeypatch, video) -> None:
    """Whole CLNF fits (main model and part models, NU-RLMS and CalcParams) on frames of
    two videos, tracked from OpenFace's first-frame landmarks."""
    clnf = CLNF()
    cap = cv2.VideoCapture(str(SAMPLES / video))
    frames = [cap.read()[1] for _ in range(6)]
    cap.release()
    gray = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]
    x0, y0 = gray[0].shape[1] * 0.3, gray[0].shape[0] * 0.2
    box = (x0, y0, gray[0].shape[1] * 0.4, gray[0].shape[0] * 0.6)

    def track():
        glob, loc = clnf.params_from_bbox(box)
        fits, windows = [], WINDOW_SIZES_INIT
        for g in gray:
            fit = clnf.fit(g, glob, loc, windows)
            fits.append(fit)
            glob, loc = fit.params_global, fit.params_local
        return fits

    fast, ref = _with_and_without_kernels(monkeypatch, track)
    assert any(f.parts_used for f in ref)
    for a, b in zip(fast, ref):
        assert np.array_equal(a.landmarks, b.landmarks)
        assert np.array_equal(a.params_global, b.params_global)
        assert np.array_equal(a.params_local, b.params_local)
        assert a.model_likelihood == b.model_likelihood
        assert np.array_equal(a.landmark_likelihoods, b.landmark_likelihoods)
