"""The fast landmark front end: RetinaFace + PFLD, refined by tracking with OpenFace's CLNF
(default), by the targeted SVR refinement of 9 landmarks, or PFLD alone.

A thin wrapper, for one video at a time, over the sequence tracker
(:func:`pyfaceau.landmarks.build.build_fast_tracker`,
:class:`pyfaceau.landmarks.tracking.LandmarkTracker`), where the rules are documented:

- ``refine="clnf"``: PFLD only initialises CLNF on detection frames (``calc_params`` of
  its landmarks, then a CLNF fit at OpenFace's initial window sizes); every other frame
  is a CLNF fit from the previous frame's parameters at OpenFace's tracking window sizes
  (4 NU-RLMS iterations per pass instead of OpenFace's 5), guarded by cheap checks, by
  OpenFace's detection validator every 3 frames and by a region verification every 15.
  Measured on all sample videos (``docs/accuracy.md``): pooled AU intensity r 0.978
  against OpenFace, against 0.788 with the SVR refinement, whose experts cannot bring
  PFLD's points (2-5 px from OpenFace's) to where CLNF converges.
- ``refine=True`` (SVR) or ``False``: PFLD tracks in the last detector box moved with
  the landmarks; RetinaFace verifies the tracked region every 3 frames.
"""

from __future__ import annotations

import os
from typing import Sequence

import cv2
import numpy as np

from ..modelstore import ModelsArg
from ..detection.retinaface import RetinaFaceDetector
from ..errors import InputError
from ..landmarks.build import FAST_CLNF_ITERATIONS, build_fast_tracker
from ..landmarks.clnf.model import CLNF
from ..landmarks.clnf.validator import DetectionValidator
from ..landmarks.pfld import PFLDLandmarker
from ..landmarks.tracking import (  # noqa: F401 - the constants' former home
    CLNF_VALIDATE_INTERVAL,
    CLNF_VERIFY_INTERVAL,
    VERIFY_INTERVAL,
    CLNFStep,
    ReadAhead,
    box_from_anchor,
)
from ..refinement.targeted import FAST_SEARCH_WINDOW, TargetedCLNFRefiner
from ..validation import require_bgr8
from .types import LandmarkResult

__all__ = ["FastLandmarkFrontEnd", "box_from_anchor"]


def _bgr_to_gray(frame_bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)


class FastLandmarkFrontEnd:
    """Landmarks per video frame from RetinaFace + PFLD (+ SVR refinement), tracked.

    Implements :class:`pyfaceau.pipeline.types.LandmarkFrontEnd`.

    Parameters
    ----------
    detector : a RetinaFace detector (default: a new :class:`RetinaFaceDetector`).
    landmarker : a PFLD landmarker (default: a new :class:`PFLDLandmarker`).
    refine : ``"clnf"`` (default) to track with OpenFace's CLNF (PFLD initialises it on
        detection frames; near-OpenFace landmarks and AUs for about 0.9 ms more per
        frame than PFLD alone), ``True`` for the targeted SVR refinement of 9 landmarks
        (:class:`TargetedCLNFRefiner`), a refiner of your own, or ``False`` / None for
        PFLD alone. ``"clnf"``, and a refiner with ``pdm_constrain=True``, make the
        results carry a PDM fit (``params_global``, ``params_local``).
    verify_interval : run the region detector every this many tracked frames (0: never;
        only the cheap checks then guard the track). Default: :data:`VERIFY_INTERVAL`
        when PFLD tracks, :data:`CLNF_VERIFY_INTERVAL` with ``refine="clnf"``, where the
        validator checks the track more often.
    redetect_interval : run the full-frame detector every this many frames even while
        tracking (0: never).
    models : folders searched first for the model files.
    intra_op_threads : onnxruntime threads of the default networks.
    clnf : with ``refine="clnf"``, the CLNF model to use (default: a new :class:`CLNF`).
    validator : with ``refine="clnf"``, OpenFace's detection validator (default:
        ``validator_cnn.txt``; False: none), run on every detection, every
        ``validate_interval`` tracked frames and every region verification. A fit it
        rejects (confidence at most OpenFace's 0.725) drops the track: CLNF from the
        previous frame cannot follow a sudden head movement and stays on a wrong local
        optimum that the region detector still accepts. Its certainty is the
        ``confidence`` reported, as in OpenFace.
    validate_interval : with ``refine="clnf"``, validate every this many tracked frames.
    clnf_hierarchical : with ``refine="clnf"``, also fit the hierarchical part models
        (the inner face and both eyes) as OpenFace does for faces with a PDM scale above
        0.9. Off by default: on such faces they bring the landmarks from 0.6-0.9 px to
        0.05 px of OpenFace's, but cost about 6 ms per frame (640 x 480 sample video:
        about 100 instead of 235 fps for the front end). With them the results also carry
        the eye models' fits, hence OpenFace's gaze and eye-landmark columns.
    clnf_iterations : with ``refine="clnf"``, NU-RLMS iterations per pass on tracked
        frames (:data:`FAST_CLNF_ITERATIONS`; OpenFace's 5 is slower and barely closer).

    Notes
    -----
    Deviates from OpenFace: OpenFace detects with MTCNN and tracks with CLNF; here the
    tracker is the landmark network itself, or, with ``refine="clnf"``, CLNF initialised
    from PFLD instead of from the box under 11 rotation hypotheses, without the part
    models by default, and validated every ``validate_interval`` frames instead of every
    frame; a rejected fit is re-detected at once instead of re-fitted with the initial
    window sizes. ``confidence`` is the last detector score of the track when PFLD tracks,
    the last validator certainty with ``refine="clnf"`` (OpenFace's ``confidence``).
    """

    def __init__(
        self,
        detector: RetinaFaceDetector | None = None,
        landmarker: PFLDLandmarker | None = None,
        refine: TargetedCLNFRefiner | bool | str | None = "clnf",
        *,
        verify_interval: int | None = None,
        redetect_interval: int = 0,
        models: ModelsArg = None,
        intra_op_threads: int = 1,
        clnf: CLNF | None = None,
        validator: DetectionValidator | bool = True,
        clnf_hierarchical: bool = False,
        clnf_iterations: int = FAST_CLNF_ITERATIONS,
        validate_interval: int = CLNF_VALIDATE_INTERVAL,
    ) -> None:
        if isinstance(refine, str) and refine != "clnf":
            raise InputError(f"refine: expected True, False, 'clnf' or a refiner, got {refine!r}")
        if refine != "clnf" and (
            clnf is not None
            or validator is not True
            or clnf_hierarchical
            or clnf_iterations != FAST_CLNF_ITERATIONS
            or validate_interval != CLNF_VALIDATE_INTERVAL
        ):
            raise InputError(
                "clnf, validator, clnf_hierarchical, clnf_iterations, validate_interval: "
                "only used with refine='clnf'"
            )
        refiner = None
        if refine is True:
            choice: object = "svr"
            refiner = TargetedCLNFRefiner(search_window=FAST_SEARCH_WINDOW, models=models)
        elif refine is None or refine is False:
            choice = "none"
        elif refine == "clnf" or isinstance(refine, TargetedCLNFRefiner):
            choice = refine
        else:
            raise InputError(
                "refine: expected True, False, 'clnf' or a TargetedCLNFRefiner, got "
                f"{type(refine).__name__}"
            )
        self._tracker = build_fast_tracker(
            models,
            refine=choice,
            refiner=refiner,
            detector=detector,
            landmarker=landmarker,
            clnf=clnf,
            validator=validator,
            clnf_hierarchical=clnf_hierarchical,
            clnf_iterations=clnf_iterations,
            verify_interval=verify_interval,
            validate_interval=validate_interval,
            redetect_interval=redetect_interval,
            intra_op_threads=intra_op_threads,
        )
        t = self._tracker
        self.detector = t.detector
        self.landmarker = getattr(t.initialiser, "landmarker")
        step = t.step_part
        self.clnf: CLNF | None = step.fitter if isinstance(step, CLNFStep) else None
        self.validator: DetectionValidator | None = t.validator
        self.refiner: TargetedCLNFRefiner | None = getattr(step, "refiner", None)
        self.clnf_hierarchical = bool(clnf_hierarchical)
        self.verify_interval = t.policy.verify_every
        self.validate_interval = t.policy.validate_every
        self.redetect_interval = t.policy.redetect_every
        self._state = t.new_state()
        self._read_ahead = ReadAhead(_bgr_to_gray)

    @property
    def tracker(self):
        """The shared :class:`~pyfaceau.landmarks.tracking.LandmarkTracker`."""
        return self._tracker

    @property
    def stats(self) -> dict[str, int]:
        """Counters since the front end was made: frames, detections, verifications,
        lost, reinitialisations."""
        return self._state.stats.as_dict()

    def reset(self) -> None:
        """Forget the tracked face (a new video starts); the counters are kept."""
        self._state.reset()

    def track(self, frame_bgr: np.ndarray) -> LandmarkResult:
        """Landmarks of the tracked face in one frame.

        Parameters
        ----------
        frame_bgr : ``(H, W, 3)`` uint8 BGR.

        Returns
        -------
        LandmarkResult with ``(68, 2)`` float64 pixel landmarks; ``params_global`` and
        ``params_local`` are the CLNF's or the refiner's PDM fit when there is one, else
        None.
        """
        require_bgr8(frame_bgr, "frame_bgr")
        if self.clnf is None:
            return self._tracker.step(self._state, frame_bgr, None)
        gray, upcoming = self._read_ahead.take(frame_bgr)
        return self._tracker.step(self._state, frame_bgr, gray, upcoming=upcoming)

    def expect_next(self, frame_bgr: np.ndarray) -> None:
        """Announce the image the next :meth:`track` call will receive (a video read
        ahead): with the validator on a second thread, its CLNF fit can start while the
        current frame is validated. The results are the same with or without it."""
        self._read_ahead.announce(frame_bgr)

    @property
    def has_eye_models(self) -> bool:
        """Whether results carry OpenFace's eye models' fits (``refine="clnf"`` with
        ``clnf_hierarchical``): then every row has the gaze and eye-landmark columns."""
        return bool(getattr(self._tracker.step_part, "has_eye_models", False))

    def detect_all(self, frame_bgr: np.ndarray) -> list[LandmarkResult]:
        """Every face of a still image, each on its own, in the detector's order (as
        OpenFace's ``FaceLandmarkImg``); forgets any tracked face.

        Returns
        -------
        One :class:`LandmarkResult` per detected face (with ``refine="clnf"``, ``success``
        is the validator's verdict); empty when no face is found.
        """
        self.reset()
        dets = self.detector.detect(frame_bgr)
        gray = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY) if self.clnf is not None else None
        return [self._tracker.fit_box(frame_bgr, gray, dets, i) for i in range(len(dets))]
