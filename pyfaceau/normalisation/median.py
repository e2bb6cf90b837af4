"""OpenFace's running histogram median (person-specific normalisation).

OpenFace's dynamic AU models subtract a per-person "neutral face" estimate from each
frame's descriptor: the running median of the descriptors seen so far, approximated with
one fixed-bin histogram per feature (``FaceAnalyser::UpdateRunningMedian``,
``FaceAnalyser/src/FaceAnalyser.cpp``). :class:`HistogramMedian` reproduces it exactly:

- a value ``v`` goes to bin ``int(clip((v - min_val) * n_bins / length, 0, n_bins - 1))``
  (``length = |max_val - min_val|``; values outside the range land in the end bins);
- the median of a feature is the centre of the first bin whose cumulative count reaches
  ``(count + 1) // 2``: ``min_val + j * (length / n_bins) + 0.5 * length / n_bins``;
- while the histogram holds exactly one descriptor, the median is the descriptor passed
  in the latest call (not a bin centre) -- OpenFace's ``hist_count == 1`` branch;
- a call that does not add (a failed frame) still recomputes the median, so with an
  empty histogram every feature's median is the first bin's centre.

The update is incremental (each feature keeps its median bin and the count below it), so
a call costs O(n_features) instead of O(n_features * n_bins); numba compiles the kernel
when available, otherwise a vectorised NumPy recomputation gives the same numbers.
"""

from __future__ import annotations

import numpy as np

from .. import jit
from ..errors import InputError

__all__ = [
    "HistogramMedian",
    "HOG_N_BINS",
    "HOG_MIN_VAL",
    "HOG_MAX_VAL",
    "GEOM_N_BINS",
    "GEOM_MIN_VAL",
    "GEOM_MAX_VAL",
]

#: HOG histogram: 1000 bins over [-0.005, 1] (``num_bins_hog``, ``min_val_hog``,
#: ``max_val_hog`` in the ``FaceAnalyser`` constructor, FaceAnalyser.cpp).
HOG_N_BINS = 1000
HOG_MIN_VAL = -0.005
HOG_MAX_VAL = 1.0
#: Geometry histogram: 10000 bins over [-60, 60] (``num_bins_geom``, ``min_val_geom``,
#: ``max_val_geom``, FaceAnalyser.cpp).
GEOM_N_BINS = 10000
GEOM_MIN_VAL = -60.0
GEOM_MAX_VAL = 60.0



def _add_and_track_py(
    hist: np.ndarray,
    med_bin: np.ndarray,
    below: np.ndarray,
    desc: np.ndarray,
    alpha: float,
    beta: float,
    cutoff: int,
) -> None:
    """Add one descriptor to the histograms and move each median bin (plain Python).

    ``med_bin[i]`` is the first bin whose cumulative count reaches ``cutoff``;
    ``below[i]`` the count in the bins before it.
    """
    top = hist.shape[1] - 1
    for i in range(desc.shape[0]):
        v = desc[i] * alpha + beta
        if v > top:
            v = float(top)
        if v < 0.0:
            v = 0.0
        b = int(v)
        hist[i, b] += 1
        j = med_bin[i]
        s = below[i]
        if b < j:
            s += 1
        while s >= cutoff:
            j -= 1
            s -= hist[i, j]
        while s + hist[i, j] < cutoff:
            s += hist[i, j]
            j += 1
        med_bin[i] = j
        below[i] = s


_add_and_track = jit.njit(cache=True, nogil=True)(_add_and_track_py)


class HistogramMedian:
    """Running per-feature median from fixed-bin histograms, as OpenFace computes it.

    Parameters
    ----------
    n_features : length of the descriptors (4464 for HOG, 238 for geometry).
    n_bins : number of histogram bins per feature.
    min_val, max_val : the histogram's range (descriptor units).
    use_numba : compile the update kernel with numba (default: when numba is installed);
        ``False`` uses a vectorised NumPy recomputation with identical results.

    Notes
    -----
    Matches OpenFace ``FaceAnalyser::UpdateRunningMedian`` (FaceAnalyser.cpp) call for
    call, including the ``hist_count == 1`` branch and the recomputation on calls that do
    not add. The bin index is formed as OpenCV evaluates ``(d - min) * n_bins / length``:
    ``d * alpha + beta`` with ``alpha = n_bins * (1 / length)``,
    ``beta = (-min * n_bins) * (1 / length)``. OpenFace's clipping of negative HOG medians
    to 0 is not part of the tracker; :class:`pyfaceau.au.AUAnalyser` applies it.
    """

    def __init__(
        self,
        n_features: int,
        n_bins: int,
        min_val: float,
        max_val: float,
        *,
        use_numba: bool | None = None,
    ) -> None:
        if int(n_features) <= 0 or int(n_bins) <= 0:
            raise InputError(
                f"HistogramMedian: n_features and n_bins must be positive, got "
                f"{n_features} and {n_bins}"
            )
        if not (np.isfinite(min_val) and np.isfinite(max_val)) or min_val == max_val:
            raise InputError(
                f"HistogramMedian: min_val and max_val must be finite and differ, got "
                f"{min_val} and {max_val}"
            )
        if use_numba is None:
            use_numba = _add_and_track is not None
        elif use_numba and _add_and_track is None:  # pragma: no cover
            raise InputError("HistogramMedian: use_numba=True but numba is not installed")
        self.n_features = int(n_features)
        self.n_bins = int(n_bins)
        self.min_val = float(min_val)
        self.max_val = float(max_val)
        self.use_numba = bool(use_numba)
        length = self.max_val - self.min_val
        if length < 0:
            length = -length
        self.length = length
        # OpenCV's MatExpr folds "(d - min) * n / length" into d * alpha + beta.
        inv = 1.0 / length
        self._alpha = float(self.n_bins) * inv
        self._beta = (-self.min_val * float(self.n_bins)) * inv
        j = np.arange(self.n_bins, dtype=np.float64)
        self._centres = (self.min_val + j * (length / float(self.n_bins))) + (
            0.5 * length / float(self.n_bins)
        )
        self.reset()

    # -- state -------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every descriptor (a new person / video)."""
        self._hist = np.zeros((self.n_features, self.n_bins), dtype=np.int32)
        self._med_bin = np.zeros(self.n_features, dtype=np.int64)
        self._below = np.zeros(self.n_features, dtype=np.int64)
        self._count = 0
        self._median: np.ndarray | None = None

    @property
    def count(self) -> int:
        """Number of descriptors added (OpenFace's ``hist_count``)."""
        return self._count

    @property
    def histogram(self) -> np.ndarray:
        """(n_features, n_bins) int32 counts (read-only view)."""
        v = self._hist.view()
        v.flags.writeable = False
        return v

    def bin_index(self, descriptor: np.ndarray) -> np.ndarray:
        """(n_features,) int64 bin of each value, as the update assigns it."""
        d = self._check(descriptor)
        v = d * self._alpha + self._beta
        v = np.where(v > self.n_bins - 1, float(self.n_bins - 1), v)
        v = np.where(v < 0.0, 0.0, v)
        return v.astype(np.int64)

    def _check(self, descriptor: np.ndarray) -> np.ndarray:
        d = np.asarray(descriptor, dtype=np.float64).reshape(-1)
        if d.shape[0] != self.n_features:
            raise InputError(
                f"HistogramMedian.update: descriptor has {d.shape[0]} values, "
                f"expected {self.n_features}"
            )
        if not np.isfinite(d).all():
            raise InputError("HistogramMedian.update: descriptor has NaN or infinite values")
        return d

    # -- OpenFace's UpdateRunningMedian -------------------------------------------------
    def update(self, descriptor: np.ndarray, add: bool = True) -> None:
        """One call of OpenFace's ``UpdateRunningMedian``.

        Parameters
        ----------
        descriptor : (n_features,) float, the frame's descriptor.
        add : add it to the histograms (OpenFace's ``update``: the frame was tracked);
            with False the median is only recomputed (and, while the histograms hold
            exactly one descriptor, set to this one).
        """
        d = self._check(descriptor)
        if self._median is None:  # OpenFace: histogram.empty() -> median = descriptor
            self._median = d.copy()
        if add:
            self._count += 1
            cutoff = (self._count + 1) // 2
            if self.use_numba:
                _add_and_track(
                    self._hist, self._med_bin, self._below, d, self._alpha, self._beta, cutoff
                )
            else:
                rows = np.arange(self.n_features)
                self._hist[rows, self.bin_index(d)] += 1
                cum = np.cumsum(self._hist, axis=1)
                self._med_bin = np.argmax(cum >= cutoff, axis=1).astype(np.int64)
                self._below = cum[rows, self._med_bin] - self._hist[rows, self._med_bin]
        if self._count == 1:
            self._median = d.copy()
        else:
            # count 0 (nothing added yet): cutoff 0 is reached at bin 0.
            self._median = self._centres[self._med_bin]

    def median(self) -> np.ndarray:
        """(n_features,) float64, the current median (a copy).

        Raises
        ------
        InputError
            Before the first :meth:`update` (OpenFace's median is then an empty matrix).
        """
        if self._median is None:
            raise InputError("HistogramMedian.median: no descriptor has been given yet")
        return self._median.copy()

    def median_bins(self) -> np.ndarray:
        """(n_features,) int64, the bin of each feature's median (meaningful once count >= 1)."""
        return self._med_bin.copy()
