"""OpenFace's video tracking logic (``DetectLandmarksInVideo``): when to detect, when to
track, and what counts as a success.

A faithful port of, in OpenFace 2.2's ``lib/local/LandmarkDetector``:

- ``src/LandmarkDetectorFunc.cpp``: ``DetectLandmarksInVideo`` (the per-frame state
  machine), ``DetectLandmarksInImage`` / ``DetectLandmarksInImageMultiHypBasic`` (the
  11-rotation re-initialisation from a face box);
- ``src/LandmarkDetectorModel.cpp``: ``CLNF::DetectLandmarks`` (fit, then validate) and
  ``CLNF::Reset`` (the initial state);
- ``src/LandmarkDetectorUtils.cpp``: ``DetectSingleFaceMTCNN`` (the widest face is kept);
- ``src/LandmarkDetectorParameters.cpp``: the defaults FeatureExtraction uses.

The rules, per frame (``gray`` = the frame converted with ``COLOR_BGR2GRAY``):

1. If tracking is initialised, fit from the previous frame's parameters, with the small
   window sizes ``(0, 9, 7)`` if the previous frame succeeded, else the initial ones
   ``(11, 9, 7)``; validate (success when the validator's confidence > 0.725). A success
   sets ``failures_in_a_row = -1``, a failure increments it.
2. Run the face detector when tracking is not initialised and
   ``(failures_in_a_row + 1) % 12 == 0`` (so on the first frame, then every 12th frame
   while no face is found), or when it is initialised, the current frame failed and
   ``failures_in_a_row % 2 == 0`` (immediately after a failure, then every 2nd frame).
3. On a detection, keep the widest box; tracking becomes initialised; fit from the box
   with 11 rotation hypotheses at the initial window sizes and keep the most likely fit.
   If this was not the first detection and that fit fails validation, the previous
   parameters and landmarks are restored (not the confidence) and the frame fails;
   otherwise ``failures_in_a_row = -1`` and the frame *succeeds even if the validator
   rejected the fit* (OpenFace's "the validator might be wrong" rule on initial
   detection).
4. A frame without initialised tracking counts as a failure; more than 100 failures in
   a row un-initialise tracking.

The reported ``confidence`` is the last validator certainty (OpenFace's
``detection_certainty``); the landmarks and parameters are the model's current ones,
written by OpenFace even on failed frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np

from ...detection.types import FaceDetections
from ...errors import InputError
from ...pipeline.types import LandmarkResult, PartFit, eye_fits
from .model import WINDOW_SIZES_INIT, WINDOW_SIZES_SMALL

__all__ = [
    "ROTATION_HYPOTHESES",
    "TrackingParameters",
    "FitResultLike",
    "CLNFFitter",
    "FaceDetector",
    "LandmarkValidator",
    "BoxInitialiser",
    "TrackingState",
    "SequenceTracker",
    "select_face",
]

#: Rotations ``[rx, ry, rz]`` (radians) tried when fitting from a detected box
#: (``DetectLandmarksInImage``, ``params.multi_view`` is forced on by
#: ``DetectLandmarksInVideo``; ``LandmarkDetectorFunc.cpp``).
ROTATION_HYPOTHESES: tuple[tuple[float, float, float], ...] = (
    (0.0, 0.0, 0.0),
    (0.0, -0.5236, 0.0),
    (0.0, 0.5236, 0.0),
    (0.0, -0.96, 0.0),
    (0.0, 0.96, 0.0),
    (0.0, 0.0, 0.5236),
    (0.0, 0.0, -0.5236),
    (0.0, -1.57, 0.0),
    (0.0, 1.57, 0.0),
    (0.0, -1.22, 0.698),
    (0.0, 1.22, -0.698),
)

#: Validator confidence above which a fit is a success (``validation_boundary``).
VALIDATION_BOUNDARY = 0.725
#: Re-detect every this many failed frames while tracking (``reinit_video_every``); when
#: tracking is not initialised, every ``6 *`` this many frames (``DetectLandmarksInVideo``).
REINIT_VIDEO_EVERY = 2
UNINITIALISED_REDETECT_FACTOR = 6
#: More failures in a row than this un-initialise tracking (``DetectLandmarksInVideo``).
MAX_FAILURES_IN_A_ROW = 100
#: ``CLNF::Read`` / ``CLNF::Reset``: the model state before the first detection.
INITIAL_MODEL_LIKELIHOOD = -10.0
INITIAL_PARAMS_GLOBAL = (1.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class TrackingParameters:
    """The ``FaceModelParameters`` fields the tracking logic reads.

    Attributes
    ----------
    window_sizes_init : window size per patch-expert scale when (re)initialising or
        after a failed frame; 0 skips a scale. Extra entries beyond the model's scales
        are ignored by the fitter (OpenFace's CLNF has 3 scales, so ``(11, 9, 7)``).
    window_sizes_small : window sizes when tracking after a successful frame.
    validation_boundary : validator confidence above which a fit succeeds.
    reinit_video_every : see ``REINIT_VIDEO_EVERY``; 0 or less disables re-detection
        while tracking.
    validate_detections : run the validator (OpenFace default: True); without it a fit
        succeeds when it converges, with confidence 1.

    Defaults are OpenFace 2.2's for FeatureExtraction with ``main_clnf_general.txt``
    (``LandmarkDetectorParameters.cpp``).
    """

    window_sizes_init: tuple[int, ...] = WINDOW_SIZES_INIT
    window_sizes_small: tuple[int, ...] = WINDOW_SIZES_SMALL
    validation_boundary: float = VALIDATION_BOUNDARY
    reinit_video_every: int = REINIT_VIDEO_EVERY
    validate_detections: bool = True

    def __post_init__(self) -> None:
        for name in ("window_sizes_init", "window_sizes_small"):
            ws = tuple(int(w) for w in getattr(self, name))
            if not ws or any(w < 0 for w in ws) or all(w == 0 for w in ws):
                raise InputError(f"{name} must be non-negative window sizes, not all 0: {ws}")
            object.__setattr__(self, name, ws)
        if not 0.0 <= float(self.validation_boundary) <= 1.0:
            raise InputError(
                f"validation_boundary must be in [0, 1], got {self.validation_boundary}"
            )


class FitResultLike(Protocol):
    """What the CLNF fitter returns (``pyfaceau.landmarks.clnf.model.FitResult``)."""

    landmarks: np.ndarray  # (68, 2) pixels, after hierarchical refinement
    params_global: np.ndarray  # (6,)
    params_local: np.ndarray  # (34,)
    model_likelihood: float
    converged: bool  # CLNF::Fit's return value (False: face too small)


class CLNFFitter(Protocol):
    """The CLNF landmark fitter: ``CLNF::DetectLandmarks`` without the validation."""

    def fit(
        self,
        gray: np.ndarray,
        params_global: np.ndarray,
        params_local: np.ndarray,
        window_sizes: Sequence[int],
    ) -> FitResultLike: ...


class FaceDetector(Protocol):
    """A face detector with OpenFace's corrected boxes (``MTCNNDetector``)."""

    def detect(self, image: np.ndarray) -> FaceDetections: ...


class LandmarkValidator(Protocol):
    """The detection validator (:class:`~pyfaceau.landmarks.clnf.validator.DetectionValidator`)."""

    def check(self, gray: np.ndarray, landmarks: np.ndarray, orientation: np.ndarray) -> float: ...


class BoxInitialiser(Protocol):
    """The PDM's ``CalcParams`` from a box (:meth:`pyfaceau.pdm.PDM.calc_params_from_bbox`)."""

    @property
    def n_modes(self) -> int: ...

    def calc_params_from_bbox(
        self,
        bbox: Sequence[float],
        params_local: np.ndarray | None = None,
        rotation: Sequence[float] = (0.0, 0.0, 0.0),
    ) -> np.ndarray: ...


def box_xywh(box: np.ndarray) -> tuple[float, float, float, float]:
    """A detector box ``(x1, y1, x2, y2)`` as OpenFace's ``cv::Rect_<float>`` ``(x, y, w, h)``."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return (
        float(np.float32(x1)),
        float(np.float32(y1)),
        float(np.float32(x2 - x1)),
        float(np.float32(y2 - y1)),
    )


def select_face(detections: FaceDetections) -> tuple[float, float, float, float] | None:
    """The box OpenFace tracks among the detections (``DetectSingleFaceMTCNN``).

    Parameters
    ----------
    detections : the detector's faces, in its output order.

    Returns
    -------
    ``(x, y, width, height)`` pixels (float32 values) of the widest box, the first on
    ties; None without detections.
    """
    if len(detections) == 0:
        return None
    b = detections.boxes
    w = (b[:, 2] - b[:, 0]).astype(np.float32)
    return box_xywh(b[int(np.argmax(w))])  # first maximum, as OpenFace's strict '>'


@dataclass
class TrackingState:
    """The per-video state of OpenFace's ``CLNF`` object that the tracking logic uses.

    Attributes
    ----------
    n_modes : number of PDM shape parameters (34).
    n_points : number of landmarks (68).
    tracking_initialised : a face has been detected (and not lost for > 100 frames).
    detection_success : the last fit passed validation.
    failures_in_a_row : -1 after a success, then counts failed frames.
    detection_certainty : the last validator confidence (the ``confidence`` column).
    model_likelihood : the fitter's likelihood of the current fit.
    params_global : (6,) float64 ``[scale, rx, ry, rz, tx, ty]``.
    params_local : (n_modes,) float64.
    landmarks : (68, 2) float64 pixels.
    part_landmarks : part name -> (k, 2) float64 landmarks of the hierarchical part
        models (eyes: OpenFace's ``eye_lmk_*``), from the fitter's result when it has
        them. Like OpenFace's ``hierarchical_models``, they are not restored when a failed
        re-detection restores the main model.
    part_params : part name -> ``(params_global, params_local)`` of those part models.
    """

    n_modes: int
    n_points: int = 68
    tracking_initialised: bool = False
    detection_success: bool = False
    failures_in_a_row: int = -1
    detection_certainty: float = 0.0
    model_likelihood: float = INITIAL_MODEL_LIKELIHOOD
    params_global: np.ndarray = field(default_factory=lambda: np.array(INITIAL_PARAMS_GLOBAL))
    params_local: np.ndarray = field(init=False)
    landmarks: np.ndarray = field(init=False)
    part_landmarks: dict[str, np.ndarray] = field(default_factory=dict)
    part_params: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.params_local = np.zeros(self.n_modes, dtype=np.float64)
        self.landmarks = np.zeros((self.n_points, 2), dtype=np.float64)


@dataclass
class _Fit:
    params_global: np.ndarray
    params_local: np.ndarray
    landmarks: np.ndarray
    model_likelihood: float
    detection_certainty: float
    success: bool
    part_landmarks: dict[str, np.ndarray]
    part_params: dict[str, tuple[np.ndarray, np.ndarray]]


def _initial_part_state(
    parts: object,
) -> tuple[dict[str, np.ndarray], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Part name -> landmarks (all 0) and ``(params_global, params_local)`` of the part
    models after ``CLNF::Reset``."""
    landmarks, params = {}, {}
    for p in parts:  # type: ignore[attr-defined]
        pdm = p.core.pdm
        landmarks[p.name] = np.zeros((pdm.n_points, 2), dtype=np.float64)
        params[p.name] = (np.array(INITIAL_PARAMS_GLOBAL), np.zeros(pdm.n_modes))
    return landmarks, params


class SequenceTracker:
    """OpenFace's ``DetectLandmarksInVideo`` state machine around a CLNF fitter.

    Parameters
    ----------
    fitter : the CLNF fitter (``fit(gray, params_global, params_local, window_sizes)``).
    detector : the face detector, called on the frame as given (BGR).
    validator : the detection validator.
    initialiser : the PDM (``calc_params_from_bbox``, ``n_modes``), to place the model
        in a box.
    parameters : tracking parameters (OpenFace's defaults).

    Notes
    -----
    Matches ``DetectLandmarksInVideo`` (``LandmarkDetectorFunc.cpp``) with
    FeatureExtraction's settings: MTCNN detector, no face-template tracking
    (``use_face_template`` is off by default), no preferred detection point.
    """

    def __init__(
        self,
        fitter: CLNFFitter,
        detector: FaceDetector,
        validator: LandmarkValidator,
        initialiser: BoxInitialiser,
        parameters: TrackingParameters | None = None,
    ) -> None:
        self.fitter = fitter
        self.detector = detector
        self.validator = validator
        self.initialiser = initialiser
        self.parameters = parameters if parameters is not None else TrackingParameters()
        self.n_modes = int(initialiser.n_modes)
        self.state = TrackingState(n_modes=self.n_modes)
        self._boundary = float(np.float32(self.parameters.validation_boundary))

    def reset(self) -> None:
        """Forget the video (``CLNF::Reset``)."""
        self.state = TrackingState(n_modes=self.n_modes)

    # ---------------------------------------------------------------- CLNF::DetectLandmarks
    def _detect_landmarks(self, gray: np.ndarray, window_sizes: Sequence[int]) -> bool:
        """Fit from the current parameters, then validate; updates the state."""
        s = self.state
        r = self.fitter.fit(gray, s.params_global, s.params_local, window_sizes=window_sizes)
        s.params_global = np.asarray(r.params_global, dtype=np.float64).copy()
        s.params_local = np.asarray(r.params_local, dtype=np.float64).copy()
        s.landmarks = np.asarray(r.landmarks, dtype=np.float64).reshape(-1, 2).copy()
        s.model_likelihood = float(r.model_likelihood)
        s.part_landmarks = dict(getattr(r, "part_landmarks", None) or {})
        s.part_params = dict(getattr(r, "part_params", None) or {})
        converged = bool(r.converged)
        if self.parameters.validate_detections and converged:
            s.detection_certainty = float(
                self.validator.check(gray, s.landmarks, s.params_global[1:4])
            )
            s.detection_success = s.detection_certainty > self._boundary
        else:
            s.detection_success = converged
            s.detection_certainty = 1.0 if converged else 0.0
        return s.detection_success

    def _snapshot(self, success: bool) -> _Fit:
        s = self.state
        return _Fit(
            s.params_global.copy(),
            s.params_local.copy(),
            s.landmarks.copy(),
            s.model_likelihood,
            s.detection_certainty,
            success,
            s.part_landmarks,
            s.part_params,
        )

    # ------------------------------------------- DetectLandmarksInImageMultiHypBasic
    def _detect_from_box(self, gray: np.ndarray, box: tuple[float, float, float, float]) -> bool:
        """Fit from ``box`` under every rotation hypothesis; keep the most likely fit."""
        s = self.state
        best: _Fit | None = None
        zeros = np.zeros(self.n_modes, dtype=np.float64)
        for rotation in ROTATION_HYPOTHESES:
            s.params_local = zeros.copy()
            s.params_global = np.asarray(
                self.initialiser.calc_params_from_bbox(box, zeros, rotation), dtype=np.float64
            )
            success = self._detect_landmarks(gray, self.parameters.window_sizes_init)
            if best is None or best.model_likelihood < s.model_likelihood:
                best = self._snapshot(success)
        assert best is not None
        s.params_global, s.params_local, s.landmarks = (
            best.params_global,
            best.params_local,
            best.landmarks,
        )
        s.model_likelihood = best.model_likelihood
        s.detection_certainty = best.detection_certainty
        s.detection_success = best.success
        s.part_landmarks = best.part_landmarks
        s.part_params = best.part_params
        return best.success

    def fit_box(self, gray: np.ndarray, box: tuple[float, float, float, float]) -> LandmarkResult:
        """One face of a still image (OpenFace's ``DetectLandmarksInImage`` with a box):
        the model fitted from ``box`` (x, y, w, h) under every rotation hypothesis and
        validated, from a fresh state. The tracker is left holding this face."""
        self.reset()
        ok = self._detect_from_box(gray, box)
        return self.result(ok)

    # ------------------------------------------------------------ DetectLandmarksInVideo
    def step(self, frame: np.ndarray, gray: np.ndarray) -> bool:
        """Process one frame; returns OpenFace's per-frame ``success``.

        Parameters
        ----------
        frame : the frame given to the face detector ((H, W, 3) uint8 BGR).
        gray : (H, W) uint8, the frame in grey (fitting and validation).
        """
        s = self.state
        p = self.parameters
        initial_detection = not s.tracking_initialised

        if s.tracking_initialised:
            window_sizes = p.window_sizes_small if s.detection_success else p.window_sizes_init
            if self._detect_landmarks(gray, window_sizes):
                s.failures_in_a_row = -1
            else:
                s.failures_in_a_row += 1

        every = p.reinit_video_every
        redetect = (
            not s.tracking_initialised
            and every * UNINITIALISED_REDETECT_FACTOR != 0
            and (s.failures_in_a_row + 1) % (every * UNINITIALISED_REDETECT_FACTOR) == 0
        ) or (
            s.tracking_initialised
            and not s.detection_success
            and every > 0
            and s.failures_in_a_row % every == 0
        )
        if redetect:
            box = select_face(self.detector.detect(frame))
            if box is not None:
                s.tracking_initialised = True
                before = self._snapshot(s.detection_success)
                ok = self._detect_from_box(gray, box)
                if not initial_detection and not ok:
                    # restore the previous estimates (OpenFace keeps the new certainty
                    # and detection_success = false)
                    s.params_global = before.params_global
                    s.params_local = before.params_local
                    s.landmarks = before.landmarks
                    s.model_likelihood = before.model_likelihood
                    return False
                s.failures_in_a_row = -1
                return True

        if not s.tracking_initialised:
            s.failures_in_a_row += 1
        if s.failures_in_a_row > MAX_FAILURES_IN_A_ROW:
            s.tracking_initialised = False
        return s.detection_success

    def result(self, success: bool) -> LandmarkResult:
        """The current state as a :class:`LandmarkResult` (copies)."""
        s = self.state
        return LandmarkResult(
            success=bool(success),
            confidence=float(s.detection_certainty),
            landmarks=s.landmarks.copy(),
            params_global=s.params_global.copy(),
            params_local=s.params_local.copy(),
            eyes=self._eyes(),
        )

    def _eyes(self) -> tuple[PartFit, PartFit] | None:
        """The eye part models' current fits, when the fitter has both."""
        s = self.state
        parts = getattr(self.fitter, "parts", ())
        if not s.part_params:
            # Never fitted since the reset: OpenFace writes its eye models' initial state
            # (CLNF::Reset of each hierarchical model: params_global (1, 0, 0, 0, 0, 0),
            # zero shape, landmarks at 0), whose 3D eye landmarks are not 0.
            return eye_fits(parts, *_initial_part_state(parts))
        return eye_fits(parts, s.part_landmarks, s.part_params)
