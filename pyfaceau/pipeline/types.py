"""Typed results passed between the stages of a video session."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["LandmarkResult", "LandmarkFrontEnd"]


def _empty_landmarks() -> np.ndarray:
    return np.zeros((68, 2), dtype=np.float64)


@dataclass
class LandmarkResult:
    """What a landmark front end found in one frame.

    Attributes
    ----------
    success : whether a face was found and its landmarks are trusted
        (OpenFace's ``success`` column).
    confidence : OpenFace's ``confidence`` column, in [0, 1] (the CLNF validator's
        certainty on the faithful path; the detector/landmark score on the fast path).
    landmarks : ``(68, 2)`` float64, pixels (x, y). When ``success`` is False: the
        fitter's last attempt where it has one (OpenFace writes those), else zeros.
    params_global : ``(6,)`` float64 ``[scale, rx, ry, rz, tx, ty]`` of the landmark fitter,
        or None when the front end has no PDM fit of its own (fast path).
    params_local : ``(34,)`` float64 shape parameters of the fitter, or None.
    """

    success: bool
    confidence: float = 0.0
    landmarks: np.ndarray = field(default_factory=_empty_landmarks)
    params_global: np.ndarray | None = None
    params_local: np.ndarray | None = None

    @classmethod
    def failed(cls) -> "LandmarkResult":
        """The result for a frame without a face."""
        return cls(success=False)


@runtime_checkable
class LandmarkFrontEnd(Protocol):
    """A stateful per-video landmark tracker (fast path or OpenFace-faithful path).

    ``track`` is called once per frame, in order; ``reset`` starts a new video.
    """

    def track(self, frame_bgr: np.ndarray) -> LandmarkResult:
        """Landmarks of the tracked face in ``frame_bgr`` (``(H, W, 3)`` uint8 BGR)."""
        ...

    def reset(self) -> None:
        """Forget all tracking state."""
        ...
