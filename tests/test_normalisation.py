"""OpenFace's running histogram median against a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest

from pyfaceau.errors import InputError
from pyfaceau.normalisation import (
    GEOM_MAX_VAL,
    GEOM_MIN_VAL,
    GEOM_N_BINS,
    HOG_MAX_VAL,
    HOG_MIN_VAL,
    HOG_N_BINS,
    HistogramMedian,
)


class BruteForceMedian:
    """``FaceAnalyser::UpdateRunningMedian`` written out literally (FaceAnalyser.cpp).

    Keeps every added descriptor and rebuilds the histograms at each call.
    """

    def __init__(self, n_features: int, n_bins: int, min_val: float, max_val: float) -> None:
        self.n_features, self.n_bins = n_features, n_bins
        self.min_val, self.max_val = min_val, max_val
        self.added: list[np.ndarray] = []
        self.median: np.ndarray | None = None

    def update(self, d: np.ndarray, add: bool) -> np.ndarray:
        length = abs(self.max_val - self.min_val)
        if self.median is None:
            self.median = d.copy()
        if add:
            self.added.append(d.copy())
        count = len(self.added)
        if count == 1:
            self.median = d.copy()
            return self.median
        hist = np.zeros((self.n_features, self.n_bins), dtype=np.int64)
        for a in self.added:
            conv = (a - self.min_val) * float(self.n_bins) / length
            conv[conv > self.n_bins - 1] = self.n_bins - 1
            conv[conv < 0] = 0
            hist[np.arange(self.n_features), conv.astype(np.int64)] += 1
        cutoff = (count + 1) // 2
        # first bin whose cumulative count reaches the cutoff, per feature
        j = np.argmax(np.cumsum(hist, axis=1) >= cutoff, axis=1)
        self.median = self.min_val + j * (length / self.n_bins) + 0.5 * length / self.n_bins
        return self.median


@pytest.mark.parametrize("use_numba", [True, False])
@pytest.mark.parametrize(
    "n_bins, lo, hi, scale",
    [(HOG_N_BINS, HOG_MIN_VAL, HOG_MAX_VAL, 0.4), (GEOM_N_BINS, GEOM_MIN_VAL, GEOM_MAX_VAL, 40.0)],
)
def test_median_matches_brute_force(use_numba, n_bins, lo, hi, scale):
    rng = np.random.default_rng(7)
    n = 57
    ours = HistogramMedian(n, n_bins, lo, hi, use_numba=use_numba)
    ref = BruteForceMedian(n, n_bins, lo, hi)
    # first call does not add (a failed first frame): every median is the first bin
    d0 = rng.normal(0, scale, n)
    ours.update(d0, add=False)
    np.testing.assert_array_equal(ours.median(), ref.update(d0, False))
    for step in range(60):
        d = rng.normal(scale / 4, scale, n)
        d[rng.random(n) < 0.05] = hi + 5 * scale  # beyond the range: top bin
        d[rng.random(n) < 0.05] = lo - 5 * scale  # below: bottom bin
        add = step % 7 != 3
        ours.update(d, add=add)
        expected = ref.update(d, add)
        np.testing.assert_array_equal(ours.median(), expected, err_msg=f"step {step}")
    assert ours.count == len(ref.added)


def test_single_descriptor_gives_it_back_until_a_second_is_added():
    h = HistogramMedian(3, 10, 0.0, 1.0)
    h.update(np.array([0.11, 0.52, 0.93]))
    np.testing.assert_array_equal(h.median(), [0.11, 0.52, 0.93])
    # a call that does not add, with one descriptor in: OpenFace copies this descriptor
    h.update(np.array([0.3, 0.3, 0.3]), add=False)
    np.testing.assert_array_equal(h.median(), [0.3, 0.3, 0.3])
    h.update(np.array([0.71, 0.02, 0.95]))
    # two values: cutoff (2 + 1) // 2 = 1, the lower value's bin centre
    np.testing.assert_allclose(h.median(), [0.15, 0.05, 0.95])


def test_numba_and_numpy_paths_agree_on_hog_sized_data():
    rng = np.random.default_rng(3)
    a = HistogramMedian(4464, HOG_N_BINS, HOG_MIN_VAL, HOG_MAX_VAL, use_numba=True)
    b = HistogramMedian(4464, HOG_N_BINS, HOG_MIN_VAL, HOG_MAX_VAL, use_numba=False)
    for _ in range(25):
        d = np.abs(rng.normal(0, 0.15, 4464)).astype(np.float32).astype(np.float64)
        a.update(d)
        b.update(d)
    np.testing.assert_array_equal(a.median(), b.median())
    np.testing.assert_array_equal(a.median_bins(), b.median_bins())


def test_bin_centres_and_binning_documented():
    h = HistogramMedian(1, HOG_N_BINS, HOG_MIN_VAL, HOG_MAX_VAL)
    width = (HOG_MAX_VAL - HOG_MIN_VAL) / HOG_N_BINS
    # 0 lies in bin int(0.005 / 0.001005) = 4
    assert h.bin_index(np.array([0.0]))[0] == 4
    assert h.bin_index(np.array([-1.0]))[0] == 0
    assert h.bin_index(np.array([2.0]))[0] == HOG_N_BINS - 1
    h.update(np.array([0.0]))
    h.update(np.array([0.0]))
    assert h.median()[0] == pytest.approx(HOG_MIN_VAL + 4 * width + width / 2, abs=1e-15)


def test_errors():
    with pytest.raises(InputError, match="descriptor has 2 values, expected 3"):
        HistogramMedian(3, 10, 0, 1).update(np.zeros(2))
    with pytest.raises(InputError, match="NaN"):
        HistogramMedian(2, 10, 0, 1).update(np.array([0.0, np.nan]))
    with pytest.raises(InputError, match="no descriptor"):
        HistogramMedian(2, 10, 0, 1).median()
    with pytest.raises(InputError, match="differ"):
        HistogramMedian(2, 10, 1, 1)
