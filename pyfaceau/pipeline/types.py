"""Typed results passed between the stages of a video session.

:class:`LandmarkResult`, :class:`PartFit` and :func:`eye_fits` live in
:mod:`pyfaceau.landmarks.types` (the landmark stage's results); they are re-exported here.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ..landmarks.types import EYE_PART_NAMES, LandmarkResult, PartFit, eye_fits

__all__ = ["EYE_PART_NAMES", "LandmarkResult", "LandmarkFrontEnd", "PartFit", "eye_fits"]


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
