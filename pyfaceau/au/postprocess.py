"""OpenFace's offline post-processing of a video's AU predictions.

After the last frame, FeatureExtraction calls ``FaceAnalyser::PostprocessOutputFile``,
which rewrites every row's AU columns with the output of
``ExtractAllPredictionsOfflineReg`` (intensities) and ``ExtractAllPredictionsOfflineClass``
(presence), ``FaceAnalyser/src/FaceAnalyser.cpp``. Given the per-frame raw predictions
(already re-predicted with the final running medians, see
:class:`pyfaceau.au.AUAnalyser`), these functions do the rest:

Intensity (``ExtractAllPredictionsOfflineReg``)
    1. dynamic models only: per AU with a cut-off ``c != -1``, the offset is the value at
       index ``int(n_ok * c)`` of the sorted predictions of the tracked frames;
    2. tracked frames: ``clip(value - offset, 0, 5)``; failed frames: 0;
    3. a 3-frame moving average over every frame but the first and last (failed frames
       included, so a failed frame next to tracked ones is not 0 afterwards).

Presence (``ExtractAllPredictionsOfflineClass``)
    A 7-frame moving average thresholded at 0.5 over frames ``3 .. n - 4`` (failed frames
    enter as 0); the first and last 3 frames keep their raw value.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

__all__ = [
    "INTENSITY_MIN",
    "INTENSITY_MAX",
    "INTENSITY_SMOOTHING_WINDOW",
    "PRESENCE_SMOOTHING_WINDOW",
    "PRESENCE_THRESHOLD",
    "NO_CUTOFF",
    "dynamic_offsets",
    "offline_intensity",
    "offline_presence",
]

#: Intensities are clipped to [0, 5] (``ExtractAllPredictionsOfflineReg``, FaceAnalyser.cpp).
INTENSITY_MIN = 0.0
INTENSITY_MAX = 5.0
#: Moving average of 3 frames on intensities (``window_size = 3``, FaceAnalyser.cpp).
INTENSITY_SMOOTHING_WINDOW = 3
#: Moving average of 7 frames on presence (``window_size = 7``, FaceAnalyser.cpp).
PRESENCE_SMOOTHING_WINDOW = 7
#: Smoothed presence below this is 0, otherwise 1 (FaceAnalyser.cpp).
PRESENCE_THRESHOLD = 0.5
#: Cut-off value meaning "no offset" (``GetCutoffs()[au_id] != -1``, FaceAnalyser.cpp).
NO_CUTOFF = -1.0


def _as_2d(raw: np.ndarray, name: str) -> np.ndarray:
    a = np.array(raw, dtype=np.float64, copy=True)
    if a.ndim != 2:
        raise InputError(f"{name}: expected an (n_frames, n_aus) array, got shape {a.shape}")
    return a


def _as_success(success: np.ndarray, n: int) -> np.ndarray:
    s = np.asarray(success).astype(bool).reshape(-1)
    if s.shape[0] != n:
        raise InputError(f"success: expected {n} flags, got {s.shape[0]}")
    return s


def dynamic_offsets(raw: np.ndarray, success: np.ndarray, cutoffs: np.ndarray) -> np.ndarray:
    """Per-AU offsets of the dynamic intensity models.

    Parameters
    ----------
    raw : (n_frames, n_aus) float64 raw intensities.
    success : (n_frames,) bool, tracked frames.
    cutoffs : (n_aus,) float64, the model's cut-off per AU; NaN for static models,
        ``-1`` for a dynamic model without shift.

    Returns
    -------
    (n_aus,) float64 offsets (0 where there is none or no frame was tracked).
    """
    a = _as_2d(raw, "raw")
    s = _as_success(success, a.shape[0])
    c = np.asarray(cutoffs, dtype=np.float64).reshape(-1)
    if c.shape[0] != a.shape[1]:
        raise InputError(f"cutoffs: expected {a.shape[1]} values, got {c.shape[0]}")
    good = np.sort(a[s], axis=0)
    n_ok = good.shape[0]
    offsets = np.zeros(a.shape[1], dtype=np.float64)
    if n_ok == 0:
        return offsets
    for k, cut in enumerate(c):
        if np.isnan(cut) or cut == NO_CUTOFF:
            continue
        idx = int(float(n_ok) * float(cut))
        if not 0 <= idx < n_ok:  # OpenFace's vector::at would throw
            raise InputError(f"cutoffs: value {cut} gives index {idx} outside 0..{n_ok - 1}")
        offsets[k] = good[idx, k]
    return offsets


def offline_intensity(
    raw: np.ndarray,
    success: np.ndarray,
    cutoffs: np.ndarray | None,
    dynamic: bool = True,
) -> np.ndarray:
    """OpenFace's ``ExtractAllPredictionsOfflineReg`` after the re-prediction.

    Parameters
    ----------
    raw : (n_frames, n_aus) float64 raw intensities (0 for failed frames).
    success : (n_frames,) bool.
    cutoffs : (n_aus,) float64 cut-offs (NaN for static models), or None for none.
    dynamic : OpenFace's ``dynamic`` flag; False disables the offsets.

    Returns
    -------
    (n_frames, n_aus) float64, the values FeatureExtraction writes as ``AUxx_r``.
    """
    a = _as_2d(raw, "raw")
    n, k = a.shape
    s = _as_success(success, n)
    if dynamic and cutoffs is not None:
        offsets = dynamic_offsets(a, s, cutoffs)
    else:
        offsets = np.zeros(k, dtype=np.float64)
    shifted = (a - offsets[None, :]) * 1.0  # OpenFace's "scaling = 1"
    shifted = np.where(shifted < INTENSITY_MIN, 0.0, shifted)
    shifted = np.where(shifted > INTENSITY_MAX, INTENSITY_MAX, shifted)
    shifted[~s] = 0.0
    out = shifted.copy()
    half = (INTENSITY_SMOOTHING_WINDOW - 1) // 2
    if n > 2 * half:
        # sum = 0; sum += v[i-1]; sum += v[i]; sum += v[i+1]; sum /= 3
        acc = shifted[: n - 2 * half].copy()
        for w in range(1, INTENSITY_SMOOTHING_WINDOW):
            acc = acc + shifted[w : n - 2 * half + w]
        out[half : n - half] = acc / INTENSITY_SMOOTHING_WINDOW
    return out


def offline_presence(raw: np.ndarray) -> np.ndarray:
    """OpenFace's ``ExtractAllPredictionsOfflineClass`` after the re-prediction.

    Parameters
    ----------
    raw : (n_frames, n_aus) float64 raw presence values (the SVMs' class values, 0 for
        failed frames).

    Returns
    -------
    (n_frames, n_aus) float64, the values FeatureExtraction writes as ``AUxx_c``.
    """
    a = _as_2d(raw, "raw")
    n = a.shape[0]
    out = a.copy()
    half = (PRESENCE_SMOOTHING_WINDOW - 1) // 2
    # OpenFace: "if (size > half) for (i = half; i < size - half; ++i)"
    if n > half and n > 2 * half:
        acc = a[: n - 2 * half].copy()
        for w in range(1, PRESENCE_SMOOTHING_WINDOW):
            acc = acc + a[w : n - 2 * half + w]
        mean = acc / PRESENCE_SMOOTHING_WINDOW
        out[half : n - half] = np.where(mean < PRESENCE_THRESHOLD, 0.0, 1.0)
    return out
