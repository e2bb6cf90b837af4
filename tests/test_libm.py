"""pyfaceau.libm: glibc's exp for arrays, with the bits of numba's ``math.exp`` (the C
library's), which the CCNF neurons must reproduce (OpenFace calls ``exp``)."""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from pyfaceau import libm


@nb.njit(nogil=True)
def _libm_exp(x: np.ndarray, out: np.ndarray) -> None:
    for i in range(x.shape[0]):
        out[i] = math.exp(x[i])


def _exp_into(x: np.ndarray) -> np.ndarray:
    n = x.shape[0]
    out = np.empty(n)
    libm.exp_into(x, out, np.empty(n), np.empty(n, dtype=np.uint64), np.empty(n))
    return out


def _same_bits(x: np.ndarray) -> np.ndarray:
    """Per value of ``x``, whether exp_into and the C library agree bit for bit (NaN with
    NaN)."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    ours = _exp_into(x)
    theirs = np.empty_like(x)
    _libm_exp(x, theirs)
    return (ours.view(np.uint64) == theirs.view(np.uint64)) | (
        np.isnan(ours) & np.isnan(theirs)
    )


def test_table_follows_from_its_definition() -> None:
    assert np.array_equal(libm.exp_table(), libm._EXP_PAIRS)


def test_exp_has_the_c_librarys_bits_on_float32_inputs() -> None:
    """The neurons' inputs are float32 activations: 4 million random float32 values
    (every exponent, both signs, inf and NaN patterns included) and the edges of glibc's
    special cases. (Every one of the 2**32 float32 values was compared by hand.)"""
    rng = np.random.default_rng(8)
    bits = rng.integers(0, 2**32, size=1 << 22, dtype=np.uint64).astype(np.uint32)
    with np.errstate(invalid="ignore"):  # signalling NaN patterns
        x = bits.view(np.float32).astype(np.float64)
    same = _same_bits(x)
    assert same.all(), x[~same][:5]
    edges = np.array(
        [0.0, -0.0, 2.0**-54, -(2.0**-54), np.nextafter(2.0**-54, 0), 512.0, -512.0,
         np.nextafter(512.0, 0), -np.nextafter(512.0, 0), 709.78, 709.79, -745.1, -745.2,
         -708.5, 1e-300, 5e-324, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.5, 88.7, -103.9],
        dtype=np.float64,
    )
    assert _same_bits(edges).all()


def test_exp_has_the_c_librarys_bits_on_float64_inputs() -> None:
    rng = np.random.default_rng(9)
    x = np.concatenate([rng.uniform(-40, 40, 1 << 20), rng.normal(0, 3, 1 << 20),
                        rng.uniform(-700, 700, 1 << 18)])
    same = _same_bits(x)
    assert same.all(), x[~same][:5]
