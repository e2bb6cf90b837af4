"""Moved: OpenFace's video tracking is :mod:`pyfaceau.landmarks.tracking` (one tracker for
both paths). The names stay importable from here."""

from ..tracking import (
    ROTATION_HYPOTHESES,
    VALIDATION_BOUNDARY,
    BoxInitialiser,
    CLNFFitter,
    FaceDetector,
    FitLike,
    LandmarkValidator,
    SequenceTracker,
    TrackingParameters,
    TrackState,
    box_xywh,
    select_face,
)

#: The state's former name.
TrackingState = TrackState
FitResultLike = FitLike

__all__ = [
    "ROTATION_HYPOTHESES",
    "VALIDATION_BOUNDARY",
    "TrackingParameters",
    "FitResultLike",
    "CLNFFitter",
    "FaceDetector",
    "LandmarkValidator",
    "BoxInitialiser",
    "TrackingState",
    "SequenceTracker",
    "box_xywh",
    "select_face",
]
