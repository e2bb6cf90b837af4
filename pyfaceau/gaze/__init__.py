"""Eye gaze from OpenFace's eye part models (OpenFace's ``GazeAnalyser``)."""

from .estimation import eye_gaze, gaze_angle, pupil_position

__all__ = ["eye_gaze", "gaze_angle", "pupil_position"]
