"""OpenFace's CLNF landmark detector: CCNF patch experts, NU-RLMS fitting under the PDM,
hierarchical part models and the detection validator.

The video tracking (OpenFace's ``DetectLandmarksInVideo``) is in
:mod:`pyfaceau.landmarks.tracking`; ``SequenceTracker`` and ``TrackingParameters`` are
still importable from here.
"""

from .model import CLNF, FitResult
from .validator import DetectionValidator, load_detection_validator

__all__ = [
    "CLNF",
    "FitResult",
    "SequenceTracker",
    "TrackingParameters",
    "DetectionValidator",
    "load_detection_validator",
]


def __getattr__(name: str):
    # Lazy: the tracker imports this package's model module.
    if name in ("SequenceTracker", "TrackingParameters"):
        from .. import tracking

        return getattr(tracking, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
