"""Head pose and camera-space 3D landmarks, as OpenFace's FeatureExtraction reports them.

- :func:`pose_from_params`: OpenFace's ``LandmarkDetector::GetPose``
  (``LandmarkDetector/src/LandmarkDetectorFunc.cpp``): a perspective correction of the
  PDM's weak-perspective fit by iterative ``solvePnP``; the ``pose_Tx .. pose_Rz`` columns.
- :func:`landmarks_3d_camera`: OpenFace's ``CLNF::GetShape``
  (``LandmarkDetector/src/LandmarkDetectorModel.cpp``); the ``X_*``, ``Y_*``, ``Z_*``
  columns.
- :func:`default_intrinsics`: the focal length and optical centre FeatureExtraction uses
  when none are given (``SequenceCapture::SetCameraIntrinsics``,
  ``Utilities/src/SequenceCapture.cpp``).
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import InputError
from ..validation import require_landmarks
from .pdm import PDM, ArrayLike
from .rotation import axis_angle_to_euler, euler_to_rotation_matrix

__all__ = [
    "default_intrinsics",
    "pose_from_params",
    "landmarks_3d_camera",
    "DEFAULT_FOCAL_LENGTH",
    "DEFAULT_FOCAL_WIDTH",
    "DEFAULT_FOCAL_HEIGHT",
]

#: FeatureExtraction's "rough guess-timate" of the focal length, pixels, for a 640x480
#: image (``SequenceCapture::SetCameraIntrinsics``, SequenceCapture.cpp).
DEFAULT_FOCAL_LENGTH = 500.0
#: The image width and height that focal length refers to (SequenceCapture.cpp).
DEFAULT_FOCAL_WIDTH = 640.0
DEFAULT_FOCAL_HEIGHT = 480.0

_F32 = np.float32


def default_intrinsics(width: int, height: int) -> tuple[float, float, float, float]:
    """FeatureExtraction's default camera intrinsics for an image size.

    Parameters
    ----------
    width, height : image size, pixels.

    Returns
    -------
    ``(fx, fy, cx, cy)`` pixels: ``fx = fy = (500 * W / 640 + 500 * H / 480) / 2``,
    ``cx = W / 2``, ``cy = H / 2``, computed in float32 as OpenFace does.

    Notes
    -----
    Matches ``SequenceCapture::SetCameraIntrinsics``: for 4:3 images this is
    ``500 * W / 640``; for other aspect ratios OpenFace averages the two estimates.
    """
    if width <= 0 or height <= 0:
        raise InputError(f"image size must be positive, got {width}x{height}")
    w, h = _F32(width), _F32(height)
    fx = _F32(DEFAULT_FOCAL_LENGTH) * (w / _F32(DEFAULT_FOCAL_WIDTH))
    fy = _F32(DEFAULT_FOCAL_LENGTH) * (h / _F32(DEFAULT_FOCAL_HEIGHT))
    f = (fx + fy) / _F32(2.0)
    return float(f), float(f), float(w / _F32(2.0)), float(h / _F32(2.0))


def _check_landmarks(landmarks: np.ndarray, n: int) -> np.ndarray:
    # A failed frame's landmarks (all 0) are valid here: OpenFace writes its pose too.
    return require_landmarks(landmarks, n, fitted=False).astype(_F32)


def pose_from_params(
    pdm: PDM,
    params_global: ArrayLike,
    params_local: ArrayLike,
    landmarks: np.ndarray,
    fx: float,
    fy: float,
    cx: float,
    cy: float,
) -> np.ndarray:
    """Head pose in camera space (OpenFace's ``GetPose``).

    Parameters
    ----------
    pdm : the face model.
    params_global : (6,) ``[scale, rx, ry, rz, tx, ty]`` of the landmark fit (the
        initial guess of the PnP solve).
    params_local : (m,) shape parameters (give the 3D model points).
    landmarks : (n, 2) the 2D landmarks, pixels (OpenFace uses its detected landmarks).
    fx, fy, cx, cy : camera intrinsics, pixels (see :func:`default_intrinsics`).

    Returns
    -------
    (6,) float64 ``[Tx, Ty, Tz (mm), Rx, Ry, Rz (radians)]``, the ``pose_*`` columns
    (float32-rounded values). Zeros if ``scale == 0`` (OpenFace's failure value).

    Notes
    -----
    Matches OpenFace: initial translation ``Z = fx / scale``, ``X = (tx - cx) / fx * Z``,
    ``Y = (ty - cy) / fy * Z``; initial rotation = the Euler angles used as an axis-angle
    vector (as OpenFace passes them); ``cv2.solvePnP`` (iterative, no distortion, with
    extrinsic guess) on float32 points; the axis-angle result converted to XYZ Euler
    angles with OpenFace's ``AxisAngle2Euler``.
    """
    g = pdm.global_vec(params_global)
    lm = _check_landmarks(landmarks, pdm.n_points)
    if g[0] == 0:
        return np.zeros(6, dtype=np.float64)
    fx32, fy32, cx32, cy32 = _F32(fx), _F32(fy), _F32(cx), _F32(cy)
    z = fx32 / g[0]
    # (1.0 / fx) is a double in OpenFace, so these products are formed in double.
    x = _F32((float(g[4] - cx32) * (1.0 / float(fx32))) * float(z))
    y = _F32((float(g[5] - cy32) * (1.0 / float(fy32))) * float(z))
    n = pdm.n_points
    pts_3d = np.ascontiguousarray(pdm.calc_shape_3d(params_local).reshape(3, n).T, dtype=_F32)
    camera = np.array([[fx32, 0, cx32], [0, fy32, cy32], [0, 0, 1]], dtype=_F32)
    rvec = np.array([[g[1]], [g[2]], [g[3]]], dtype=_F32)
    tvec = np.array([[x], [_F32(y)], [z]], dtype=_F32)
    ok, rvec, tvec = cv2.solvePnP(
        pts_3d,
        np.ascontiguousarray(lm),
        camera,
        None,
        rvec=rvec,
        tvec=tvec,
        useExtrinsicGuess=True,
        flags=cv2.SOLVEPNP_ITERATIVE,
    )
    euler = axis_angle_to_euler(np.asarray(rvec, dtype=_F32).reshape(3))
    t = np.asarray(tvec, dtype=_F32).reshape(3)
    return np.array([t[0], t[1], t[2], euler[0], euler[1], euler[2]], dtype=_F32).astype(
        np.float64
    )


def landmarks_3d_camera(
    pdm: PDM,
    params_global: ArrayLike,
    params_local: ArrayLike,
    landmarks: np.ndarray,
    fx: float,
    fy: float,
    cx: float,
    cy: float,
) -> np.ndarray:
    """The 3D landmarks in camera space (OpenFace's ``CLNF::GetShape``).

    Parameters
    ----------
    pdm : the face model.
    params_global : (6,) ``[scale, rx, ry, rz, tx, ty]``.
    params_local : (m,) shape parameters.
    landmarks : (n, 2) the 2D landmarks, pixels.
    fx, fy, cx, cy : camera intrinsics, pixels.

    Returns
    -------
    (n, 3) float64 mm, columns X, Y, Z (the ``X_i``, ``Y_i``, ``Z_i`` columns;
    float32-rounded values).

    Notes
    -----
    Matches OpenFace: depth ``Z_i = fx / scale + (R @ shape_i)_z``; ``X_i`` and ``Y_i``
    back-project the 2D landmark at that depth: ``Z_i * (x_i - cx) / fx``.
    """
    g = pdm.global_vec(params_global)
    lm = _check_landmarks(landmarks, pdm.n_points)
    n = pdm.n_points
    shape = pdm.calc_shape_3d(params_local).reshape(3, n)
    r = euler_to_rotation_matrix(g[1:4])
    # OpenCV's gemm (shape3d.t() * R.t()): double sums, float result; only z is used.
    rotated_z = (shape.T.astype(np.float64) @ r[2].astype(np.float64)).astype(_F32)
    fx32, fy32, cx32, cy32 = _F32(fx), _F32(fy), _F32(cx), _F32(cy)
    z_avg = fx32 / g[0]
    z = z_avg + rotated_z
    xs = z * ((lm[:, 0] - cx32) / fx32)
    ys = z * ((lm[:, 1] - cy32) / fy32)
    return np.stack([xs, ys, z], axis=1).astype(np.float64)
