"""Face detectors: RetinaFace (fast path) and MTCNN with OpenFace's weights (faithful path)."""

from .mtcnn import MTCNNDetector
from .retinaface import RetinaFaceDetector
from .types import FaceDetections

__all__ = ["FaceDetections", "MTCNNDetector", "RetinaFaceDetector"]
