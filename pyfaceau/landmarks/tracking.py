"""One face tracked through a video: the sequence tracker of both paths, built from parts.

A :class:`LandmarkTracker` holds the parts and the rules, all read-only and shareable
between any number of faces and threads:

- a **detector** (``detect(image) -> FaceDetections``: MTCNN or RetinaFace), or
  detections given by the caller per frame;
- the **face-selection rule**: :meth:`FaceDetections.widest` (OpenFace's
  ``DetectSingleFaceMTCNN``);
- an **initialiser** that fits the landmarks from a detector box:
  :class:`RotationHypotheses` (OpenFace: CLNF from the box under 11 rotations, the most
  likely fit kept) or :class:`PFLDInitialiser` (fast path: PFLD in the box, ``CalcParams``
  of its landmarks, a CLNF fit at the initial window sizes; or PFLD alone);
- a **landmark step** per tracked frame: :class:`CLNFStep` (CLNF from the previous
  frame's parameters) or :class:`PFLDStep` (PFLD in the anchor box moved with the
  landmarks, optionally refined by :class:`~pyfaceau.refinement.TargetedCLNFRefiner`);
- OpenFace's **detection validator** (optional);
- a :class:`TrackingPolicy`: the validation cadence, the region verification cadence and
  the failure / re-detection rules, as data (:data:`OPENFACE_POLICY`,
  :data:`FAST_CLNF_POLICY`, :data:`FAST_PFLD_POLICY`).

Everything that belongs to one face lives in a :class:`TrackState` (parameters,
landmarks, counters, anchor box, confidence): ``state = tracker.new_state()``, then
``tracker.step(state, frame, gray)`` once per frame, in order.

The rules per frame (:meth:`LandmarkTracker.step`):

1. With ``redetect_every``: a face tracked for that many frames is dropped and detected
   again (a scheduled detection, not a lost face).
2. A tracked face is fitted by the landmark step (window sizes ``(0, 9, 7)`` after a
   successful frame, the initial ``(11, 9, 7)`` after a failed one). With an anchor
   (fast path) the frame's crop must have contrast, the landmarks a plausible extent and
   move, and every ``verify_every`` frames RetinaFace must find the face in the tracked
   region (its box becomes the anchor). The validator runs every ``validate_every``
   tracked frames and on verified frames; a success needs its confidence above
   ``validation_boundary``. A success sets ``failures_in_a_row = -1``, a failure
   increments it; with ``drop_on_failure`` (fast path) a failure ends the track at once.
3. The detector runs when no face is tracked and ``(failures_in_a_row + 1) %
   detect_while_lost_every == 0`` (OpenFace: the first frame, then every 12th while no
   face is found; fast path: every frame), or when a tracked frame failed and
   ``failures_in_a_row % redetect_after_failures == 0`` (OpenFace: at once, then every
   2nd frame).
4. A detection keeps the widest box and fits it with the initialiser, then validates.
   The first detection of a track succeeds even if the validator rejects it when
   ``trust_first_detection`` (OpenFace's "the validator might be wrong"); a rejected
   re-detection restores the previous fit (OpenFace, not the confidence) or ends the
   track (``drop_on_failure``).
5. More than ``max_failures_in_a_row`` failures un-initialise the track.

Mirrors, in OpenFace 2.2's ``lib/local/LandmarkDetector``: ``DetectLandmarksInVideo``,
``DetectLandmarksInImage`` / ``DetectLandmarksInImageMultiHypBasic``
(``LandmarkDetectorFunc.cpp``), ``CLNF::DetectLandmarks`` / ``CLNF::Reset``
(``LandmarkDetectorModel.cpp``), ``DetectSingleFaceMTCNN`` (``LandmarkDetectorUtils.cpp``)
and the defaults of ``LandmarkDetectorParameters.cpp``.

Notes
-----
Thread safety: a tracker and its parts keep no per-call state. The models they call are
read-only after loading except for memo caches (CCNF Sigma matrices per window size, KDE
tables, RetinaFace priors per input size) that fill on first use with values that do not
depend on the caller; two threads may compute the same entry once each, with the same
result. onnxruntime sessions may be run from several threads. A :class:`TrackState`
belongs to one face and must not be stepped from two threads at once.

Reading ahead: when the caller knows the next frame (:class:`NextFrame`, passed to
:meth:`LandmarkTracker.step`) and the validator has an executor, the validator checks
this frame's fit on the executor while the calling thread fits the next frame from this
frame's parameters, as if the check succeeds (:meth:`CLNFStep.fit_ahead`). The next step
uses that fit only if it would have fitted the same image from the same parameters and
window sizes (:meth:`CLNFStep.track`), otherwise it fits again: the results are those
of tracking frame by frame, and the validator leaves the critical path.
"""

from __future__ import annotations

import logging
import dataclasses
from dataclasses import dataclass, field, fields
from typing import Callable, Protocol, Sequence

import numpy as np

from ..detection.types import FaceDetections
from ..errors import InputError
from ..parallel import run_all
from .clnf.model import WINDOW_SIZES_INIT, WINDOW_SIZES_SMALL
from .pfld import crop_square
from .types import EYE_PART_NAMES, VALIDATION_BOUNDARY, LandmarkResult, eye_fits

__all__ = [
    "ROTATION_HYPOTHESES",
    "STILL_ROTATION_HYPOTHESES",
    "VALIDATION_BOUNDARY",
    "TrackingPolicy",
    "OPENFACE_POLICY",
    "FAST_CLNF_POLICY",
    "FAST_PFLD_POLICY",
    "TrackStats",
    "TrackState",
    "NextFrame",
    "ReadAhead",
    "FitAhead",
    "LandmarkFit",
    "CLNFStep",
    "PFLDStep",
    "RotationHypotheses",
    "PFLDInitialiser",
    "LandmarkTracker",
    "DetectionsArg",
    "box_xywh",
    "box_from_anchor",
    "select_face",
    "TrackingParameters",
    "openface_tracker",
    "SequenceTracker",
]

log = logging.getLogger(__name__)

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

#: The one hypothesis of a still: ``FaceLandmarkImg`` keeps ``multi_view`` at its default,
#: off (``FaceModelParameters::init``), so ``DetectLandmarksInImage`` tries the frontal
#: rotation only; only ``DetectLandmarksInVideo`` turns the 11 hypotheses on.
STILL_ROTATION_HYPOTHESES: tuple[tuple[float, float, float], ...] = ((0.0, 0.0, 0.0),)

#: Re-detect every this many failed frames while tracking (``reinit_video_every``); when
#: tracking is not initialised, every ``6 *`` this many frames (``DetectLandmarksInVideo``).
REINIT_VIDEO_EVERY = 2
UNINITIALISED_REDETECT_FACTOR = 6
#: More failures in a row than this un-initialise tracking (``DetectLandmarksInVideo``).
MAX_FAILURES_IN_A_ROW = 100
#: ``CLNF::Read`` / ``CLNF::Reset``: the model state before the first detection.
INITIAL_MODEL_LIKELIHOOD = -10.0
INITIAL_PARAMS_GLOBAL = (1.0, 0.0, 0.0, 0.0, 0.0, 0.0)

# Fast path's anchor rules (RetinaFace + PFLD; see FAST_CLNF_POLICY).
#: Minimum grey-level standard deviation of the crop for a tracked face (a black or
#: uniform frame fails).
MIN_CROP_STD = 4.0
#: Plausible landmark x-extent relative to the crop side (a face fills about 0.84 of it).
EXTENT_RANGE = (0.45, 1.25)
#: Largest move of the landmark centre between frames, fraction of the crop side.
MAX_CENTRE_SHIFT = 0.35
#: Region verification: square side as a multiple of the PFLD crop side, and input size.
VERIFY_REGION_SCALE = 2.0
VERIFY_REGION_SIZE = 160
#: On a region verification, the ratio (detector box width / landmark x-extent) may
#: differ from the anchor's by this factor before the face is re-initialised on the
#: verified box (CLNF drifted, or shrank onto part of the face).
MAX_BOX_RATIO_CHANGE = 1.25
#: Region verification cadence (tracked frames) when PFLD tracks, and with CLNF, where
#: OpenFace's validator checks the track every CLNF_VALIDATE_INTERVAL frames: on the sample
#: videos the region detector then adds nothing to the AUs or to success (docs/accuracy.md)
#: but stays as a guard against drift at a fifth of the cost.
VERIFY_INTERVAL = 3
CLNF_VERIFY_INTERVAL = 15
CLNF_VALIDATE_INTERVAL = 3


# ----------------------------------------------------------------------------- policy
@dataclass(frozen=True)
class TrackingPolicy:
    """When to validate, verify and re-detect, and what a failure does.

    Attributes
    ----------
    validation_boundary : validator confidence above which a fit succeeds. OpenFace
        compares with the float32 value of 0.725 (:data:`OPENFACE_POLICY`); the fast path
        has always compared with the double 0.725 (kept so that its output is unchanged).
    validate_every : run the validator every this many tracked frames (1: every frame, as
        OpenFace; 0: only on detections and verified frames).
    verify_every : with ``anchor``, run the region detector every this many tracked
        frames (0: never).
    redetect_every : drop a tracked face every this many frames and detect it again
        (0: never).
    redetect_after_failures : while tracking, re-detect when ``failures_in_a_row`` is a
        multiple of this (OpenFace's ``reinit_video_every``; 0 or less: never).
    detect_while_lost_every : without a tracked face, detect when ``failures_in_a_row + 1``
        is a multiple of this (OpenFace: ``6 * reinit_video_every``; 0: never).
    max_failures_in_a_row : more failures in a row un-initialise the track.
    drop_on_failure : a failed frame ends the track at once (the same frame is detected
        again; failed frames report no landmarks) instead of OpenFace's rules (keep the
        fit, re-fit with the initial windows, restore the previous fit when a
        re-detection fails, report the model's landmarks on failed frames).
    trust_first_detection : the first detection of a track succeeds even when the
        validator rejects it (OpenFace's ``DetectLandmarksInVideo``).
    detector_confidence : the detector's score is the confidence until a validator runs
        (fast path); otherwise a fit without a validator has confidence 1 (OpenFace).
    anchor : follow the face with a detector box moved with the landmarks (fast path):
        crop-contrast and landmark-plausibility checks, region verification.
    max_box_ratio_change : with ``anchor``, on a verified frame, re-initialise from the
        verified box when the box-width / landmark-extent ratio changed by more than this
        factor since the anchor (None: never).
    """

    validation_boundary: float = float(np.float32(VALIDATION_BOUNDARY))
    validate_every: int = 1
    verify_every: int = 0
    redetect_every: int = 0
    redetect_after_failures: int = REINIT_VIDEO_EVERY
    detect_while_lost_every: int = REINIT_VIDEO_EVERY * UNINITIALISED_REDETECT_FACTOR
    max_failures_in_a_row: int = MAX_FAILURES_IN_A_ROW
    drop_on_failure: bool = False
    trust_first_detection: bool = True
    detector_confidence: bool = False
    anchor: bool = False
    max_box_ratio_change: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.validation_boundary) <= 1.0:
            raise InputError(
                f"validation_boundary must be in [0, 1], got {self.validation_boundary}"
            )
        for name in ("validate_every", "verify_every", "redetect_every"):
            if int(getattr(self, name)) < 0:
                raise InputError(f"{name}: expected a count >= 0, got {getattr(self, name)}")


#: OpenFace 2.2's FeatureExtraction (``DetectLandmarksInVideo`` with its defaults).
OPENFACE_POLICY = TrackingPolicy()
#: The fast path with CLNF tracking: validator every 3 tracked frames, region check every
#: 15, a failure ends the track and the same frame is detected again.
FAST_CLNF_POLICY = TrackingPolicy(
    validation_boundary=VALIDATION_BOUNDARY,
    validate_every=CLNF_VALIDATE_INTERVAL,
    verify_every=CLNF_VERIFY_INTERVAL,
    redetect_after_failures=0,
    detect_while_lost_every=1,
    drop_on_failure=True,
    trust_first_detection=False,
    detector_confidence=True,
    anchor=True,
    max_box_ratio_change=MAX_BOX_RATIO_CHANGE,
)
#: The fast path with PFLD tracking (``--refine svr`` / ``--no-refine``): the CLNF policy
#: without the validator and the box-ratio check, region check every 3 tracked frames.
FAST_PFLD_POLICY = dataclasses.replace(
    FAST_CLNF_POLICY, validate_every=0, verify_every=VERIFY_INTERVAL, max_box_ratio_change=None
)


# ------------------------------------------------------------------------------ state
@dataclass
class TrackStats:
    """Counters of one track (kept across :meth:`TrackState.reset`).

    Attributes
    ----------
    frames : frames stepped.
    detections : full-frame detections run (or caller detections used).
    verifications : region verifications run.
    lost : tracked faces lost (failed frames with ``drop_on_failure``).
    reinitialisations : re-initialisations on a verified box (drift).
    """

    frames: int = 0
    detections: int = 0
    verifications: int = 0
    lost: int = 0
    reinitialisations: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: int(getattr(self, f.name)) for f in fields(self)}


@dataclass
class TrackState:
    """Everything one tracked face owns (OpenFace's per-video ``CLNF`` state and more).

    Attributes
    ----------
    n_modes : number of PDM shape parameters (34).
    n_points : number of landmarks (68).
    tracking_initialised : a face has been detected (and not lost for good); False
        means the tracker has lost its face (:attr:`lost`).
    detection_success : the last fit passed validation.
    failures_in_a_row : -1 after a success, then counts failed frames.
    detection_certainty : the confidence (the last validator certainty, or on the fast
        path the detector score until a validator runs).
    model_likelihood : the fitter's likelihood of the current fit.
    params_global : (6,) float64 ``[scale, rx, ry, rz, tx, ty]``.
    params_local : (n_modes,) float64.
    landmarks : (68, 2) float64 pixels (on the PFLD path: PFLD's, unrefined).
    part_landmarks : part name -> (k, 2) float64 landmarks of the hierarchical part
        models (eyes: OpenFace's ``eye_lmk_*``) from the last fit. Like OpenFace's
        ``hierarchical_models``, they are not restored when a failed re-detection restores
        the main model.
    part_params : part name -> ``(params_global, params_local)`` of those part models.
    anchor : ``(box (4,) x1 y1 x2 y2, landmarks (68, 2))``: the last detector box of the
        track and the landmarks fitted in it (fast path), or None.
    since_verify, since_detect, since_validate : tracked frames since the last region
        verification, detection and validation.
    stats : counters of this track.
    ahead : the next frame's fit made while this frame was validated, or None
        (:meth:`CLNFStep.fit_ahead`).
    """

    n_modes: int = 34
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
    anchor: tuple[np.ndarray, np.ndarray] | None = None
    since_verify: int = 0
    since_detect: int = 0
    since_validate: int = 0
    stats: TrackStats = field(default_factory=TrackStats)
    ahead: "FitAhead | None" = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.params_local = np.zeros(self.n_modes, dtype=np.float64)
        self.landmarks = np.zeros((self.n_points, 2), dtype=np.float64)

    @property
    def lost(self) -> bool:
        """No face is tracked (never found, dropped, or failed for too long)."""
        return not self.tracking_initialised

    @property
    def confidence(self) -> float:
        return float(self.detection_certainty)

    def reset(self) -> None:
        """Forget the face (``CLNF::Reset``); the counters in :attr:`stats` are kept."""
        fresh = TrackState(n_modes=self.n_modes, n_points=self.n_points, stats=self.stats)
        self.__dict__.update(fresh.__dict__)


# ------------------------------------------------------------------------------ parts
class FitLike(Protocol):
    """A landmark fit (:class:`pyfaceau.landmarks.clnf.model.FitResult` or
    :class:`LandmarkFit`)."""

    landmarks: np.ndarray  # (68, 2) pixels
    params_global: np.ndarray | None  # (6,)
    params_local: np.ndarray | None  # (34,)
    model_likelihood: float
    converged: bool


@dataclass
class LandmarkFit:
    """A fit without a PDM (PFLD's landmarks).

    Attributes
    ----------
    landmarks : (68, 2) float64 pixels.
    params_global, params_local : None (no PDM fit).
    model_likelihood : 0.
    converged : True.
    """

    landmarks: np.ndarray
    params_global: np.ndarray | None = None
    params_local: np.ndarray | None = None
    model_likelihood: float = 0.0
    converged: bool = True


class CLNFFitter(Protocol):
    """The CLNF landmark fitter: ``CLNF::DetectLandmarks`` without the validation."""

    def fit(
        self,
        gray: np.ndarray,
        params_global: np.ndarray,
        params_local: np.ndarray,
        window_sizes: Sequence[int],
    ) -> FitLike: ...


class FaceDetector(Protocol):
    """A face detector (``MTCNNDetector``, ``RetinaFaceDetector``)."""

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


def _window_sizes(name: str, sizes: Sequence[int]) -> tuple[int, ...]:
    """Window sizes per patch-expert scale as ints; :class:`InputError` unless they are
    non-negative and not all 0 (0 skips a scale)."""
    ws = tuple(int(v) for v in sizes)
    if not ws or any(v < 0 for v in ws) or all(v == 0 for v in ws):
        raise InputError(f"{name} must be non-negative window sizes, not all 0: {ws}")
    return ws


class NextFrame:
    """The frame the next :meth:`LandmarkTracker.step` will receive, known in advance
    (a video read ahead).

    Parameters
    ----------
    image : ``(H, W, 3)`` uint8 BGR, the very array the next step will be given.
    to_gray : the conversion the caller applies to it (``image -> (H, W) uint8``); run
        at most once, when :attr:`gray` is first needed.
    """

    def __init__(self, image: np.ndarray, to_gray: Callable[[np.ndarray], np.ndarray]) -> None:
        self.image = image
        self._to_gray = to_gray
        self._gray: np.ndarray | None = None

    @property
    def gray(self) -> np.ndarray:
        """``(H, W)`` uint8, the image in grey (computed once)."""
        if self._gray is None:
            self._gray = self._to_gray(self.image)
        return self._gray


class ReadAhead:
    """A front end's frames announced ahead: each becomes a :class:`NextFrame` for the
    step before it, and its grey image, once computed, serves its own step.

    Parameters
    ----------
    to_gray : the front end's grey conversion (``(H, W, 3) uint8 -> (H, W) uint8``).
    """

    def __init__(self, to_gray: Callable[[np.ndarray], np.ndarray]) -> None:
        self._to_gray = to_gray
        self._announced: NextFrame | None = None
        self._current: NextFrame | None = None

    def announce(self, image: np.ndarray) -> None:
        """``image`` is the frame after the one the next :meth:`take` receives."""
        self._announced = NextFrame(image, self._to_gray)

    def take(self, image: np.ndarray) -> tuple[np.ndarray, NextFrame | None]:
        """This frame's grey image and the next frame, if announced."""
        current, self._current = self._current, self._announced
        self._announced = None
        if current is not None and current.image is image:
            return current.gray, self._current
        return self._to_gray(image), self._current


@dataclass(frozen=True)
class FitAhead:
    """A fit of the next frame made before this frame's rules ran: valid for the step
    that receives ``image`` with the same parameters and window sizes.

    Attributes
    ----------
    image, gray : the next frame and the grey image fitted (identity is the key: the same
        array objects).
    params_global, params_local : copies of the parameters the fit started from.
    window_sizes : the window sizes it used.
    fit : the fit.
    """

    image: np.ndarray
    gray: np.ndarray
    params_global: np.ndarray
    params_local: np.ndarray
    window_sizes: tuple[int, ...]
    fit: "FitLike"

    def matches(
        self, image: np.ndarray, gray: np.ndarray, state: "TrackState", window_sizes: tuple[int, ...]
    ) -> bool:
        """Whether a fit of ``gray`` (``image``'s) from ``state`` at ``window_sizes`` is
        this one."""
        return (
            image is self.image
            and gray is self.gray
            and window_sizes == self.window_sizes
            and np.array_equal(state.params_global, self.params_global)
            and np.array_equal(state.params_local, self.params_local)
        )


class CLNFStep:
    """Landmark step: a CLNF fit from the previous frame's parameters.

    Parameters
    ----------
    fitter : the CLNF (``fit(gray, params_global, params_local, window_sizes, ...)``).
    window_sizes_init : window sizes per scale on detections and after a failed frame.
    window_sizes_small : window sizes after a successful frame.
    refine_hierarchical : passed to the fitter when not None (None: the fitter's default,
        OpenFace's part models on).
    tracking_parameters : the fitter's ``parameters`` on tracked frames (None: its
        default, OpenFace's; the fast path uses 4 NU-RLMS iterations).

    Notes
    -----
    Extra window sizes beyond the model's scales are ignored by the fitter (OpenFace's
    CLNF has 3 scales, so ``(11, 9, 7)``).
    """

    def __init__(
        self,
        fitter: CLNFFitter,
        *,
        window_sizes_init: Sequence[int] = WINDOW_SIZES_INIT,
        window_sizes_small: Sequence[int] = WINDOW_SIZES_SMALL,
        refine_hierarchical: bool | None = None,
        tracking_parameters: object | None = None,
    ) -> None:
        self.fitter = fitter
        self.window_sizes_init = _window_sizes("window_sizes_init", window_sizes_init)
        self.window_sizes_small = _window_sizes("window_sizes_small", window_sizes_small)
        self.refine_hierarchical = refine_hierarchical
        self.tracking_parameters = tracking_parameters

    def fit(
        self,
        gray: np.ndarray,
        params_global: np.ndarray,
        params_local: np.ndarray,
        window_sizes: Sequence[int],
        tracking: bool = False,
    ) -> FitLike:
        """One CLNF fit (``tracking``: with :attr:`tracking_parameters`)."""
        kwargs = self._parts_kwargs()
        if tracking and self.tracking_parameters is not None:
            kwargs["parameters"] = self.tracking_parameters
        return self.fitter.fit(gray, params_global, params_local, window_sizes=window_sizes,
                               **kwargs)

    def fit_main(
        self,
        gray: np.ndarray,
        params_global: np.ndarray,
        params_local: np.ndarray,
        window_sizes: Sequence[int],
    ) -> object:
        """The main model's part of :meth:`fit` (untracked parameters): the fitter's
        ``fit_main``; finish it with :meth:`refine`."""
        return self.fitter.fit_main(gray, params_global, params_local,  # type: ignore[attr-defined]
                                    window_sizes=window_sizes)

    def refine(self, main_fit: object) -> FitLike:
        """:meth:`fit_main`'s result finished as :meth:`fit` finishes it (part models)."""
        return self.fitter.refine(main_fit, **self._parts_kwargs())  # type: ignore[attr-defined]

    def _parts_kwargs(self) -> dict[str, object]:
        """The fitter's part-model switch when set (None: the fitter's default)."""
        if self.refine_hierarchical is None:
            return {}
        return {"refine_hierarchical": self.refine_hierarchical}

    def window_sizes(self, state: TrackState) -> tuple[int, ...]:
        """The window sizes of a tracked frame: small after a successful frame."""
        return self.window_sizes_small if state.detection_success else self.window_sizes_init

    def track(
        self, frame: np.ndarray, gray: np.ndarray, state: TrackState, box: np.ndarray | None
    ) -> FitLike:
        """The next frame's fit from ``state``'s parameters (``box`` is not used); the fit
        made ahead (:meth:`fit_ahead`) when it started from the same image, parameters and
        window sizes."""
        ws = self.window_sizes(state)
        ahead, state.ahead = state.ahead, None
        if ahead is not None and ahead.matches(frame, gray, state, ws):
            return ahead.fit
        return self.fit(gray, state.params_global, state.params_local, ws, tracking=True)

    def fit_ahead(self, upcoming: NextFrame, state: TrackState) -> FitAhead:
        """Fit ``upcoming`` from ``state``'s current parameters as :meth:`track` will if
        this frame succeeds (window sizes after a success)."""
        pg, pl = state.params_global.copy(), state.params_local.copy()
        ws = self.window_sizes_small
        gray = upcoming.gray
        fit = self.fit(gray, pg, pl, ws, tracking=True)
        return FitAhead(upcoming.image, gray, pg, pl, ws, fit)

    @property
    def has_eye_models(self) -> bool:
        """Whether the fits carry OpenFace's two eye part models (the part models run and
        the fitter has both eyes)."""
        if self.refine_hierarchical is False:
            return False
        names = {getattr(p, "name", None) for p in getattr(self.fitter, "parts", ())}
        return all(n in names for n in EYE_PART_NAMES)

    def report(self, frame: np.ndarray, state: TrackState, success: bool) -> LandmarkResult:
        """``state``'s fit as a result (copies), with the eye models' fits when the fitter
        has part models."""
        parts = getattr(self.fitter, "parts", ())
        if self.has_eye_models and not state.part_params:
            # Never fitted since the reset: OpenFace writes its eye models' initial state
            # (CLNF::Reset of each hierarchical model: params_global (1, 0, 0, 0, 0, 0),
            # zero shape, landmarks at 0), whose 3D eye landmarks are not 0.
            eyes = eye_fits(parts, *_initial_part_state(parts))
        else:
            eyes = eye_fits(parts, state.part_landmarks, state.part_params)
        return LandmarkResult(
            success=bool(success),
            confidence=float(state.detection_certainty),
            landmarks=state.landmarks.copy(),
            params_global=state.params_global.copy(),
            params_local=state.params_local.copy(),
            eyes=eyes,
            validated=bool(state.detection_success),
        )


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


class PFLDStep:
    """Landmark step: PFLD in the tracked box, optionally refined.

    Parameters
    ----------
    landmarker : a :class:`~pyfaceau.landmarks.pfld.PFLDLandmarker`
        (``predict(image_bgr, box) -> (68, 2)``).
    refiner : an optional refiner of the reported landmarks
        (``refine_in_image(frame_bgr, landmarks) -> Refinement``, ``--refine svr``:
        :class:`~pyfaceau.refinement.TargetedCLNFRefiner`); the tracking always uses
        PFLD's unrefined points (the anchor rule was calibrated on them).
    """

    def __init__(self, landmarker: object, refiner: object | None = None) -> None:
        self.landmarker = landmarker
        self.refiner = refiner

    def track(
        self, frame: np.ndarray, gray: np.ndarray, state: TrackState, box: np.ndarray | None
    ) -> LandmarkFit:
        assert box is not None, "PFLDStep needs an anchored policy"
        return LandmarkFit(self.landmarker.predict(frame, box))

    def report(self, frame: np.ndarray, state: TrackState, success: bool) -> LandmarkResult:
        lm = state.landmarks
        if self.refiner is None:
            return LandmarkResult(success=bool(success), confidence=state.detection_certainty,
                                  landmarks=lm)
        ref = self.refiner.refine_in_image(frame, lm)
        return LandmarkResult(
            success=bool(success),
            confidence=state.detection_certainty,
            landmarks=ref.landmarks,
            params_global=ref.params_global,
            params_local=ref.params_local,
        )


def box_xywh(box: np.ndarray) -> tuple[float, float, float, float]:
    """A detector box ``(x1, y1, x2, y2)`` as OpenFace's ``cv::Rect_<float>`` ``(x, y, w, h)``."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return (
        float(np.float32(x1)),
        float(np.float32(y1)),
        float(np.float32(x2 - x1)),
        float(np.float32(y2 - y1)),
    )


class RotationHypotheses:
    """OpenFace's initialiser: CLNF fitted from the box under every rotation hypothesis at
    the initial window sizes; the most likely fit is kept
    (``DetectLandmarksInImageMultiHypBasic``).

    Parameters
    ----------
    step : the CLNF step (its fitter and initial window sizes).
    pdm : places the model in a box (``calc_params_from_bbox``, ``n_modes``).
    rotations : ``[rx, ry, rz]`` hypotheses (:data:`ROTATION_HYPOTHESES`).

    Notes
    -----
    OpenFace validates every hypothesis; only the kept one's verdict is used, so only
    that one is validated here (by the tracker), with the same result.
    """

    def __init__(
        self,
        step: CLNFStep,
        pdm: BoxInitialiser,
        rotations: Sequence[Sequence[float]] = ROTATION_HYPOTHESES,
    ) -> None:
        self.step = step
        self.pdm = pdm
        self.rotations = tuple(tuple(float(v) for v in r) for r in rotations)

    def __call__(self, frame: np.ndarray, gray: np.ndarray, box: np.ndarray) -> FitLike:
        """The most likely fit from a detector box ``(x1, y1, x2, y2)``."""
        return self.fit_xywh(gray, box_xywh(box))

    def fit_xywh(self, gray: np.ndarray, xywh: Sequence[float]) -> FitLike:
        """The most likely fit from OpenFace's box ``(x, y, width, height)``."""
        n_modes = int(self.pdm.n_modes)
        zeros = np.zeros(n_modes, dtype=np.float64)

        fitter = self.step.fitter
        # The choice is by the main model's likelihood, which the part models do not
        # change: a fitter that can stop before them (CLNF.fit_main) runs them on the
        # chosen hypothesis only, with the same result.
        in_two = hasattr(fitter, "fit_main") and hasattr(fitter, "refine")
        fit = self.step.fit_main if in_two else self.step.fit

        def fit_one(rotation: tuple[float, ...]) -> FitLike:
            glob = np.asarray(self.pdm.calc_params_from_bbox(xywh, zeros, rotation),
                              dtype=np.float64)
            return fit(gray, glob, zeros.copy(), self.step.window_sizes_init)

        # The hypotheses are independent fits: side by side when the fitter has threads
        # (each fit alone, kept in hypothesis order: the same choice as one by one).
        executor = getattr(fitter, "executor", None) if getattr(fitter, "threads", 1) > 1 else None
        best = None
        for candidate in run_all(executor, [(fit_one, (r,)) for r in self.rotations]):
            if best is None or float(best.model_likelihood) < float(candidate.model_likelihood):
                best = candidate
        assert best is not None
        return self.step.refine(best) if in_two else best


class PFLDInitialiser:
    """The fast path's initialiser: PFLD's landmarks in the box, then (with a CLNF step)
    ``CalcParams`` of them and a CLNF fit at the initial window sizes.

    Parameters
    ----------
    landmarker : a :class:`~pyfaceau.landmarks.pfld.PFLDLandmarker`.
    step : a :class:`CLNFStep` to refine PFLD's points (PFLD's points are 2-5 px off, as
        far as a box initialisation is), or None for PFLD alone.
    pdm : the PDM of ``step``'s fitter (for ``CalcParams``).

    Returns (when called) None when PFLD's points are not finite, or the CLNF fit did not
    converge or is not finite.
    """

    def __init__(self, landmarker: object, step: CLNFStep | None = None,
                 pdm: object | None = None) -> None:
        if step is not None and pdm is None:
            raise InputError("PFLDInitialiser: a CLNF step needs its PDM (pdm=)")
        self.landmarker = landmarker
        self.step = step
        self.pdm = pdm

    def __call__(self, frame: np.ndarray, gray: np.ndarray, box: np.ndarray) -> FitLike | None:
        lm = self.landmarker.predict(frame, box)
        if self.step is None:
            return LandmarkFit(lm)
        if not np.isfinite(lm).all():
            return None
        from ..pdm import calc_params

        glob, loc = calc_params(self.pdm, lm)
        fit = self.step.fit(gray, glob, loc, self.step.window_sizes_init)
        if not fit.converged or not np.isfinite(fit.landmarks).all():
            return None
        return fit


def box_from_anchor(
    anchor_box: np.ndarray, anchor_landmarks: np.ndarray, landmarks: np.ndarray
) -> np.ndarray:
    """A detector box moved and scaled with the landmarks since it was detected.

    Parameters
    ----------
    anchor_box : ``(4,)`` ``(x1, y1, x2, y2)`` pixels, a detector box.
    anchor_landmarks : ``(68, 2)`` the landmarks fitted in that box.
    landmarks : ``(68, 2)`` the current landmarks.

    Returns
    -------
    ``(4,)`` float64 box: centre shifted by the landmarks' mean displacement, size scaled
    by the ratio of the landmarks' mean extents (x and y). Keeping the crop a detector box
    keeps PFLD on the crops it was paired with (mean error against OpenFace, 11 sample
    videos: 3.53 px; 3.63 px for a box calibrated on the landmark extent).
    """
    scale = float(np.ptp(landmarks, axis=0).mean() / np.ptp(anchor_landmarks, axis=0).mean())
    centre = (anchor_box[:2] + anchor_box[2:]) / 2.0 + (
        landmarks.mean(axis=0) - anchor_landmarks.mean(axis=0)
    )
    half = (anchor_box[2:] - anchor_box[:2]) / 2.0 * scale
    return np.concatenate([centre - half, centre + half]).astype(np.float64)


def _box_extent_ratio(box: np.ndarray, landmarks: np.ndarray) -> float:
    """Box width over the landmarks' x-extent."""
    return float((box[2] - box[0]) / max(float(np.ptp(landmarks[:, 0])), 1e-6))


def _crop_has_contrast(frame: np.ndarray, sx: int, sy: int, size: int) -> bool:
    h, w = frame.shape[:2]
    x1, y1 = max(sx, 0), max(sy, 0)
    x2, y2 = min(sx + size, w), min(sy + size, h)
    if x2 - x1 < size // 2 or y2 - y1 < size // 2:
        return False  # mostly outside the image
    step = max(1, size // 32)
    patch = frame[y1:y2:step, x1:x2:step, 1]
    return float(patch.std()) >= MIN_CROP_STD


def _plausible(lm: np.ndarray, prev: np.ndarray, size: int) -> bool:
    if not np.isfinite(lm).all():
        return False
    extent = float(lm[:, 0].max() - lm[:, 0].min()) / size
    if not EXTENT_RANGE[0] <= extent <= EXTENT_RANGE[1]:
        return False
    shift = float(np.hypot(*(lm.mean(axis=0) - prev.mean(axis=0)))) / size
    return shift <= MAX_CENTRE_SHIFT


def select_face(detections: FaceDetections) -> tuple[float, float, float, float] | None:
    """The box a tracker follows among the detections (:meth:`FaceDetections.widest`, as
    OpenFace's ``DetectSingleFaceMTCNN``), as ``(x, y, width, height)`` float32 values;
    None without detections."""
    if len(detections) == 0:
        return None
    return box_xywh(detections.boxes[detections.widest()])


#: Detections for one frame given by the caller: the detections, a callable returning
#: them (called only when the rules ask for a detection), or None (the tracker's detector).
DetectionsArg = FaceDetections | Callable[[], FaceDetections] | None


# ---------------------------------------------------------------------------- tracker
class LandmarkTracker:
    """The sequence tracker: parts and rules shared by any number of tracked faces.

    Parameters
    ----------
    step : the landmark step (:class:`CLNFStep` or :class:`PFLDStep`).
    initialiser : fits a detector box (:class:`RotationHypotheses`,
        :class:`PFLDInitialiser`); ``(frame, gray, box (4,) x1 y1 x2 y2) -> fit or None``.
    detector : the face detector, called on the frame as given (BGR) when no detections
        are passed to :meth:`step`; also runs the region verification
        (``detect_region``) with an anchored policy. May be None when the caller always
        gives detections and the policy verifies nothing.
    validator : OpenFace's detection validator, or None.
    policy : the rules (:data:`OPENFACE_POLICY` by default).
    n_modes : PDM shape parameters of the state (34).

    Notes
    -----
    Holds no per-face state: create one :class:`TrackState` per face with
    :meth:`new_state` and pass it to :meth:`step`.
    """

    def __init__(
        self,
        step: CLNFStep | PFLDStep,
        initialiser: Callable[[np.ndarray, np.ndarray, np.ndarray], FitLike | None],
        detector: FaceDetector | None,
        validator: LandmarkValidator | None = None,
        policy: TrackingPolicy = OPENFACE_POLICY,
        n_modes: int = 34,
    ) -> None:
        if policy.anchor and policy.verify_every and not hasattr(detector, "detect_region"):
            raise InputError(
                "policy.verify_every needs a detector with detect_region (RetinaFaceDetector)"
            )
        self.step_part = step
        self.initialiser = initialiser
        self.detector = detector
        self.validator = validator
        self.policy = policy
        self.n_modes = int(n_modes)

    def new_state(self) -> TrackState:
        """A state for a new face (nothing tracked yet)."""
        return TrackState(n_modes=self.n_modes)

    # ------------------------------------------------------------------ per frame
    def step(
        self,
        state: TrackState,
        frame: np.ndarray,
        gray: np.ndarray,
        detections: DetectionsArg = None,
        upcoming: NextFrame | None = None,
    ) -> LandmarkResult:
        """Track ``state``'s face into the next frame.

        Parameters
        ----------
        state : the face's state (changed in place).
        frame : ``(H, W, 3)`` uint8 BGR frame (detector, PFLD, crop checks).
        gray : ``(H, W)`` uint8, the frame in grey (``cv2.COLOR_BGR2GRAY``; CLNF and
            validator); may be None when the tracker has neither (PFLD alone or with the
            SVR refiner).
        detections : the frame's detections when the caller has them (several faces:
            the detection assigned to this face), or a callable returning them, called only
            when the rules ask for a detection; None: the tracker's detector runs then. A
            new state's first step detects, so passing one box initialises from it.
        upcoming : the frame the next step of this state will receive, when known: its
            fit may then start while this frame is validated (see the module notes).

        Returns
        -------
        LandmarkResult : ``success`` is OpenFace's per-frame success; ``state.lost`` tells
        whether the face is still tracked.
        """
        success = self.advance(state, frame, gray, detections, upcoming)
        return self.result(state, success, frame)

    def start(
        self,
        state: TrackState,
        frame: np.ndarray,
        gray: np.ndarray,
        detections: FaceDetections,
        index: int = 0,
    ) -> LandmarkResult:
        """Start tracking a face from a given detection (a new face found by the caller):
        ``state`` is reset and this frame's step initialises from ``detections[index]``
        (a first detection: OpenFace's policy trusts it even if the validator rejects it).

        Returns
        -------
        The frame's :class:`LandmarkResult`, as :meth:`step`.
        """
        if not 0 <= int(index) < len(detections):
            raise InputError(f"index: expected 0 <= index < {len(detections)}, got {index}")
        state.reset()
        return self.step(state, frame, gray, detections.select(int(index)))

    def advance(
        self,
        state: TrackState,
        frame: np.ndarray,
        gray: np.ndarray,
        detections: DetectionsArg = None,
        upcoming: NextFrame | None = None,
    ) -> bool:
        """:meth:`step` without building the result; returns the frame's success."""
        s, p = state, self.policy
        s.stats.frames += 1
        if s.tracking_initialised and p.redetect_every:
            s.since_detect += 1
            if s.since_detect >= p.redetect_every:
                s.reset()  # a scheduled detection, not a lost face
        initial_detection = not s.tracking_initialised
        if not s.tracking_initialised:
            s.ahead = None  # only a tracked frame uses a fit made ahead

        if s.tracking_initialised:
            ok = self._track_frame(s, frame, gray, upcoming)
            s.detection_success = ok
            if ok:
                s.failures_in_a_row = -1
            else:
                s.failures_in_a_row += 1
                if p.drop_on_failure:
                    log.debug("frame %d: tracked face lost, detecting again", s.stats.frames)
                    s.stats.lost += 1
                    s.reset()

        if self._detection_due(s):
            dets = self._detections(frame, detections)
            s.stats.detections += 1
            s.since_detect = 0
            s.since_verify = 0
            if len(dets):
                k = dets.widest()
                if p.detector_confidence:
                    s.detection_certainty = float(dets.scores[k])
                s.tracking_initialised = True
                before = (s.params_global.copy(), s.params_local.copy(), s.landmarks.copy(),
                          s.model_likelihood)
                ok = self._initialise(s, frame, gray, dets.boxes[k].copy())
                if ok or (initial_detection and p.trust_first_detection):
                    s.failures_in_a_row = -1
                    return True
                if p.drop_on_failure:
                    s.reset()
                    return False
                # OpenFace restores the previous estimates; it keeps the new certainty and
                # detection_success = false (DetectLandmarksInVideo)
                s.params_global, s.params_local, s.landmarks, s.model_likelihood = before
                return False
            if p.drop_on_failure:
                s.reset()
                return False

        if not s.tracking_initialised:
            s.failures_in_a_row += 1
        if s.failures_in_a_row > p.max_failures_in_a_row:
            s.tracking_initialised = False
        return s.detection_success

    def result(self, state: TrackState, success: bool, frame: np.ndarray) -> LandmarkResult:
        """``state`` as a :class:`LandmarkResult` (copies). With ``drop_on_failure`` a
        failed frame has no landmarks (zeros) and no parameters."""
        if not success and self.policy.drop_on_failure:
            return LandmarkResult(success=False, confidence=float(state.detection_certainty))
        return self.step_part.report(frame, state, success)

    def fit_box(
        self,
        frame: np.ndarray,
        gray: np.ndarray,
        detections: FaceDetections,
        index: int,
        initialiser: Callable[[np.ndarray, np.ndarray, np.ndarray], FitLike | None] | None = None,
    ) -> LandmarkResult:
        """One face of a still image, fitted from its box with a fresh state and validated
        (OpenFace's ``DetectLandmarksInImage`` with a box; ``FaceLandmarkImg``).

        Parameters
        ----------
        frame, gray : the image, BGR and grey.
        detections : the image's detections; ``index`` selects the face.
        initialiser : fits the box instead of the tracker's (a still's: the frontal
            hypothesis only, :data:`STILL_ROTATION_HYPOTHESES`).
        """
        s = self.new_state()
        if self.policy.detector_confidence:
            s.detection_certainty = float(detections.scores[index])
        box = detections.boxes[index].copy()
        fit = (initialiser or self.initialiser)(frame, gray, box)
        ok = self._accept(s, gray, fit, box)
        return self.result(s, ok, frame)

    # ------------------------------------------------------------------ the rules
    def _detection_due(self, s: TrackState) -> bool:
        p = self.policy
        if not s.tracking_initialised:
            every = p.detect_while_lost_every
            return every != 0 and (s.failures_in_a_row + 1) % every == 0
        every = p.redetect_after_failures
        return not s.detection_success and every > 0 and s.failures_in_a_row % every == 0

    def _detections(self, frame: np.ndarray, detections: DetectionsArg) -> FaceDetections:
        if detections is None:
            if self.detector is None:
                raise InputError("this tracker has no detector: pass the frame's detections")
            return self.detector.detect(frame)
        if isinstance(detections, FaceDetections):
            return detections
        return detections()

    @staticmethod
    def _apply(s: TrackState, fit: FitLike) -> None:
        """The state takes a fit's values (``CLNF`` after ``DetectLandmarks``)."""
        s.landmarks = np.asarray(fit.landmarks, dtype=np.float64).reshape(-1, 2).copy()
        if fit.params_global is not None:
            s.params_global = np.asarray(fit.params_global, dtype=np.float64).copy()
            s.params_local = np.asarray(fit.params_local, dtype=np.float64).copy()
        s.model_likelihood = float(fit.model_likelihood)
        s.part_landmarks = dict(getattr(fit, "part_landmarks", None) or {})
        s.part_params = dict(getattr(fit, "part_params", None) or {})

    def _validate(
        self, s: TrackState, gray: np.ndarray, upcoming: NextFrame | None = None
    ) -> bool:
        """The validator on the state's fit (``CLNF::DetectLandmarks``' last step); its
        certainty becomes the confidence. With ``upcoming`` and an executor beside the
        validator, the check runs there while this thread fits ``upcoming`` ahead."""
        s.since_validate = 0
        if self.validator is None:
            if not self.policy.detector_confidence:
                s.detection_certainty = 1.0
            s.detection_success = True
            return True
        check = (self.validator.check, (gray, s.landmarks, s.params_global[1:4]))
        executor = getattr(self.validator, "executor", None)
        fit_ahead = getattr(self.step_part, "fit_ahead", None)
        if upcoming is not None and executor is not None and fit_ahead is not None:

            def ahead() -> FitAhead | None:
                # A fit the next step may never need must not fail this one: on an error
                # the next step fits again (and meets the error then, if it is real).
                try:
                    return fit_ahead(upcoming, s)
                except Exception:  # noqa: BLE001
                    log.debug("fit ahead failed", exc_info=True)
                    return None

            # the fit first: run_all keeps the first call on this thread
            s.ahead, certainty = run_all(executor, [(ahead, ()), check])
        else:
            certainty = check[0](*check[1])
        s.detection_certainty = float(certainty)
        s.detection_success = s.detection_certainty > self.policy.validation_boundary
        return s.detection_success

    def _initialise(
        self, s: TrackState, frame: np.ndarray, gray: np.ndarray, box: np.ndarray
    ) -> bool:
        """Fit a detector box ``(x1, y1, x2, y2)`` with the initialiser and validate."""
        return self._accept(s, gray, self.initialiser(frame, gray, box), box)

    def _accept(
        self, s: TrackState, gray: np.ndarray, fit: FitLike | None, box: np.ndarray | None
    ) -> bool:
        """The state takes an initial fit, validated; sets the anchor (``box``)."""
        if fit is None:
            return False
        self._apply(s, fit)
        if not fit.converged:
            s.detection_certainty = 0.0
            s.detection_success = False
            return False
        ok = self._validate(s, gray)
        if ok and self.policy.anchor:
            assert box is not None
            s.anchor = (np.array(box, dtype=np.float64), s.landmarks)
        return ok

    def _track_frame(
        self, s: TrackState, frame: np.ndarray, gray: np.ndarray, upcoming: NextFrame | None
    ) -> bool:
        """One tracked frame: anchor checks, landmark step, validation cadence."""
        p = self.policy
        prev = s.landmarks
        box: np.ndarray | None = None
        verified, size = False, 0
        if p.anchor:
            tracked = self._tracked_box(s, frame, prev)
            if tracked is None:
                return False
            box, verified, size = tracked
        fit = self.step_part.track(frame, gray, s, box)
        self._apply(s, fit)
        if not fit.converged:
            s.detection_certainty = 0.0
            return False
        if p.anchor and not _plausible(s.landmarks, prev, size):
            return False
        s.since_validate += 1
        if verified or (p.validate_every and s.since_validate >= p.validate_every):
            if not self._validate(s, gray, upcoming):
                return False
        if verified:
            assert box is not None and s.anchor is not None
            if p.max_box_ratio_change is not None:
                # A detector box keeps a near-constant relation to the true landmarks; a
                # changed width-to-extent ratio means the fit drifted: start it again.
                ratio = _box_extent_ratio(box, s.landmarks) / _box_extent_ratio(*s.anchor)
                if not 1.0 / p.max_box_ratio_change <= ratio <= p.max_box_ratio_change:
                    s.stats.reinitialisations += 1
                    return self._initialise(s, frame, gray, box)
            s.anchor = (box, s.landmarks)
        return True

    def _tracked_box(
        self, s: TrackState, frame: np.ndarray, prev: np.ndarray
    ) -> tuple[np.ndarray, bool, int] | None:
        """This frame's face box: the anchor box moved with the landmarks, replaced by the
        detector's box on verification frames (every ``verify_every``).

        Returns ``(box (4,) float64, verified, crop side)``, or None when the face is
        lost (no detection in the region, or a crop without contrast).
        """
        assert s.anchor is not None
        p = self.policy
        s.since_verify += 1
        box = box_from_anchor(s.anchor[0], s.anchor[1], prev)
        verified = False
        if p.verify_every and s.since_verify >= p.verify_every:
            s.since_verify = 0
            s.stats.verifications += 1
            found = self._verify(s, frame, box)
            if found is None:
                return None
            box, verified = np.array(found, dtype=np.float64), True
        sx, sy, size = crop_square(box)
        if size < 8 or not _crop_has_contrast(frame, sx, sy, size):
            return None
        return box, verified, size

    def _verify(self, s: TrackState, frame: np.ndarray, box: np.ndarray) -> np.ndarray | None:
        """The detector on the tracked region only; the box closest to the track's centre,
        or None when there is none within half a box width."""
        cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
        half = VERIFY_REGION_SCALE * max(box[2] - box[0], box[3] - box[1]) / 2.0
        region = np.array([cx - half, cy - half, cx + half, cy + half])
        dets: FaceDetections = self.detector.detect_region(frame, region, VERIFY_REGION_SIZE)
        if len(dets) == 0:
            return None
        centres = (dets.boxes[:, :2] + dets.boxes[:, 2:]) / 2.0
        dist = np.hypot(centres[:, 0] - cx, centres[:, 1] - cy)
        k = int(np.argmin(dist))
        if dist[k] > 0.5 * (box[2] - box[0]):
            return None
        s.detection_certainty = float(dets.scores[k])
        return dets.boxes[k]


# ------------------------------------------------------------------- OpenFace, one face
@dataclass(frozen=True)
class TrackingParameters:
    """The ``FaceModelParameters`` fields OpenFace's tracking reads (for
    :class:`SequenceTracker`; :class:`TrackingPolicy` is the general form).

    Attributes
    ----------
    window_sizes_init : window size per patch-expert scale when (re)initialising or
        after a failed frame; 0 skips a scale.
    window_sizes_small : window sizes when tracking after a successful frame.
    validation_boundary : validator confidence above which a fit succeeds (compared as
        float32, as OpenFace).
    reinit_video_every : re-detect every this many failed frames while tracking, every
        ``6 *`` this many without a face; 0 or less disables re-detection while tracking.
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
            object.__setattr__(self, name, _window_sizes(name, getattr(self, name)))
        if not 0.0 <= float(self.validation_boundary) <= 1.0:
            raise InputError(
                f"validation_boundary must be in [0, 1], got {self.validation_boundary}"
            )

    def policy(self) -> TrackingPolicy:
        """These parameters as OpenFace's :class:`TrackingPolicy`."""
        every = int(self.reinit_video_every)
        return TrackingPolicy(
            validation_boundary=float(np.float32(self.validation_boundary)),
            redetect_after_failures=every,
            detect_while_lost_every=every * UNINITIALISED_REDETECT_FACTOR,
        )


def openface_tracker(
    fitter: CLNFFitter,
    detector: FaceDetector | None,
    validator: LandmarkValidator | None,
    pdm: BoxInitialiser,
    parameters: TrackingParameters | None = None,
) -> LandmarkTracker:
    """OpenFace's ``DetectLandmarksInVideo`` as a :class:`LandmarkTracker` from loaded
    parts: CLNF steps, the 11 rotation hypotheses, the validator on every frame.

    Parameters
    ----------
    fitter : the CLNF (:class:`~pyfaceau.landmarks.clnf.model.CLNF`, part models on).
    detector : MTCNN (:class:`~pyfaceau.detection.mtcnn.MTCNNDetector`).
    validator : the detection validator (ignored when ``parameters.validate_detections``
        is off).
    pdm : places the model in a box (the CLNF's ``pdm``).
    parameters : OpenFace's tracking parameters (default: its defaults).
    """
    p = parameters if parameters is not None else TrackingParameters()
    step = CLNFStep(fitter, window_sizes_init=p.window_sizes_init,
                    window_sizes_small=p.window_sizes_small)
    return LandmarkTracker(
        step,
        RotationHypotheses(step, pdm),
        detector,
        validator if p.validate_detections else None,
        p.policy(),
        n_modes=int(pdm.n_modes),
    )


class SequenceTracker:
    """OpenFace's ``DetectLandmarksInVideo`` for one face: :func:`openface_tracker` and
    one :class:`TrackState`.

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
        self.parameters = parameters if parameters is not None else TrackingParameters()
        self.tracker = openface_tracker(fitter, detector, validator, initialiser,
                                        self.parameters)
        self.state = self.tracker.new_state()

    @property
    def fitter(self) -> CLNFFitter:
        return self.tracker.step_part.fitter

    @property
    def detector(self) -> FaceDetector | None:
        return self.tracker.detector

    @property
    def validator(self) -> LandmarkValidator | None:
        return self.tracker.validator

    def reset(self) -> None:
        """Forget the video (``CLNF::Reset``)."""
        self.state = self.tracker.new_state()

    def step(self, frame: np.ndarray, gray: np.ndarray, detections: DetectionsArg = None) -> bool:
        """Process one frame; returns OpenFace's per-frame ``success``.

        Parameters
        ----------
        frame : the frame given to the face detector ((H, W, 3) uint8 BGR).
        gray : (H, W) uint8, the frame in grey (fitting and validation).
        detections : see :meth:`LandmarkTracker.step`.
        """
        return self.tracker.advance(self.state, frame, gray, detections)

    def result(self, success: bool) -> LandmarkResult:
        """The current state as a :class:`LandmarkResult` (copies)."""
        return self.tracker.step_part.report(None, self.state, success)

    def fit_box(self, gray: np.ndarray, box: tuple[float, float, float, float]) -> LandmarkResult:
        """One face of a still image (OpenFace's ``DetectLandmarksInImage`` with a box
        ``(x, y, w, h)``, as ``FaceLandmarkImg`` calls it: from the frontal rotation,
        :data:`STILL_ROTATION_HYPOTHESES`) and validated, from a fresh state. The tracker
        is left holding this face."""
        self.reset()
        init = self.tracker.initialiser
        assert isinstance(init, RotationHypotheses)
        frontal = RotationHypotheses(init.step, init.pdm, STILL_ROTATION_HYPOTHESES)
        ok = self.tracker._accept(self.state, gray, frontal.fit_xywh(gray, box), None)
        return self.result(ok)
