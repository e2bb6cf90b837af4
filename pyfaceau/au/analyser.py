"""The AU session of one video: OpenFace's ``FaceAnalyser`` without the image work.

:class:`AUAnalyser` takes, per frame, the HOG descriptor of the aligned face, the
geometry descriptor (:func:`pyfaceau.features.geometry.geometry_descriptor`) and the
tracking success, and mirrors ``FaceAnalyser::AddNextFrame`` from the HOG onwards
(``FaceAnalyser/src/FaceAnalyser.cpp``):

1. the running medians are updated on odd frames only (``frames_tracking % 2 == 1``,
   counting every frame, failed or not), adding the descriptor only for tracked frames;
   negative HOG medians are set to 0 after each update;
2. the AUs are predicted with the current medians; failed frames get 0;
3. the first 3000 tracked frames' descriptors are kept (``max_init_frames``).

:meth:`AUAnalyser.finalize` mirrors what FeatureExtraction writes at the end of a video
(``PostprocessOutputFile``): with dynamic models the kept frames are predicted again with
the final medians (``PostprocessPredictions``), then :mod:`pyfaceau.au.postprocess`
shifts, clips and smooths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, NamedTuple

import numpy as np

from ..errors import InputError
from ..normalisation.median import (
    GEOM_MAX_VAL,
    GEOM_MIN_VAL,
    GEOM_N_BINS,
    HOG_MAX_VAL,
    HOG_MIN_VAL,
    HOG_N_BINS,
    HistogramMedian,
)
from .models import AUModels, load_au_models
from .postprocess import offline_intensity, offline_presence

__all__ = [
    "MAX_INIT_FRAMES",
    "HOG_LENGTH",
    "MEDIAN_UPDATE_EVERY",
    "AUFramePrediction",
    "AUVideoPrediction",
    "AUAnalyser",
    "predict_static_aus",
]

#: Tracked frames kept for the offline re-prediction (``max_init_frames``, FaceAnalyser.h).
MAX_INIT_FRAMES = 3000
#: HOG length of a 112x112 aligned face: 12 x 12 cells x 31 (``Extract_FHOG_descriptor``).
HOG_LENGTH = 12 * 12 * 31
#: The medians are updated on every other frame ("A small speedup", FaceAnalyser.cpp).
MEDIAN_UPDATE_EVERY = 2

_REPREDICT_CHUNK = 64


class AUFramePrediction(NamedTuple):
    """One frame's online predictions, as ``FaceAnalyser::GetCurrentAUsReg/Class``.

    Unpacks as ``intensity, presence``.

    Attributes
    ----------
    intensity : (n_intensity,) float64, raw (not clipped) intensities; 0 if failed.
    presence : (n_presence,) float64, 0/1; 0 if failed.
    """

    intensity: np.ndarray
    presence: np.ndarray


@dataclass(frozen=True)
class AUVideoPrediction:
    """A video's post-processed AUs, as FeatureExtraction writes them in the CSV.

    Unpacks as ``intensity, presence``.

    Attributes
    ----------
    intensity : (n_frames, n_intensity) float64, ``AUxx_r`` (before CSV rounding to 0.01).
    presence : (n_frames, n_presence) float64, ``AUxx_c``.
    intensity_names : e.g. ``("AU01", ..., "AU45")``; columns are ``f"{name}_r"``.
    presence_names : e.g. ``("AU01", ..., "AU28", "AU45")``; columns ``f"{name}_c"``.
    success : (n_frames,) bool.
    timestamps : (n_frames,) float64 seconds, as given.
    """

    intensity: np.ndarray
    presence: np.ndarray
    intensity_names: tuple[str, ...]
    presence_names: tuple[str, ...]
    success: np.ndarray
    timestamps: np.ndarray

    def __iter__(self) -> Iterator[np.ndarray]:
        """``intensity, presence = result``."""
        return iter((self.intensity, self.presence))

    def columns(self) -> dict[str, np.ndarray]:
        """``{"AU01_r": (n,), ..., "AU45_c": (n,)}`` in OpenFace's CSV order."""
        out = {f"{n}_r": self.intensity[:, i] for i, n in enumerate(self.intensity_names)}
        out.update({f"{n}_c": self.presence[:, i] for i, n in enumerate(self.presence_names)})
        return out


class _Rows:
    """A preallocated, doubling row buffer."""

    def __init__(self, width: int, dtype: type, capacity: int) -> None:
        self._a = np.zeros((max(capacity, 1), width), dtype=dtype)
        self.n = 0

    def append(self, row: np.ndarray) -> None:
        if self.n == self._a.shape[0]:
            grown = np.zeros((2 * self._a.shape[0], self._a.shape[1]), dtype=self._a.dtype)
            grown[: self.n] = self._a[: self.n]
            self._a = grown
        self._a[self.n] = row
        self.n += 1

    @property
    def data(self) -> np.ndarray:
        return self._a[: self.n]


class AUAnalyser:
    """AU session for one video (OpenFace's ``FaceAnalyser`` from the HOG onwards).

    Parameters
    ----------
    models : the AU models (default: :func:`~pyfaceau.au.models.load_au_models` with
        ``dynamic=True``, OpenFace's default for videos).
    dynamic : OpenFace's ``FaceAnalyser`` ``dynamic`` flag, which switches the offline
        re-prediction with the final medians and the cut-off shift; default
        ``models.dynamic`` (True for the dynamic model set, False for the static one).
    hog_length : HOG descriptor length (4464 for OpenFace's 112x112 aligned face).
    max_init_frames : tracked frames re-predicted at the end (OpenFace: 3000).
    capacity : initial number of frames the buffers hold (they grow as needed).
    defer_predictions : skip the online prediction of frames that :meth:`finalize`
        re-predicts anyway with the final medians (tracked frames among the first
        ``max_init_frames``, dynamic models), so their models run once, batched, at the
        end; :meth:`add_frame` returns NaN for them. The finalized output is identical.
    record : keep what :meth:`finalize` needs (every frame's predictions, the first
        ``max_init_frames`` descriptors). False for a live stream, which only reads the
        online values: memory then stays flat however long it runs.

    Examples
    --------
    >>> analyser = AUAnalyser(load_au_models())            # doctest: +SKIP
    >>> for hog, geom, ok, t in frames:                    # doctest: +SKIP
    ...     online = analyser.add_frame(hog, geom, ok, t)
    >>> result = analyser.finalize()                       # doctest: +SKIP
    >>> result.intensity.shape, result.presence.shape      # doctest: +SKIP
    ((n_frames, 17), (n_frames, 18))

    Notes
    -----
    Matches OpenFace ``FaceAnalyser::AddNextFrame``, ``PostprocessPredictions``,
    ``ExtractAllPredictionsOfflineReg/Class`` with ``online = false`` (video files).
    Deviations: the webcam-only online correction (``CorrectOnlineAUs``) and the
    multi-view median (OpenFace uses one frontal view) are not implemented;
    :meth:`finalize` may be called more than once (OpenFace re-predicts once).
    """

    def __init__(
        self,
        models: AUModels | None = None,
        *,
        dynamic: bool | None = None,
        hog_length: int = HOG_LENGTH,
        max_init_frames: int = MAX_INIT_FRAMES,
        capacity: int = 1024,
        defer_predictions: bool = False,
        record: bool = True,
    ) -> None:
        if defer_predictions and not record:
            raise InputError("AUAnalyser: defer_predictions needs record=True")
        self.record = bool(record)
        self.models = models if models is not None else load_au_models()
        self.dynamic = self.models.dynamic if dynamic is None else bool(dynamic)
        if not 0 < hog_length < self.models.n_features:
            raise InputError(
                f"AUAnalyser: hog_length {hog_length} does not fit the models' "
                f"{self.models.n_features}-value descriptor"
            )
        if max_init_frames < 0:
            raise InputError(f"AUAnalyser: max_init_frames must be >= 0, got {max_init_frames}")
        self.hog_length = int(hog_length)
        self.geom_length = self.models.n_features - self.hog_length
        self.max_init_frames = int(max_init_frames)
        self._capacity = int(capacity)
        self.defer_predictions = bool(defer_predictions)
        self._nan_reg = np.full(len(self.models.intensity_names), np.nan)
        self._nan_cls = np.full(len(self.models.presence_names), np.nan)
        self.reset()

    # -- state -------------------------------------------------------------------------
    def reset(self) -> None:
        """Start a new video (OpenFace's ``FaceAnalyser::Reset``)."""
        cap = self._capacity
        self._hog_hist = HistogramMedian(self.hog_length, HOG_N_BINS, HOG_MIN_VAL, HOG_MAX_VAL)
        self._geom_hist = HistogramMedian(
            self.geom_length, GEOM_N_BINS, GEOM_MIN_VAL, GEOM_MAX_VAL
        )
        self._median = np.zeros(self.models.n_features, dtype=np.float64)
        self._frames = 0
        self._frames_ok = 0
        self._init_hog = _Rows(self.hog_length, np.float32, min(cap, max(self.max_init_frames, 1)))
        self._init_geom = _Rows(self.geom_length, np.float64, min(cap, max(self.max_init_frames, 1)))
        self._init_index: list[int] = []
        self._reg = _Rows(len(self.models.intensity_names), np.float64, cap)
        self._cls = _Rows(len(self.models.presence_names), np.float64, cap)
        self._success: list[bool] = []
        self._timestamps: list[float] = []

    @property
    def n_frames(self) -> int:
        """Frames added so far."""
        return self._frames

    @property
    def intensity_names(self) -> tuple[str, ...]:
        return self.models.intensity_names

    @property
    def presence_names(self) -> tuple[str, ...]:
        return self.models.presence_names

    def median(self) -> np.ndarray:
        """(D,) float64, the current ``[HOG median (clipped at 0), geometry median]``."""
        return self._median.copy()

    # -- per frame ---------------------------------------------------------------------
    def add_frame(
        self,
        hog: np.ndarray | None,
        geom: np.ndarray | None,
        success: bool,
        timestamp: float = 0.0,
    ) -> AUFramePrediction:
        """Add one frame (OpenFace's ``AddNextFrame`` after the FHOG).

        Parameters
        ----------
        hog : (4464,) float HOG descriptor of the aligned face, OpenFace's order (see
            :func:`pyfaceau.features.fhog.hog_descriptor`); stored as float32, which is
            OpenFace's own precision. Ignored for failed frames, where OpenFace's FHOG of
            its black aligned face is all zeros.
        geom : (238,) float geometry descriptor; ignored (zeros) for failed frames.
        success : whether the landmarks were tracked in this frame.
        timestamp : seconds, kept for the result.

        Returns
        -------
        AUFramePrediction, this frame's online predictions (raw, before the offline
        post-processing that :meth:`finalize` applies).
        """
        success = bool(success)
        if success:
            h32 = self._vector(hog, self.hog_length, "hog", np.float32)
            g = self._vector(geom, self.geom_length, "geom", np.float64)
        else:
            h32 = np.zeros(self.hog_length, dtype=np.float32)
            g = np.zeros(self.geom_length, dtype=np.float64)
        h = h32.astype(np.float64)
        self._frames += 1
        if success:
            self._frames_ok += 1
        # Static models never read the medians; skip the work (same outputs).
        if self._frames % MEDIAN_UPDATE_EVERY == 1 and self.models.has_dynamic:
            self._hog_hist.update(h, add=success)
            hog_med = self._hog_hist.median()
            hog_med[hog_med < 0] = 0.0  # hog_desc_median.setTo(0, hog_desc_median < 0)
            self._geom_hist.update(g, add=success)
            self._median = np.concatenate([hog_med, self._geom_hist.median()])
        repredicted = (
            self.record and self.dynamic and success and self._frames_ok - 1 < self.max_init_frames
        )
        if not success:
            reg = np.zeros(len(self._nan_reg))
            cls = np.zeros(len(self._nan_cls))
        elif repredicted and self.defer_predictions:
            reg, cls = self._nan_reg.copy(), self._nan_cls.copy()
        else:
            x = np.concatenate([h, g])[None, :]
            reg, cls = self.models.predict(x, self._median)
            reg, cls = reg[0], cls[0]
        if not self.record:
            return AUFramePrediction(intensity=reg.copy(), presence=cls.copy())
        self._reg.append(reg)
        self._cls.append(cls)
        if repredicted:
            self._init_hog.append(h32)
            self._init_geom.append(g)
            self._init_index.append(self._frames - 1)
        self._success.append(success)
        self._timestamps.append(float(timestamp))
        return AUFramePrediction(intensity=reg.copy(), presence=cls.copy())

    @staticmethod
    def _vector(v: np.ndarray | None, n: int, name: str, dtype: type) -> np.ndarray:
        if v is None:
            raise InputError(f"AUAnalyser.add_frame: {name} is required for a tracked frame")
        a = np.asarray(v).reshape(-1)
        if a.shape[0] != n:
            raise InputError(f"AUAnalyser.add_frame: {name} has {a.shape[0]} values, expected {n}")
        a = a.astype(dtype)
        if not np.isfinite(a).all():
            raise InputError(f"AUAnalyser.add_frame: {name} has NaN or infinite values")
        return a

    # -- end of video ------------------------------------------------------------------
    def finalize(self) -> AUVideoPrediction:
        """The offline post-processed AUs of every frame so far.

        Returns
        -------
        AUVideoPrediction with OpenFace's final ``AUxx_r`` / ``AUxx_c`` values (before the
        CSV's rounding to 2 decimals). Failed frames are 0 before smoothing; as in
        OpenFace, smoothing can make them non-zero next to tracked frames.
        """
        if not self.record:
            raise InputError("AUAnalyser.finalize: this analyser was made with record=False")
        reg = self._reg.data.copy()
        cls = self._cls.data.copy()
        success = np.array(self._success, dtype=bool)
        if self.dynamic and self._init_index:
            idx = np.array(self._init_index, dtype=np.int64)
            hogs = self._init_hog.data
            geoms = self._init_geom.data
            for s in range(0, len(idx), _REPREDICT_CHUNK):
                e = min(s + _REPREDICT_CHUNK, len(idx))
                x = np.concatenate([hogs[s:e].astype(np.float64), geoms[s:e]], axis=1)
                reg[idx[s:e]], cls[idx[s:e]] = self.models.predict(x, self._median)
        return AUVideoPrediction(
            intensity=offline_intensity(
                reg, success, self.models.intensity_cutoffs, self.dynamic
            ),
            presence=offline_presence(cls),
            intensity_names=self.models.intensity_names,
            presence_names=self.models.presence_names,
            success=success,
            timestamps=np.array(self._timestamps, dtype=np.float64),
        )


def predict_static_aus(
    models: AUModels, hog: np.ndarray, geom: np.ndarray
) -> AUFramePrediction:
    """AUs of a single image (OpenFace's ``PredictStaticAUsAndComputeFeatures``).

    Parameters
    ----------
    models : static models (``load_au_models(dynamic=False)``).
    hog : (4464,) float HOG descriptor.
    geom : (238,) float geometry descriptor.

    Returns
    -------
    AUFramePrediction; intensities clipped to [0, 5] as OpenFace does for images.
    """
    if models.has_dynamic:
        raise InputError(
            "predict_static_aus: the models include dynamic predictors, which need a "
            "video's running median; load them with load_au_models(dynamic=False)"
        )
    n_geom = models.n_features - np.asarray(hog).reshape(-1).shape[0]
    g = np.asarray(geom, dtype=np.float64).reshape(-1)
    if g.shape[0] != n_geom:
        raise InputError(
            f"predict_static_aus: hog and geom have {models.n_features - n_geom} + "
            f"{g.shape[0]} values, the models expect {models.n_features}"
        )
    h = np.asarray(hog).reshape(-1).astype(np.float32).astype(np.float64)
    x = np.concatenate([h, g])[None, :]
    reg, cls = models.predict(x)
    reg = np.clip(reg[0], 0.0, 5.0)
    cls = cls[0]
    return AUFramePrediction(intensity=reg, presence=cls)
