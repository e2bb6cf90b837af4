"""The OpenFace-faithful landmark front end: MTCNN + CLNF + validator, tracked as
OpenFace's FeatureExtraction does.

Per frame (``FeatureExtraction.cpp``): the frame is converted to grey
(``SequenceCapture::GetGrayFrame``, i.e. ``cv::cvtColor(BGR2GRAY)``), then
``DetectLandmarksInVideo`` runs (:func:`pyfaceau.landmarks.build.build_openface_tracker`,
:class:`pyfaceau.landmarks.tracking.LandmarkTracker`);
the CSV's ``success`` is its return value and ``confidence`` the model's
``detection_certainty``.
"""

from __future__ import annotations

import os
from typing import Sequence

import cv2
import numpy as np

from ..modelstore import ModelsArg
from ..errors import InputError
from ..landmarks.build import PDM_RELPATH, build_openface_tracker
from ..landmarks.tracking import (
    BoxInitialiser,
    CLNFFitter,
    FaceDetector,
    LandmarkValidator,
    ReadAhead,
    RotationHypotheses,
    STILL_ROTATION_HYPOTHESES,
    TrackingParameters,
)
from .types import LandmarkResult

__all__ = ["PDM_RELPATH", "OpenFaceLandmarkFrontEnd", "to_gray"]



def to_gray(frame: np.ndarray) -> np.ndarray:
    """OpenFace's ``ConvertToGrayscale_8bit`` for 8-bit frames.

    Parameters
    ----------
    frame : (H, W, 3) BGR, (H, W, 4) BGRA or (H, W) grey, uint8.

    Returns
    -------
    (H, W) uint8.
    """
    f = np.asarray(frame)
    if f.dtype != np.uint8:
        raise InputError(f"frame must be uint8, found {f.dtype}")
    if f.ndim == 2:
        return f
    if f.ndim == 3 and f.shape[2] == 3:
        return cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)
    if f.ndim == 3 and f.shape[2] == 4:
        return cv2.cvtColor(f, cv2.COLOR_BGRA2GRAY)
    raise InputError(f"frame must be (H, W), (H, W, 3) or (H, W, 4), found {f.shape}")


class OpenFaceLandmarkFrontEnd:
    """OpenFace 2.2's landmark detection and tracking for one video at a time.

    Parameters
    ----------
    models : folders searched first for the model files
        (:func:`pyfaceau.modelstore.resolve`).
    fitter : the CLNF fitter (default: OpenFace's ``main_clnf_general.txt`` model from
        :mod:`pyfaceau.landmarks.clnf.model`).
    detector : face detector (default: :class:`pyfaceau.detection.mtcnn.MTCNNDetector`).
    validator : detection validator (default: ``validator_cnn.txt``).
    pdm : the PDM used to place the model in a detected box (default: the fitter's
        ``pdm`` attribute, else ``In-the-wild_aligned_PDM_68.txt``).
    parameters : tracking parameters (default: OpenFace's).

    Notes
    -----
    Implements :class:`pyfaceau.pipeline.types.LandmarkFrontEnd`. Matches OpenFace's
    FeatureExtraction: on frames that fail, the result still holds the model's current
    landmarks and parameters (OpenFace writes them to the CSV), with ``success`` False.
    """

    def __init__(
        self,
        models: ModelsArg = None,
        *,
        fitter: CLNFFitter | None = None,
        detector: FaceDetector | None = None,
        validator: LandmarkValidator | None = None,
        pdm: BoxInitialiser | None = None,
        parameters: TrackingParameters | None = None,
    ) -> None:
        if validator is None:
            from ..landmarks.clnf.validator import load_detection_validator

            validator = load_detection_validator(models)
        self._parameters = parameters if parameters is not None else TrackingParameters()
        self._tracker = build_openface_tracker(
            models, fitter=fitter, detector=detector, validator=validator, pdm=pdm,
            parameters=self._parameters,
        )
        self.fitter = self._tracker.step_part.fitter
        self.detector = self._tracker.detector
        self.validator = validator
        self.pdm = self._tracker.initialiser.pdm
        self._state = self._tracker.new_state()
        self._read_ahead = ReadAhead(to_gray)

    @property
    def tracker(self):
        """The shared :class:`~pyfaceau.landmarks.tracking.LandmarkTracker`."""
        return self._tracker

    @property
    def has_eye_models(self) -> bool:
        """Whether the fitter has OpenFace's two eye part models (then every row has the
        gaze and eye-landmark columns, as OpenFace's FeatureExtraction writes them)."""
        return bool(getattr(self._tracker.step_part, "has_eye_models", False))

    @property
    def parameters(self) -> TrackingParameters:
        return self._parameters

    def track(self, frame_bgr: np.ndarray) -> LandmarkResult:
        """Landmarks of the tracked face in the next frame of the video.

        Parameters
        ----------
        frame_bgr : (H, W, 3) uint8 BGR frame (or (H, W) uint8 grey).

        Returns
        -------
        LandmarkResult with OpenFace's ``success``, ``confidence``, landmarks (68, 2)
        and PDM parameters.
        """
        gray, upcoming = self._read_ahead.take(frame_bgr)
        return self._tracker.step(self._state, frame_bgr, gray, upcoming=upcoming)

    def expect_next(self, frame_bgr: np.ndarray) -> None:
        """Announce the image the next :meth:`track` call will receive (a video read
        ahead): with the validator on a second thread, its fit can start while the
        current frame is validated. The results are the same with or without it."""
        self._read_ahead.announce(frame_bgr)

    def detect_all(self, frame_bgr: np.ndarray) -> list[LandmarkResult]:
        """Every face of a still image, each fitted on its own, in the detector's order
        (OpenFace's ``FaceLandmarkImg``); forgets any tracked face.

        Parameters
        ----------
        frame_bgr : (H, W, 3) uint8 BGR image (or (H, W) uint8 grey).

        Returns
        -------
        One :class:`LandmarkResult` per detected face (``success`` is the validator's
        verdict); empty when no face is found.
        """
        gray = to_gray(frame_bgr)
        detections = self.detector.detect(frame_bgr)
        self.reset()
        # FaceLandmarkImg fits a still from the frontal hypothesis only (multi_view off)
        frontal = RotationHypotheses(self._tracker.step_part, self.pdm, STILL_ROTATION_HYPOTHESES)
        return [self._tracker.fit_box(frame_bgr, gray, detections, i, initialiser=frontal)
                for i in range(len(detections))]

    @property
    def part_landmarks(self) -> dict[str, np.ndarray]:
        """The hierarchical part models' landmarks after the last frame.

        Part name (``inner``, ``left_eye_28``, ``right_eye_28``) -> (k, 2) float64 pixels;
        the eye models' 28 points are OpenFace's ``eye_lmk_x_*``/``eye_lmk_y_*``. Empty
        when the parts did not run (small faces) or no face has been fitted.
        """
        return {k: v.copy() for k, v in self._state.part_landmarks.items()}

    def reset(self) -> None:
        """Start a new video (``CLNF::Reset``)."""
        self._state = self._tracker.new_state()
