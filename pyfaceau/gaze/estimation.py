"""Gaze direction of each eye, as OpenFace 2.2's ``GazeAnalysis::EstimateGaze``.

OpenFace's model (``GazeEstimation.cpp``): the pupil is the mean of the 8 iris landmarks of
the 28-point eye model, in camera space (mm); the eyeball is a sphere of radius 12 mm
centred between the eye corners of the face model, moved by ``R @ (0, -3.5, 7)`` with the
head rotation ``R``. The gaze is the unit vector from the eyeball centre to where the ray
from the camera through the pupil first meets the sphere. All arithmetic float32, as
OpenFace's ``cv::Point3f`` maths.
"""

from __future__ import annotations

import math

import numpy as np

from ..pdm.rotation import euler_to_rotation_matrix

__all__ = ["EYEBALL_RADIUS_MM", "EYEBALL_OFFSET_MM", "eye_gaze", "gaze_angle", "pupil_position"]

_F32 = np.float32

#: Eyeball radius and the eyeball centre's offset from the eye corners' midpoint, in the
#: head's frame, mm (GazeEstimation.cpp).
EYEBALL_RADIUS_MM = 12.0
EYEBALL_OFFSET_MM = (0.0, -3.5, 7.0)
#: The 28-point eye model's iris landmarks, and the face model's eye corners (the
#: person's left eye: 36 and 39; right eye: 42 and 45).
IRIS_LANDMARKS = slice(0, 8)
_EYE_CORNERS = {True: (36, 39), False: (42, 45)}


def pupil_position(eye_landmarks_3d: np.ndarray) -> np.ndarray:
    """The pupil: mean of the iris landmarks (OpenFace's ``GetPupilPosition``).

    Parameters
    ----------
    eye_landmarks_3d : ``(28, 3)`` the eye model's landmarks in camera space, mm.

    Returns
    -------
    ``(3,)`` float32, mm.
    """
    iris = np.asarray(eye_landmarks_3d, dtype=_F32)[IRIS_LANDMARKS]
    return iris.astype(np.float64).mean(axis=0).astype(_F32)  # cv::mean sums in double


def _ray_sphere_intersect(direction: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    """First intersection of the ray from the origin along ``direction`` with a sphere.

    OpenFace's ``RaySphereIntersect`` with the origin at the camera, float32; without an
    intersection it returns the point ``(0, 0, -1)``, as OpenFace does.
    """
    d = direction.astype(_F32)
    c = centre.astype(_F32)
    r = _F32(radius)
    a = _F32(d @ d)
    b = _F32(_F32(2) * _F32(d @ (-c)))
    cc = _F32(c @ c) - r * r
    disc = _F32(b * b - _F32(4) * a * cc)
    if disc < 0:
        return np.array([0.0, 0.0, -1.0], dtype=_F32)
    # OpenFace divides by 2 and then multiplies by a (a is 1 for a unit direction).
    t = _F32(_F32(-b - _F32(math.sqrt(disc))) / _F32(2) * a)
    return (d * t).astype(_F32)


def eye_gaze(
    eye_landmarks_3d: np.ndarray,
    face_landmarks_3d: np.ndarray,
    head_rotation: np.ndarray,
    left_eye: bool,
) -> np.ndarray:
    """One eye's gaze direction (OpenFace's ``EstimateGaze``).

    Parameters
    ----------
    eye_landmarks_3d : ``(28, 3)`` the eye model's landmarks in camera space, mm
        (:func:`pyfaceau.pdm.landmarks_3d_camera` of the eye part's fit).
    face_landmarks_3d : ``(68, 3)`` the face model's landmarks in camera space, mm (the
        ``X_i``, ``Y_i``, ``Z_i`` columns).
    head_rotation : ``(3,)`` Euler angles, radians (the ``pose_R*`` columns).
    left_eye : the person's left eye (OpenFace's ``gaze_0``), else the right (``gaze_1``).

    Returns
    -------
    ``(3,)`` float32 unit vector in camera space (``gaze_k_x``, ``gaze_k_y``, ``gaze_k_z``).
    """
    rot = euler_to_rotation_matrix(np.asarray(head_rotation, dtype=_F32)).astype(_F32)
    pupil = pupil_position(eye_landmarks_3d)
    ray = (pupil / _F32(np.linalg.norm(pupil.astype(np.float64)))).astype(_F32)
    face = np.asarray(face_landmarks_3d, dtype=_F32)
    i, j = _EYE_CORNERS[bool(left_eye)]
    offset = (rot @ np.asarray(EYEBALL_OFFSET_MM, dtype=_F32)).astype(_F32)
    centre = ((face[i] + face[j]) / _F32(2) + offset).astype(_F32)
    axis = (_ray_sphere_intersect(ray, centre, EYEBALL_RADIUS_MM) - centre).astype(_F32)
    return (axis / _F32(np.linalg.norm(axis.astype(np.float64)))).astype(_F32)


def gaze_angle(gaze_left: np.ndarray, gaze_right: np.ndarray) -> np.ndarray:
    """Horizontal and vertical gaze angles of both eyes together (``GetGazeAngle``).

    Returns
    -------
    ``(2,)`` float32 radians: ``atan2(g_x, -g_z)``, ``atan2(g_y, -g_z)`` of the mean of
    the two unit vectors (``gaze_angle_x``, ``gaze_angle_y``).
    """
    g = ((np.asarray(gaze_left, _F32) + np.asarray(gaze_right, _F32)) / _F32(2)).astype(_F32)
    return np.array(
        [math.atan2(float(g[0]), -float(g[2])), math.atan2(float(g[1]), -float(g[2]))],
        dtype=_F32,
    )
