"""The result type shared by the face detectors (RetinaFace, MTCNN)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

__all__ = ["FaceDetections"]


def _empty_boxes() -> np.ndarray:
    return np.zeros((0, 4), dtype=np.float64)


def _empty_scores() -> np.ndarray:
    return np.zeros((0,), dtype=np.float64)


@dataclass
class FaceDetections:
    """The faces a detector found in one image, best score first.

    Attributes
    ----------
    boxes : ``(n, 4)`` float64, pixels ``(x1, y1, x2, y2)`` in the input image's
        coordinates. Not clipped to the image.
    scores : ``(n,)`` float64 face probabilities in [0, 1].
    landmarks : ``(n, 5, 2)`` float64 pixels ``(x, y)`` (eye on the image's left, eye on
        the image's right, nose tip, mouth corner left, mouth corner right), or None when
        the detector gives no points.
    """

    boxes: np.ndarray = field(default_factory=_empty_boxes)
    scores: np.ndarray = field(default_factory=_empty_scores)
    landmarks: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if self.scores.shape[0] != self.boxes.shape[0]:
            raise ValueError(
                f"FaceDetections: {self.boxes.shape[0]} boxes but {self.scores.shape[0]} scores"
            )
        if self.landmarks is not None:
            self.landmarks = np.asarray(self.landmarks, dtype=np.float64)
            if self.landmarks.shape[0] != self.boxes.shape[0] or self.landmarks.shape[2:] != (2,):
                raise ValueError(
                    "FaceDetections: landmarks must be (n, k, 2) with one row per box, "
                    f"got {self.landmarks.shape} for {self.boxes.shape[0]} boxes"
                )

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @classmethod
    def empty(cls, with_landmarks: bool = False, n_points: int = 5) -> "FaceDetections":
        """No faces (optionally with an empty ``(0, n_points, 2)`` landmark array)."""
        lm = np.zeros((0, n_points, 2), dtype=np.float64) if with_landmarks else None
        return cls(landmarks=lm)

    @property
    def areas(self) -> np.ndarray:
        """``(n,)`` float64 box areas, pixels squared (``(x2 - x1) * (y2 - y1)``)."""
        wh = np.clip(self.boxes[:, 2:] - self.boxes[:, :2], 0.0, None)
        return wh[:, 0] * wh[:, 1]

    def widest(self) -> int:
        """Index of the face a single-face tracker follows: the widest box, the first on
        ties; raises ``IndexError`` when empty.

        This is the one face-selection rule of pyfaceau, on both paths: OpenFace's
        ``DetectSingleFaceMTCNN`` (``LandmarkDetectorUtils.cpp``, what FeatureExtraction's
        ``DetectLandmarksInVideo`` calls without a preferred position) keeps the first
        detection whose float32 width is strictly greater than the widest so far.
        """
        if len(self) == 0:
            raise IndexError("FaceDetections.widest: there are no detections")
        b = self.boxes.astype(np.float32)
        return int(np.argmax(b[:, 2] - b[:, 0]))  # first maximum, as OpenFace's strict '>'

    def largest(self) -> int:
        """Deprecated: the largest box by area (first on ties); use :meth:`widest`, the
        rule OpenFace and pyfaceau's trackers follow."""
        warnings.warn(
            "FaceDetections.largest() is deprecated: trackers follow the widest face; "
            "use FaceDetections.widest()",
            DeprecationWarning,
            stacklevel=2,
        )
        if len(self) == 0:
            raise IndexError("FaceDetections.largest: there are no detections")
        return int(np.argmax(self.areas))

    def select(self, index: "int | np.ndarray") -> "FaceDetections":
        """The detections at ``index`` (an int or an index/boolean array)."""
        idx = np.atleast_1d(np.asarray(index))
        lm = None if self.landmarks is None else self.landmarks[idx]
        return FaceDetections(self.boxes[idx], self.scores[idx], lm)

    def scaled(self, factor: float) -> "FaceDetections":
        """Boxes and points multiplied by ``factor`` (to undo a resize of the image)."""
        lm = None if self.landmarks is None else self.landmarks * factor
        return FaceDetections(self.boxes * factor, self.scores.copy(), lm)
