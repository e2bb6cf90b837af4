"""The numba replicas of :mod:`pyfaceau.pdm.opencv_kernels` give cv2's bits, exactly.

Each kernel is compared with the OpenCV call it mirrors on many inputs of the kind the
CLNF / CalcParams Gauss-Newton loops produce (near-identity ``R'`` matrices, rotation
products, ``J^T J + diag(reg)`` Hessians), plus edge cases (angles near 0 and pi,
rank-deficient matrices, failing factorisations). Equality is on the float32 bits.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pyfaceau.pdm.opencv_kernels import (
    cholesky_solve_f32,
    rodrigues_matrix_to_vector_f32,
    svd3x3_f32,
)


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a = np.ascontiguousarray(a, dtype=np.float32).ravel()
    b = np.ascontiguousarray(b, dtype=np.float32).ravel()
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def _near_identity(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """``[[1, -wz, wy], [wz, 1, -wx], [-wy, wx, 1]]`` (n, 3, 3) float32, w ~ N(0, sigma)."""
    w = rng.normal(0.0, sigma, (n, 3)).astype(np.float32)
    r = np.zeros((n, 3, 3), dtype=np.float32)
    r[:, 0, 0] = r[:, 1, 1] = r[:, 2, 2] = 1.0
    r[:, 0, 1], r[:, 0, 2] = -w[:, 2], w[:, 1]
    r[:, 1, 0], r[:, 1, 2] = w[:, 2], -w[:, 0]
    r[:, 2, 0], r[:, 2, 1] = -w[:, 1], w[:, 0]
    return r


def _euler_f32(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    """Rotation matrices ``Rx Ry Rz`` (OpenFace's Euler2RotationMatrix order), float32."""
    a = rng.uniform(-scale, scale, (n, 3))
    out = np.empty((n, 3, 3), dtype=np.float32)
    for i, (rx, ry, rz) in enumerate(a):
        s1, s2, s3 = np.sin(rx), np.sin(ry), np.sin(rz)
        c1, c2, c3 = np.cos(rx), np.cos(ry), np.cos(rz)
        out[i] = [
            [c2 * c3, -c2 * s3, s2],
            [c1 * s3 + c3 * s1 * s2, c1 * c3 - s1 * s2 * s3, -c2 * s1],
            [s1 * s3 - c1 * c3 * s2, c3 * s1 + c1 * s2 * s3, c1 * c2],
        ]
    return out


def _orthonormalised_products(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """``R1 @ (U Vt)`` with ``U, Vt = SVD(R')`` of a near-identity ``R'``: the matrix
    ``UpdateModelParameters`` hands to ``cv::Rodrigues``, float32 (n, 3, 3)."""
    r1 = _euler_f32(rng, n, np.pi / 2)
    r2 = _near_identity(rng, n, sigma)
    out = np.empty_like(r1)
    for i in range(n):
        _, u, vt = cv2.SVDecomp(r2[i])
        out[i] = r1[i] @ (u @ vt)
    return out


def _rotations_axis_angle(rng: np.random.Generator, angles: np.ndarray) -> np.ndarray:
    """float32 rotation matrices about random axes by the given angles (float64 maths)."""
    axis = rng.normal(size=(len(angles), 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    out = np.empty((len(angles), 3, 3), dtype=np.float32)
    for i, (ax, ang) in enumerate(zip(axis, angles)):
        k = np.array([[0, -ax[2], ax[1]], [ax[2], 0, -ax[0]], [-ax[1], ax[0], 0]])
        out[i] = np.eye(3) + np.sin(ang) * k + (1 - np.cos(ang)) * (k @ k)
    return out


def _rank_deficient(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Zero, rank-1/2, small-integer and zero-column matrices (float32 (3, 3)): the cases
    where OpenCV completes ``U`` with its seeded random vectors."""
    out = [np.zeros((3, 3), np.float32), np.diag([1, 0, 0]).astype(np.float32),
           np.diag([0, 0, 2]).astype(np.float32), np.ones((3, 3), np.float32)]
    for _ in range(n):
        z = rng.normal(size=(3, 3)).astype(np.float32)
        z[:, rng.integers(3)] = 0
        z[:, rng.integers(3)] = 0
        out.append(z)
        out.append(rng.integers(-2, 3, size=(3, 3)).astype(np.float32))
        out.append((rng.normal(size=(3, 1)) @ rng.normal(size=(1, 3))).astype(np.float32))
        tiny = rng.normal(size=(3, 3)) * 10.0 ** rng.uniform(-30, 1)
        out.append(tiny.astype(np.float32))
    return out


def _check_svd(mats) -> int:
    bad = 0
    for a in mats:
        a = np.ascontiguousarray(a, dtype=np.float32)
        a_before = a.copy()
        w, u, vt = cv2.SVDecomp(a)
        w2, u2, vt2 = svd3x3_f32(a)
        ok = _same_bits(w, w2) and _same_bits(u, u2) and _same_bits(vt, vt2)
        bad += not ok
        assert _same_bits(a, a_before)
        assert w2.shape == (3,) and u2.shape == (3, 3) and vt2.shape == (3, 3)
    return bad


def test_svd_near_identity() -> None:
    rng = np.random.default_rng(20240601)
    mats = np.concatenate([
        _near_identity(rng, 20000, 0.05),
        _near_identity(rng, 3000, 0.5),
        _near_identity(rng, 1000, 1e-4),
    ])
    assert _check_svd(mats) == 0


def test_svd_products_general_and_rank_deficient() -> None:
    rng = np.random.default_rng(7)
    mats = [
        *_orthonormalised_products(rng, 2000, 0.05),
        *_euler_f32(rng, 1000, np.pi),
        *rng.normal(size=(3000, 3, 3)).astype(np.float32),
        *_rank_deficient(rng, 500),
    ]
    assert _check_svd(mats) == 0
    # The zero matrix exercises the RNG completion of all three columns of U.
    w, u, _ = svd3x3_f32(np.zeros((3, 3), np.float32))
    assert np.all(w == 0) and np.allclose(u.T @ u, np.eye(3), atol=1e-6)


def test_rodrigues() -> None:
    rng = np.random.default_rng(11)
    n_pi = 2000
    mats = [
        *_rotations_axis_angle(rng, rng.uniform(0, np.pi, 6000)),
        *_rotations_axis_angle(rng, 10.0 ** rng.uniform(-9, -2, 1500)),  # near 0
        *_rotations_axis_angle(rng, np.pi - 10.0 ** rng.uniform(-9, -1, n_pi)),  # near pi
        *_orthonormalised_products(rng, 2000, 0.05),
        *_euler_f32(rng, 1000, np.pi),
        *(_near_identity(rng, 1000, 0.05)),  # not orthonormal: the SVD projects it
    ]
    special = [np.eye(3, dtype=np.float32), -np.eye(3, dtype=np.float32),
               np.zeros((3, 3), np.float32), np.full((3, 3), np.nan, np.float32),
               np.full((3, 3), 100.0, np.float32), np.full((3, 3), 99.5, np.float32)]
    for d in ([1, -1, -1], [-1, 1, -1], [-1, -1, 1]):  # exactly pi about an axis
        special.append(np.diag(d).astype(np.float32))
    for v in ([np.pi, 0, 0], [0, np.pi, 0], [0, 0, np.pi], [2.2214415, 2.2214415, 0]):
        rvec = np.array(v, np.float64).reshape(3, 1)
        special.append(cv2.Rodrigues(rvec)[0].astype(np.float32))
    mats += special
    bad = 0
    for r in mats:
        r = np.ascontiguousarray(r, dtype=np.float32)
        r_before = r.copy()
        expected = cv2.Rodrigues(r)[0]
        got = rodrigues_matrix_to_vector_f32(r)
        bad += not _same_bits(expected, got)
        assert _same_bits(r, r_before) and got.shape == (3,)
    assert bad == 0


def _hessian(rng: np.random.Generator, k: int, with_reg: bool) -> np.ndarray:
    """``J^T J + diag(reg)`` float32, J (136, k) normal, global columns scaled up."""
    j = (rng.normal(size=(136, k)) * 10.0 ** rng.uniform(-2, 2)).astype(np.float32)
    j[:, : min(k, 6)] *= np.float32(rng.uniform(1.0, 300.0))
    h = j.T @ j
    if with_reg:
        reg = rng.uniform(0.0, 50.0, k).astype(np.float32)
        reg[: min(k, 6)] = 0.0
        h = h + np.diag(reg)
    return np.ascontiguousarray(h, dtype=np.float32)


@pytest.mark.parametrize(
    ("k", "count"),
    [(6, 1500), (40, 800), (1, 100), (2, 100), (3, 100), (4, 100), (5, 100), (7, 100),
     (12, 100), (24, 100), (34, 100), (60, 60)],
)
def test_cholesky_solve(k: int, count: int) -> None:
    rng = np.random.default_rng(1000 + k)
    bad = 0
    failures = 0
    for i in range(count):
        h = _hessian(rng, k, with_reg=bool(i % 2))
        if i % 25 == 0:  # singular: OpenCV's factorisation stops (s < FLT_EPSILON)
            h[-1, :] = 0.0
            h[:, -1] = 0.0
        elif i % 25 == 1:  # indefinite
            h[-1, -1] = -h[-1, -1]
        b = (rng.normal(size=k) * 10.0 ** rng.uniform(-2, 3)).astype(np.float32)
        h_before, b_before = h.copy(), b.copy()
        ok, x = cv2.solve(h, b[:, None], flags=cv2.DECOMP_CHOLESKY)
        ok2, x2 = cholesky_solve_f32(h, b)
        assert _same_bits(h, h_before) and _same_bits(b, b_before)
        assert x2.shape == (k,)
        failures += not ok
        if ok != ok2:
            bad += 1
        elif ok or k > 3:  # for k <= 3 cv2 leaves its output uninitialised on failure
            bad += not _same_bits(x, x2)
    assert bad == 0
    assert failures >= 1  # the failure branch was exercised
