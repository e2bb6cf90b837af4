"""Typed results passed between the stages of a video session."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["EYE_PART_NAMES", "LandmarkResult", "LandmarkFrontEnd", "PartFit"]

#: OpenFace's 28-point eye part models, in the order of its ``eye_lmk_*`` and ``gaze_0`` /
#: ``gaze_1`` columns (the person's left eye first).
EYE_PART_NAMES = ("left_eye_28", "right_eye_28")


def _empty_landmarks() -> np.ndarray:
    return np.zeros((68, 2), dtype=np.float64)


@dataclass
class PartFit:
    """One hierarchical part model's fit (OpenFace's eye models: eye landmarks, gaze).

    Attributes
    ----------
    name : OpenFace's part name (``left_eye_28``, ``right_eye_28``).
    pdm : the part's PDM (:class:`pyfaceau.pdm.PDM`).
    landmarks : ``(k, 2)`` float64 pixels, the projection of the parameters.
    params_global : ``(6,)`` float64 ``[scale, rx, ry, rz, tx, ty]``.
    params_local : ``(m,)`` float64 shape parameters.
    """

    name: str
    pdm: object
    landmarks: np.ndarray
    params_global: np.ndarray
    params_local: np.ndarray


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
    eyes : the two eye part models' fits (:data:`EYE_PART_NAMES` order) when the front end
        has them (the OpenFace-faithful path), else None; the back end derives OpenFace's
        ``eye_lmk_*`` and ``gaze_*`` columns from them.
    """

    success: bool
    confidence: float = 0.0
    landmarks: np.ndarray = field(default_factory=_empty_landmarks)
    params_global: np.ndarray | None = None
    params_local: np.ndarray | None = None
    eyes: tuple[PartFit, PartFit] | None = None

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
