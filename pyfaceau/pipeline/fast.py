"""The fast landmark front end: RetinaFace + PFLD, refined by tracking with OpenFace's CLNF
(default) or by the targeted SVR refinement of 9 landmarks.

Per frame, with ``refine=True`` (SVR) or ``False`` (:meth:`FastLandmarkFrontEnd.track`):

1. No face tracked: detect on the whole frame (RetinaFace), take the largest face
   (OpenFace's single-face rule), run PFLD on its box.
2. A face tracked: move and scale the track's last detector box (the anchor) with the
   landmarks since that detection (:func:`box_from_anchor`), run PFLD on it; no detector
   runs. Keeping the crop a detector box keeps PFLD on the crops it was paired with
   (mean error against OpenFace, 11 sample videos: 3.53 px; 3.63 px for a box
   calibrated on the landmark extent).
3. Failure checks: every frame, cheap sanity checks on the crop and the landmarks
   (contrast, landmark extent and centre relative to the crop); every
   ``verify_interval`` frames, RetinaFace on the tracked region only (a 160 x 160 input,
   about 1.3 ms), which also re-anchors the crop on a detector box. A failed check
   drops the track and the frame is detected from scratch; a frame without a face gives
   :meth:`LandmarkResult.failed` and the next face is picked up by the next detection.
4. Optional targeted refinement of 9 landmarks (:class:`TargetedCLNFRefiner`), optionally
   followed by a PDM fit (``pdm_constrain``). The tracking itself always uses the
   unrefined PFLD points (the crop rule was calibrated on them).

With ``refine="clnf"`` (the default) the tracker is OpenFace's CLNF instead of PFLD (see
:meth:`FastLandmarkFrontEnd._track_clnf`): PFLD only initialises CLNF on detection
frames (``calc_params`` of its landmarks, then a CLNF fit at the initial window sizes);
every other frame is a CLNF fit from the previous frame's parameters at OpenFace's
tracking window sizes (4 NU-RLMS iterations per pass instead of OpenFace's 5), guarded by
the same cheap checks, by OpenFace's detection validator every 3 frames and by a region
verification every 15. Measured on all sample videos (``docs/accuracy.md``): pooled AU
intensity r 0.978 against OpenFace, against 0.785 with the SVR refinement, whose experts
cannot bring PFLD's points (2-5 px from OpenFace's) to where CLNF converges.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from typing import Sequence

import cv2
import numpy as np

from ..detection.retinaface import RetinaFaceDetector
from ..detection.types import FaceDetections
from ..errors import InputError
from ..validation import require_bgr8
from ..landmarks.clnf.model import (
    CLNF,
    MAIN_FIT_PARAMETERS,
    WINDOW_SIZES_INIT,
    WINDOW_SIZES_SMALL,
    FitResult,
)
from ..landmarks.clnf.tracking import VALIDATION_BOUNDARY
from ..landmarks.clnf.validator import DetectionValidator, load_detection_validator
from ..landmarks.pfld import PFLDLandmarker, crop_square
from ..pdm import calc_params
from ..refinement.targeted import FAST_SEARCH_WINDOW, Refinement, TargetedCLNFRefiner
from .types import EYE_PART_NAMES, LandmarkResult, eye_fits

__all__ = ["FastLandmarkFrontEnd", "box_from_anchor"]

log = logging.getLogger(__name__)

ModelsArg = str | os.PathLike | Sequence[str | os.PathLike] | None

#: Minimum grey-level standard deviation of the crop for a tracked face (a black or
#: uniform frame fails).
MIN_CROP_STD = 4.0
#: Plausible landmark x-extent relative to the crop side (a face fills about 0.84 of it).
EXTENT_RANGE = (0.45, 1.25)
#: Largest move of the landmark centre between frames, fraction of the crop side.
MAX_CENTRE_SHIFT = 0.35
#: Extra margin of the grey region given to the refiner, beyond the half-size of the
#: patch experts' areas of interest, fraction of the landmarks' extent.
REFINE_MARGIN = 0.1
#: Region detection: square side as a multiple of the PFLD crop side, and input size.
VERIFY_REGION_SCALE = 2.0
VERIFY_REGION_SIZE = 160
#: CLNF mode: on a region verification, the ratio (detector box width / landmark
#: x-extent) may differ from the anchor's by this factor before CLNF is re-initialised
#: from PFLD on the verified box (the fit drifted, or shrank onto part of the face).
MAX_BOX_RATIO_CHANGE = 1.25
#: Region verification cadence (tracked frames) when PFLD tracks, and with CLNF, where
#: OpenFace's validator checks the track every CLNF_VALIDATE_INTERVAL frames: on the sample
#: videos the region detector then adds nothing to the AUs or to success (docs/accuracy.md)
#: but stays as a guard against drift at a fifth of the cost.
VERIFY_INTERVAL = 3
CLNF_VERIFY_INTERVAL = 15
CLNF_VALIDATE_INTERVAL = 3
#: CLNF mode: NU-RLMS iterations per pass on tracked frames (OpenFace: 5). One fewer costs
#: 0.002 of pooled AU r and saves a fifth of the fitting (docs/accuracy.md).
FAST_CLNF_ITERATIONS = 4


def box_from_anchor(
    anchor_box: np.ndarray, anchor_landmarks: np.ndarray, landmarks: np.ndarray
) -> np.ndarray:
    """A detector box moved and scaled with the landmarks since it was detected.

    Parameters
    ----------
    anchor_box : ``(4,)`` ``(x1, y1, x2, y2)`` pixels, a detector box.
    anchor_landmarks : ``(68, 2)`` the PFLD landmarks of that box.
    landmarks : ``(68, 2)`` the current landmarks.

    Returns
    -------
    ``(4,)`` float64 box: centre shifted by the landmarks' mean displacement, size scaled
    by the ratio of the landmarks' mean extents (x and y).
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
        (eyes, brows, mouth, inner face) as OpenFace does for faces with a PDM scale above
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
        if verify_interval is None:
            verify_interval = CLNF_VERIFY_INTERVAL if refine == "clnf" else VERIFY_INTERVAL
        if verify_interval < 0 or redetect_interval < 0 or validate_interval < 0:
            raise InputError(
                "verify_interval, redetect_interval, validate_interval: expected counts >= 0"
            )
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
        if clnf_iterations < 1:
            raise InputError(f"clnf_iterations: expected >= 1, got {clnf_iterations}")
        self.detector = detector if detector is not None else RetinaFaceDetector(
            models=models, intra_op_threads=intra_op_threads
        )
        self.landmarker = landmarker if landmarker is not None else PFLDLandmarker(
            models=models, intra_op_threads=intra_op_threads
        )
        self.clnf: CLNF | None = None
        self.validator: DetectionValidator | None = None
        self.clnf_hierarchical = bool(clnf_hierarchical)
        self._track_parameters = replace(MAIN_FIT_PARAMETERS, num_iterations=int(clnf_iterations))
        if refine == "clnf":
            self.clnf = clnf if clnf is not None else CLNF(models=models)
            if validator is True:
                self.validator = load_detection_validator(models)
            elif validator is not False:
                self.validator = validator
            refine = None
        elif refine is True:
            refine = TargetedCLNFRefiner(search_window=FAST_SEARCH_WINDOW, models=models)
        elif not (refine is None or refine is False or isinstance(refine, TargetedCLNFRefiner)):
            raise InputError(
                "refine: expected True, False, 'clnf' or a TargetedCLNFRefiner, got "
                f"{type(refine).__name__}"
            )
        self.refiner: TargetedCLNFRefiner | None = refine or None
        self.verify_interval = int(verify_interval)
        self.validate_interval = int(validate_interval)
        self.redetect_interval = int(redetect_interval)
        self.stats = {
            "frames": 0, "detections": 0, "verifications": 0, "lost": 0, "reinitialisations": 0
        }
        self.reset()

    def reset(self) -> None:
        """Forget the tracked face (a new video starts)."""
        # unrefined PFLD output of the last frame; CLNF's landmarks in CLNF mode
        self._landmarks: np.ndarray | None = None
        self._params: tuple[np.ndarray, np.ndarray] | None = None  # CLNF mode: last fit
        self._anchor: tuple[np.ndarray, np.ndarray] | None = None  # detector box, its PFLD
        self._confidence = 0.0
        self._since_check = 0
        self._since_detect = 0
        self._since_validate = 0

    # -- per frame ------------------------------------------------------------------------
    def track(self, frame_bgr: np.ndarray) -> LandmarkResult:
        """Landmarks of the tracked face in one frame.

        Parameters
        ----------
        frame_bgr : ``(H, W, 3)`` uint8 BGR.

        Returns
        -------
        LandmarkResult with ``(68, 2)`` float64 pixel landmarks; ``params_global`` and
        ``params_local`` are the refiner's PDM fit when it has one, else None.
        """
        require_bgr8(frame_bgr, "frame_bgr")
        self.stats["frames"] += 1
        if self.clnf is not None:
            return self._track_clnf(frame_bgr)
        lm = None
        if self._landmarks is not None and self.redetect_interval:
            self._since_detect += 1
            if self._since_detect >= self.redetect_interval:
                self.reset()  # a scheduled full-frame detection, not a lost track
        if self._landmarks is not None:
            lm = self._track_step(frame_bgr)
            if lm is None:
                log.debug("frame %d: tracked face lost, detecting again", self.stats["frames"])
                self.stats["lost"] += 1
                self.reset()
        if lm is None:
            lm = self._detect_step(frame_bgr)
            if lm is None:
                return LandmarkResult.failed()
        self._landmarks = lm
        return self._pfld_result(frame_bgr, lm)

    def _pfld_result(self, frame: np.ndarray, lm: np.ndarray) -> LandmarkResult:
        """PFLD's landmarks as a result, refined when there is a refiner."""
        if self.refiner is None:
            return LandmarkResult(success=True, confidence=self._confidence, landmarks=lm)
        ref = self._refine(frame, lm)
        return LandmarkResult(
            success=True,
            confidence=self._confidence,
            landmarks=ref.landmarks,
            params_global=ref.params_global,
            params_local=ref.params_local,
        )

    def _clnf_result(self, fit: FitResult) -> LandmarkResult:
        """A CLNF fit as a result (with the eye models' fits when the parts ran)."""
        assert self.clnf is not None
        return LandmarkResult(
            success=True,
            confidence=self._confidence,
            landmarks=fit.landmarks,
            params_global=fit.params_global,
            params_local=fit.params_local,
            eyes=eye_fits(self.clnf.parts, fit.part_landmarks, fit.part_params),
        )

    @property
    def has_eye_models(self) -> bool:
        """Whether results carry OpenFace's eye models' fits (``refine="clnf"`` with
        ``clnf_hierarchical``): then every row has the gaze and eye-landmark columns."""
        if self.clnf is None or not self.clnf_hierarchical:
            return False
        names = {p.name for p in self.clnf.parts}
        return all(n in names for n in EYE_PART_NAMES)

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
        results = []
        for box, score in zip(dets.boxes, dets.scores):
            self._confidence = float(score)
            if self.clnf is None:
                results.append(self._pfld_result(frame_bgr, self.landmarker.predict(frame_bgr, box)))
                continue
            fit = self._clnf_from_box(frame_bgr, gray, box)
            if fit is None:  # rejected by the validator: a failed face, as OpenFace's row
                results.append(LandmarkResult(success=False, confidence=self._confidence))
            else:
                results.append(self._clnf_result(fit))
        self.reset()
        return results

    # -- CLNF mode -------------------------------------------------------------------------
    def _track_clnf(self, frame: np.ndarray) -> LandmarkResult:
        """One frame tracked with CLNF (``refine="clnf"``).

        No face tracked: RetinaFace on the frame, PFLD on the largest face's box,
        ``calc_params`` of PFLD's landmarks, then a CLNF fit at OpenFace's initial window
        sizes (PFLD's points are 2-5 px off, as far as a box initialisation is). A face
        tracked: a CLNF fit from the last frame's parameters at the tracking window sizes
        ``(0, 9, 7)``, as OpenFace after a successful frame; no PFLD. A failed check drops
        the track and the frame is detected from scratch.
        """
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        fit = None
        if self._params is not None and self.redetect_interval:
            self._since_detect += 1
            if self._since_detect >= self.redetect_interval:
                self.reset()
        if self._params is not None:
            fit = self._clnf_track_step(frame, gray)
            if fit is None:
                log.debug("frame %d: tracked face lost, detecting again", self.stats["frames"])
                self.stats["lost"] += 1
                self.reset()
        if fit is None:
            fit = self._clnf_detect_step(frame, gray)
            if fit is None:
                self.reset()
                return LandmarkResult.failed()
        self._landmarks = fit.landmarks
        self._params = (fit.params_global, fit.params_local)
        return self._clnf_result(fit)

    def _clnf_from_box(
        self, frame: np.ndarray, gray: np.ndarray, box: np.ndarray
    ) -> FitResult | None:
        """CLNF initialised from PFLD's landmarks in a detector box."""
        assert self.clnf is not None
        lm = self.landmarker.predict(frame, box)
        if not np.isfinite(lm).all():
            return None
        glob, loc = calc_params(self.clnf.pdm, lm)
        fit = self.clnf.fit(
            gray, glob, loc, WINDOW_SIZES_INIT, refine_hierarchical=self.clnf_hierarchical
        )
        if not fit.converged or not np.isfinite(fit.landmarks).all():
            return None
        if not self._validated(gray, fit):
            return None
        self._anchor = (np.array(box, dtype=np.float64), fit.landmarks)
        return fit

    def _validated(self, gray: np.ndarray, fit: FitResult) -> bool:
        """OpenFace's detection validator on a fit (True without a validator); its
        certainty becomes the reported confidence."""
        self._since_validate = 0
        if self.validator is None:
            return True
        certainty = float(self.validator.check(gray, fit.landmarks, fit.params_global[1:4]))
        self._confidence = certainty
        return certainty > VALIDATION_BOUNDARY

    def _clnf_detect_step(self, frame: np.ndarray, gray: np.ndarray) -> FitResult | None:
        box = self._detect_largest(frame)
        return None if box is None else self._clnf_from_box(frame, gray, box)

    def _clnf_track_step(self, frame: np.ndarray, gray: np.ndarray) -> FitResult | None:
        assert self.clnf is not None and self._params is not None
        prev = self._landmarks
        assert prev is not None and self._anchor is not None
        tracked = self._tracked_box(frame, prev)
        if tracked is None:
            return None
        box, verified, size = tracked
        glob, loc = self._params
        fit = self.clnf.fit(
            gray,
            glob,
            loc,
            WINDOW_SIZES_SMALL,
            refine_hierarchical=self.clnf_hierarchical,
            parameters=self._track_parameters,
        )
        if not fit.converged or not self._plausible(fit.landmarks, prev, size):
            return None
        self._since_validate += 1
        if verified or (
            self.validate_interval and self._since_validate >= self.validate_interval
        ):
            if not self._validated(gray, fit):
                return None
        if verified:
            # A detector box keeps a near-constant relation to the true landmarks; a
            # changed width-to-extent ratio means CLNF drifted: start it again from PFLD.
            ratio = _box_extent_ratio(box, fit.landmarks) / _box_extent_ratio(*self._anchor)
            if not 1.0 / MAX_BOX_RATIO_CHANGE <= ratio <= MAX_BOX_RATIO_CHANGE:
                self.stats["reinitialisations"] += 1
                return self._clnf_from_box(frame, gray, box)
            self._anchor = (box, fit.landmarks)
        return fit

    # -- steps -----------------------------------------------------------------------------
    def _refine(self, frame: np.ndarray, lm: np.ndarray) -> Refinement:
        """Refine on the grey face region only (the areas of interest lie well inside)."""
        assert self.refiner is not None
        h, w = frame.shape[:2]
        mn, mx = lm.min(axis=0), lm.max(axis=0)
        ref = self.refiner
        half_area = (2 * ref.search_window + 1 + ref.patch_size - 1) / 2.0  # reference px
        ref_extent = float(np.ptp(ref.reference_shape, axis=0).min())
        margin = (half_area / ref_extent + REFINE_MARGIN) * float((mx - mn).max()) + 2.0
        x1, y1 = max(int(mn[0] - margin), 0), max(int(mn[1] - margin), 0)
        x2, y2 = min(int(mx[0] + margin) + 1, w), min(int(mx[1] + margin) + 1, h)
        if x2 - x1 < 2 or y2 - y1 < 2:
            return Refinement(lm)
        gray = cv2.cvtColor(frame[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY)
        offset = np.array([x1, y1], dtype=np.float64)
        res = self.refiner.refine(gray, lm - offset)
        res.landmarks = res.landmarks + offset
        if res.params_global is not None:
            res.params_global = res.params_global.copy()
            res.params_global[4:6] += offset  # the PDM's translation, image pixels
        return res

    def _detect_largest(self, frame: np.ndarray) -> np.ndarray | None:
        """RetinaFace on the whole frame: the largest face's box (OpenFace's single-face
        rule), or None; restarts the verification and re-detection counters."""
        self.stats["detections"] += 1
        dets = self.detector.detect(frame)
        self._since_detect = 0
        self._since_check = 0
        if len(dets) == 0:
            return None
        k = dets.largest()
        self._confidence = float(dets.scores[k])
        return dets.boxes[k].copy()

    def _detect_step(self, frame: np.ndarray) -> np.ndarray | None:
        box = self._detect_largest(frame)
        if box is None:
            return None
        lm = self.landmarker.predict(frame, box)
        self._anchor = (box, lm)
        return lm

    def _track_step(self, frame: np.ndarray) -> np.ndarray | None:
        prev = self._landmarks
        assert prev is not None and self._anchor is not None
        tracked = self._tracked_box(frame, prev)
        if tracked is None:
            return None
        box, verified, size = tracked
        lm = self.landmarker.predict(frame, box)
        if not self._plausible(lm, prev, size):
            return None
        if verified:
            self._anchor = (box, lm)
        return lm

    def _tracked_box(
        self, frame: np.ndarray, prev: np.ndarray
    ) -> tuple[np.ndarray, bool, int] | None:
        """This frame's face box: the anchor box moved with the landmarks, replaced by the
        detector's box on verification frames (every ``verify_interval``).

        Returns ``(box (4,) float64, verified, crop side)``, or None when the face is
        lost (no detection in the region, or a crop without contrast).
        """
        assert self._anchor is not None
        self._since_check += 1
        box = box_from_anchor(self._anchor[0], self._anchor[1], prev)
        verified = False
        if self.verify_interval and self._since_check >= self.verify_interval:
            self._since_check = 0
            self.stats["verifications"] += 1
            found = self._verify(frame, box)
            if found is None:
                return None
            box, verified = np.array(found, dtype=np.float64), True
        sx, sy, size = crop_square(box)
        if size < 8 or not self._crop_has_contrast(frame, sx, sy, size):
            return None
        return box, verified, size

    def _verify(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray | None:
        """RetinaFace on the tracked region; the best overlapping box, or None."""
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
        self._confidence = float(dets.scores[k])
        return dets.boxes[k]

    @staticmethod
    def _crop_has_contrast(frame: np.ndarray, sx: int, sy: int, size: int) -> bool:
        h, w = frame.shape[:2]
        x1, y1 = max(sx, 0), max(sy, 0)
        x2, y2 = min(sx + size, w), min(sy + size, h)
        if x2 - x1 < size // 2 or y2 - y1 < size // 2:
            return False  # mostly outside the image
        step = max(1, size // 32)
        patch = frame[y1:y2:step, x1:x2:step, 1]
        return float(patch.std()) >= MIN_CROP_STD

    @staticmethod
    def _plausible(lm: np.ndarray, prev: np.ndarray, size: int) -> bool:
        if not np.isfinite(lm).all():
            return False
        extent = float(lm[:, 0].max() - lm[:, 0].min()) / size
        if not EXTENT_RANGE[0] <= extent <= EXTENT_RANGE[1]:
            return False
        shift = float(np.hypot(*(lm.mean(axis=0) - prev.mean(axis=0)))) / size
        return shift <= MAX_CENTRE_SHIFT
