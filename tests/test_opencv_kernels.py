"""The numba replicas of :mod:`pyfaceau.pdm.opencv_kernels` give cv2's bits, exactly.

Each kernel is compared with the OpenCV call it mirrors on many inputs of the kind the
CLNF / CalcParams Gauss-Newton loops and the face alignment produce (near-identity
``R'`` matrices, rotation products, 2x2 Kabsch cross-covariances, ``J^T J + diag(reg)``
Hessians), plus edge cases (angles near 0 and pi, rank-deficient matrices, failing
factorisations). Equality is on the float32 bits.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pyfaceau.pdm.opencv_kernels import (
    cholesky_solve_f32,
    rodrigues_matrix_to_vector_f32,
    svd2x2_f32,
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


def _rot2(theta: np.ndarray) -> np.ndarray:
    """(n, 2, 2) float64 rotations by ``theta``."""
    c, s = np.cos(theta), np.sin(theta)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


def _scaled_rotations_2d(rng: np.random.Generator, n: int) -> np.ndarray:
    """``s R + noise`` (n, 2, 2) float32: the shape of ``src_n.T @ dst_n`` in
    ``AlignShapesWithScale``; s in [0.1, 100], relative noise 1e-7 .. 0.3, and a
    reflection (a column sign flip) in a tenth of them."""
    r = _rot2(rng.uniform(-np.pi, np.pi, n))
    r[rng.random(n) < 0.1, :, 1] *= -1.0
    s = 10.0 ** rng.uniform(-1, 2, n)
    noise = rng.normal(size=(n, 2, 2)) * 10.0 ** rng.uniform(-7, -0.5, (n, 1, 1))
    return ((r + noise) * s[:, None, None]).astype(np.float32)


def _kabsch_covariances(rng: np.random.Generator, n: int) -> np.ndarray:
    """The float32 product ``src_n.T @ dst_n`` of centred, RMS-normalised 68-point
    shapes, ``dst`` a rotated, scaled, shifted and perturbed ``src``; every 50th has
    collinear points (a rank-1 product)."""
    out = np.empty((n, 2, 2), dtype=np.float32)
    rots = _rot2(rng.uniform(-0.6, 0.6, n))
    for i in range(n):
        src = rng.normal(size=(68, 2)) * [40.0, 50.0] + 200.0
        if i % 50 == 0:
            src[:, 1] = 0.7 * src[:, 0]
        dst = (src @ rots[i].T) * rng.uniform(0.3, 3.0) + rng.uniform(-50, 50, 2)
        dst += rng.normal(size=(68, 2)) * 10.0 ** rng.uniform(-3, 1)
        src_n = src.astype(np.float32) - src.astype(np.float32).mean(0)
        dst_n = dst.astype(np.float32) - dst.astype(np.float32).mean(0)
        src_n /= np.float32(np.sqrt(np.mean(src_n * src_n)))
        dst_n /= np.float32(np.sqrt(np.mean(dst_n * dst_n)))
        out[i] = src_n.T @ dst_n
    return out


def _rank_deficient_2x2(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Zero, rank-1, zero-row/column, small-integer and tiny (down to denormal and
    below FLT_MIN in the squared sums) float32 (2, 2) matrices."""
    out = [np.zeros((2, 2), np.float32), np.diag([1, 0]).astype(np.float32),
           np.diag([0, 3]).astype(np.float32), np.ones((2, 2), np.float32),
           np.array([[0, 1], [0, 0]], np.float32), np.array([[0, 0], [2, 0]], np.float32),
           np.array([[1e-30, 0], [0, 0]], np.float32), np.full((2, 2), 1e-20, np.float32),
           np.array([[1e-45, 0], [0, 1e-45]], np.float32), -np.eye(2, dtype=np.float32)]
    for _ in range(n):
        out.append((rng.normal(size=(2, 1)) @ rng.normal(size=(1, 2))).astype(np.float32))
        z = rng.normal(size=(2, 2)).astype(np.float32)
        z[rng.integers(2), :] = 0
        out.append(z if rng.random() < 0.5 else z.T.copy())
        out.append(rng.integers(-2, 3, size=(2, 2)).astype(np.float32))
        tiny = rng.normal(size=(2, 2)) * 10.0 ** rng.uniform(-45, 1)
        out.append(tiny.astype(np.float32))
        r1 = (rng.normal(size=(2, 1)) @ rng.normal(size=(1, 2))) * 10.0 ** rng.uniform(-1, 2)
        out.append((r1 + rng.normal(size=(2, 2)) * 1e-6).astype(np.float32))  # near rank 1
    return out


def _check_svd2(mats) -> int:
    bad = 0
    for a in mats:
        a = np.ascontiguousarray(a, dtype=np.float32)
        a_before = a.copy()
        w, u, vt = cv2.SVDecomp(a)
        w2, u2, vt2 = svd2x2_f32(a)
        ok = _same_bits(w, w2) and _same_bits(u, u2) and _same_bits(vt, vt2)
        bad += not ok
        assert _same_bits(a, a_before)
        assert w2.shape == (2,) and u2.shape == (2, 2) and vt2.shape == (2, 2)
    return bad


def test_svd2x2_scaled_rotations() -> None:
    rng = np.random.default_rng(22)
    mats = np.concatenate([_scaled_rotations_2d(rng, 20000), _kabsch_covariances(rng, 1000)])
    assert _check_svd2(mats) == 0


def test_svd2x2_general_and_rank_deficient() -> None:
    rng = np.random.default_rng(23)
    mats = [
        *rng.normal(size=(5000, 2, 2)).astype(np.float32),
        *(rng.normal(size=(1000, 2, 2)) * 10.0 ** rng.uniform(-3, 3, (1000, 1, 1))).astype(
            np.float32),
        *_rank_deficient_2x2(rng, 500),
    ]
    assert _check_svd2(mats) == 0
    # The zero matrix exercises the RNG completion of both columns of U.
    w, u, _ = svd2x2_f32(np.zeros((2, 2), np.float32))
    assert np.all(w == 0) and np.allclose(u.T @ u, np.eye(2), atol=1e-6)


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
