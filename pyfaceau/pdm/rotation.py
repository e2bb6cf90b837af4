"""Rotation conversions as OpenFace's ``Utilities/include/RotationHelpers.h`` does them.

OpenFace's Euler convention is XYZ: ``R = Rx(pitch) @ Ry(yaw) @ Rz(roll)``, angles in
radians, and everything is computed in single precision (``cv::Matx33f``, ``cv::Vec3f``).
These helpers return ``float32`` arrays so that callers that mirror OpenFace's maths keep
its rounding; callers that want float64 convert at their boundary.

Axis-angle conversions go through ``cv2.Rodrigues`` exactly as OpenFace's
``cv::Rodrigues`` calls do (same OpenCV code, same float32 inputs).
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

__all__ = [
    "euler_to_rotation_matrix",
    "rotation_matrix_to_euler",
    "euler_to_axis_angle",
    "axis_angle_to_euler",
    "axis_angle_to_rotation_matrix",
    "rotation_matrix_to_axis_angle",
    "orthonormalise",
]

_F32 = np.float32


def euler_to_rotation_matrix(euler: Sequence[float] | np.ndarray) -> np.ndarray:
    """OpenFace's ``Euler2RotationMatrix``: XYZ Euler angles to a rotation matrix.

    Parameters
    ----------
    euler : (3,) array-like, radians ``[pitch (x), yaw (y), roll (z)]``; rounded to
        float32 first, as OpenFace's ``cv::Vec3f`` argument is.

    Returns
    -------
    (3, 3) float32 rotation matrix ``Rx @ Ry @ Rz``.

    Notes
    -----
    Matches OpenFace: the sines and cosines are rounded to float32 and the products are
    formed in float32, in the same order as ``RotationHelpers.h``.
    """
    e = np.asarray(euler, dtype=_F32).reshape(3)
    # sin/cos of a float argument: computed in double then rounded, like C's sin(float)
    # promoted through <cmath>; the float32 rounding of the result is what matters.
    e64 = e.astype(np.float64)
    s1, s2, s3 = np.sin(e64).astype(_F32)
    c1, c2, c3 = np.cos(e64).astype(_F32)
    r = np.empty((3, 3), dtype=_F32)
    r[0, 0] = c2 * c3
    r[0, 1] = -c2 * s3
    r[0, 2] = s2
    r[1, 0] = c1 * s3 + c3 * s1 * s2
    r[1, 1] = c1 * c3 - s1 * s2 * s3
    r[1, 2] = -c2 * s1
    r[2, 0] = s1 * s3 - c1 * c3 * s2
    r[2, 1] = c3 * s1 + c1 * s2 * s3
    r[2, 2] = c1 * c2
    return r


def rotation_matrix_to_euler(rotation: np.ndarray) -> np.ndarray:
    """OpenFace's ``RotationMatrix2Euler`` (through a quaternion, in float32).

    Parameters
    ----------
    rotation : (3, 3) rotation matrix (rounded to float32).

    Returns
    -------
    (3,) float32 ``[pitch, yaw, roll]`` radians.
    """
    r = np.asarray(rotation, dtype=_F32)
    two, four, one = _F32(2.0), _F32(4.0), _F32(1.0)
    q0 = _F32(np.sqrt(_F32(one + r[0, 0] + r[1, 1] + r[2, 2]))) / two
    q1 = (r[2, 1] - r[1, 2]) / (four * q0)
    q2 = (r[0, 2] - r[2, 0]) / (four * q0)
    q3 = (r[1, 0] - r[0, 1]) / (four * q0)
    # OpenFace clamps t1 to [-1, 1] against rounding before the asin.
    t1 = two * (q0 * q2 + q1 * q3)
    t1 = min(max(t1, -one), one)
    yaw = _F32(np.arcsin(np.float64(t1)))
    pitch = _F32(np.arctan2(np.float64(two * (q0 * q1 - q2 * q3)),
                            np.float64(q0 * q0 - q1 * q1 - q2 * q2 + q3 * q3)))
    roll = _F32(np.arctan2(np.float64(two * (q0 * q3 - q1 * q2)),
                           np.float64(q0 * q0 + q1 * q1 - q2 * q2 - q3 * q3)))
    return np.array([pitch, yaw, roll], dtype=_F32)


def axis_angle_to_rotation_matrix(axis_angle: Sequence[float] | np.ndarray) -> np.ndarray:
    """OpenFace's ``AxisAngle2RotationMatrix`` (``cv::Rodrigues``), (3,) -> (3, 3) float32."""
    v = np.asarray(axis_angle, dtype=_F32).reshape(3, 1)
    return cv2.Rodrigues(v)[0].astype(_F32)


def rotation_matrix_to_axis_angle(rotation: np.ndarray) -> np.ndarray:
    """OpenFace's ``RotationMatrix2AxisAngle`` (``cv::Rodrigues``), (3, 3) -> (3,) float32."""
    r = np.ascontiguousarray(rotation, dtype=_F32)
    return cv2.Rodrigues(r)[0].astype(_F32).reshape(3)


def euler_to_axis_angle(euler: Sequence[float] | np.ndarray) -> np.ndarray:
    """OpenFace's ``Euler2AxisAngle``, (3,) radians -> (3,) float32 axis-angle."""
    return rotation_matrix_to_axis_angle(euler_to_rotation_matrix(euler))


def axis_angle_to_euler(axis_angle: Sequence[float] | np.ndarray) -> np.ndarray:
    """OpenFace's ``AxisAngle2Euler``, (3,) axis-angle -> (3,) float32 ``[pitch, yaw, roll]``."""
    return rotation_matrix_to_euler(axis_angle_to_rotation_matrix(axis_angle))


def orthonormalise(rotation: np.ndarray) -> np.ndarray:
    """OpenFace's ``PDM::Orthonormalise``: nearest rotation to a 3x3 matrix, via SVD.

    Parameters
    ----------
    rotation : (3, 3) matrix (rounded to float32).

    Returns
    -------
    (3, 3) float32 ``U @ diag(1, 1, det(U V^T)) @ V^T`` (no reflection).

    Notes
    -----
    Uses ``cv2.SVDecomp`` on float32, the same Jacobi SVD as OpenFace's ``cv::SVD``.
    """
    r = np.ascontiguousarray(rotation, dtype=_F32)
    _, u, vt = cv2.SVDecomp(r)
    x = (u @ vt).astype(_F32)
    w = np.eye(3, dtype=_F32)
    w[2, 2] = _F32(cv2.determinant(x))
    return (u @ w @ vt).astype(_F32)
