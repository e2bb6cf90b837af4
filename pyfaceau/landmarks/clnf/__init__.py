"""OpenFace's CLNF landmark detector: CCNF patch experts, NU-RLMS fitting under the PDM,
hierarchical part models, the detection validator and video tracking."""

from .model import CLNF, FitResult
from .tracking import SequenceTracker, TrackingParameters
from .validator import DetectionValidator, load_detection_validator

__all__ = [
    "CLNF",
    "FitResult",
    "SequenceTracker",
    "TrackingParameters",
    "DetectionValidator",
    "load_detection_validator",
]
