"""The fast landmark front end: RetinaFace + PFLD, tracked, with targeted SVR refinement.

Per frame (:meth:`FastLandmarkFrontEnd.track`):

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
"""

from __future__ import annotations

import logging
import os
from typing import Sequence

import cv2
import numpy as np

from ..detection.retinaface import RetinaFaceDetector
from ..detection.types import FaceDetections
from ..errors import InputError
from ..landmarks.pfld import PFLDLandmarker, crop_square
from ..refinement.targeted import FAST_SEARCH_WINDOW, Refinement, TargetedCLNFRefiner
from .types import LandmarkResult

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


class FastLandmarkFrontEnd:
    """Landmarks per video frame from RetinaFace + PFLD (+ SVR refinement), tracked.

    Implements :class:`pyfaceau.pipeline.types.LandmarkFrontEnd`.

    Parameters
    ----------
    detector : a RetinaFace detector (default: a new :class:`RetinaFaceDetector`).
    landmarker : a PFLD landmarker (default: a new :class:`PFLDLandmarker`).
    refine : ``True`` for the default :class:`TargetedCLNFRefiner`, a refiner of your
        own, or ``False`` / None for PFLD alone. A refiner with ``pdm_constrain=True``
        makes the results carry its PDM fit (``params_global``, ``params_local``).
    verify_interval : run the region detector every this many tracked frames (0: never;
        only the cheap checks then guard the track).
    redetect_interval : run the full-frame detector every this many frames even while
        tracking (0: never).
    models : folders searched first for the model files.
    intra_op_threads : onnxruntime threads of the default networks.

    Notes
    -----
    Deviates from OpenFace: OpenFace detects with MTCNN and tracks with CLNF; here the
    tracker is the landmark network itself. ``confidence`` is the last detector score of
    the track (OpenFace's is the CLNF validator's).
    """

    def __init__(
        self,
        detector: RetinaFaceDetector | None = None,
        landmarker: PFLDLandmarker | None = None,
        refine: TargetedCLNFRefiner | bool | None = True,
        *,
        verify_interval: int = 3,
        redetect_interval: int = 0,
        models: ModelsArg = None,
        intra_op_threads: int = 1,
    ) -> None:
        if verify_interval < 0 or redetect_interval < 0:
            raise InputError("verify_interval, redetect_interval: expected counts >= 0")
        self.detector = detector if detector is not None else RetinaFaceDetector(
            models=models, intra_op_threads=intra_op_threads
        )
        self.landmarker = landmarker if landmarker is not None else PFLDLandmarker(
            models=models, intra_op_threads=intra_op_threads
        )
        if refine is True:
            refine = TargetedCLNFRefiner(search_window=FAST_SEARCH_WINDOW, models=models)
        elif not (refine is None or refine is False or isinstance(refine, TargetedCLNFRefiner)):
            raise InputError(
                "refine: expected True, False or a TargetedCLNFRefiner, got "
                f"{type(refine).__name__}"
            )
        self.refiner: TargetedCLNFRefiner | None = refine or None
        self.verify_interval = int(verify_interval)
        self.redetect_interval = int(redetect_interval)
        self.stats = {"frames": 0, "detections": 0, "verifications": 0, "lost": 0}
        self.reset()

    def reset(self) -> None:
        """Forget the tracked face (a new video starts)."""
        self._landmarks: np.ndarray | None = None  # unrefined PFLD output of last frame
        self._anchor: tuple[np.ndarray, np.ndarray] | None = None  # detector box, its PFLD
        self._confidence = 0.0
        self._since_check = 0
        self._since_detect = 0

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
        if (
            not isinstance(frame_bgr, np.ndarray)
            or frame_bgr.ndim != 3
            or frame_bgr.shape[2] != 3
            or frame_bgr.dtype != np.uint8
        ):
            got = getattr(frame_bgr, "shape", type(frame_bgr).__name__)
            raise InputError(f"frame_bgr: expected an (H, W, 3) uint8 BGR image, got {got}")
        self.stats["frames"] += 1
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
        if self.refiner is None:
            return LandmarkResult(success=True, confidence=self._confidence, landmarks=lm)
        ref = self._refine(frame_bgr, lm)
        return LandmarkResult(
            success=True,
            confidence=self._confidence,
            landmarks=ref.landmarks,
            params_global=ref.params_global,
            params_local=ref.params_local,
        )

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

    def _detect_step(self, frame: np.ndarray) -> np.ndarray | None:
        self.stats["detections"] += 1
        dets = self.detector.detect(frame)
        self._since_detect = 0
        self._since_check = 0
        if len(dets) == 0:
            return None
        k = dets.largest()
        self._confidence = float(dets.scores[k])
        box = dets.boxes[k].copy()
        lm = self.landmarker.predict(frame, box)
        self._anchor = (box, lm)
        return lm

    def _track_step(self, frame: np.ndarray) -> np.ndarray | None:
        prev = self._landmarks
        assert prev is not None and self._anchor is not None
        self._since_check += 1
        box = box_from_anchor(self._anchor[0], self._anchor[1], prev)
        verified = False
        if self.verify_interval and self._since_check >= self.verify_interval:
            self._since_check = 0
            self.stats["verifications"] += 1
            found = self._verify(frame, box)
            if found is None:
                return None
            box, verified = found, True
        sx, sy, size = crop_square(box)
        if size < 8 or not self._crop_has_contrast(frame, sx, sy, size):
            return None
        lm = self.landmarker.predict(frame, box)
        if not self._plausible(lm, prev, size):
            return None
        if verified:
            self._anchor = (np.array(box, dtype=np.float64), lm)
        return lm

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
