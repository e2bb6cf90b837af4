"""Gaze geometry (OpenFace's GazeEstimation.cpp) on constructed eyes; the comparison with
OpenFace's own gaze columns is in test_faithful.py."""

from __future__ import annotations

import numpy as np
import pytest

from pyfaceau.gaze import eye_gaze, gaze_angle, pupil_position
from pyfaceau.gaze.estimation import EYEBALL_OFFSET_MM, EYEBALL_RADIUS_MM


def _face_with_eyes_at(z: float) -> np.ndarray:
    """(68, 3) camera-space landmarks, mm: eye corners 36/39 around x=-30, 42/45 around x=30."""
    face = np.zeros((68, 3))
    face[:, 2] = z
    face[36, 0], face[39, 0] = -45.0, -15.0
    face[42, 0], face[45, 0] = 15.0, 45.0
    return face


def _eye_looking(centre: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """(28, 3) eye landmarks whose 8 iris points surround the pupil on the eyeball."""
    d = direction / np.linalg.norm(direction)
    pupil = centre + EYEBALL_RADIUS_MM * d
    eye = np.tile(pupil, (28, 1))
    ring = np.array([[np.cos(a), np.sin(a), 0.0] for a in np.linspace(0, 2 * np.pi, 8, endpoint=False)])
    eye[:8] = pupil + 0.5 * ring  # symmetric: the mean is the pupil
    return eye


@pytest.mark.parametrize("left", [True, False])
def test_gaze_towards_the_camera_and_aside(left):
    face = _face_with_eyes_at(600.0)
    centre_x = -30.0 if left else 30.0
    centre = np.array([centre_x, 0.0, 600.0]) + np.array(EYEBALL_OFFSET_MM)  # no head rotation
    to_camera = -centre / np.linalg.norm(centre)
    g = eye_gaze(_eye_looking(centre, to_camera), face, np.zeros(3), left_eye=left)
    assert g.dtype == np.float32 and np.linalg.norm(g) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(g, to_camera, atol=1e-4)
    aside = np.array([0.3, -0.2, -1.0])
    g = eye_gaze(_eye_looking(centre, aside), face, np.zeros(3), left_eye=left)
    np.testing.assert_allclose(g, aside / np.linalg.norm(aside), atol=1e-4)


def test_gaze_angle_and_pupil():
    ahead = np.array([0.0, 0.0, -1.0], np.float32)
    np.testing.assert_allclose(gaze_angle(ahead, ahead), [0.0, 0.0], atol=1e-7)
    right_up = np.array([np.sin(0.2), -np.sin(0.1), -1.0], np.float32)
    ax, ay = gaze_angle(right_up, right_up)
    assert ax == pytest.approx(np.arctan2(np.sin(0.2), 1.0), abs=1e-6)
    assert ay == pytest.approx(np.arctan2(-np.sin(0.1), 1.0), abs=1e-6)
    eye = np.arange(28 * 3, dtype=float).reshape(28, 3)
    np.testing.assert_allclose(pupil_position(eye), eye[:8].mean(axis=0))


def test_ray_missing_the_eyeball_points_ahead_as_openface():
    face = _face_with_eyes_at(600.0)
    eye = np.tile([200.0, 0.0, 600.0], (28, 1))  # the pupil far off the eyeball's line
    g = eye_gaze(eye, face, np.zeros(3), left_eye=True)
    centre = np.array([-30.0, 0.0, 600.0]) + np.array(EYEBALL_OFFSET_MM)
    expect = np.array([0.0, 0.0, -1.0]) - centre  # OpenFace's fallback point (0, 0, -1)
    np.testing.assert_allclose(g, expect / np.linalg.norm(expect), atol=1e-5)
