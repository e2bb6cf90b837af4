"""Face detectors: RetinaFace (fast path) and MTCNN with OpenFace's weights (faithful path)."""

from .types import FaceDetections

__all__ = ["FaceDetections"]
