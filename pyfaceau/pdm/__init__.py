"""OpenFace's point distribution model: shapes, CLNF kernels, ``CalcParams`` and pose.

- :class:`PDM` / :func:`load_pdm`: the model (``LandmarkDetector/src/PDM.cpp``), with
  ``shape_3d``, ``shape_2d`` and the kernels the CLNF fitter uses
  (``compute_jacobian``, ``compute_rigid_jacobian``, ``update_model_parameters``,
  ``clamp``, ``calc_bounding_box``, ``calc_params_from_bbox``).
- :func:`calc_params`: fit the model to 2D landmarks (OpenFace's ``CalcParams``).
- :func:`pose_from_params`, :func:`landmarks_3d_camera`: OpenFace's ``GetPose`` and the
  camera-space 3D landmarks (``pose_*``, ``X_*``/``Y_*``/``Z_*`` columns).
"""

from .calc_params import MIN_VISIBLE_LANDMARKS, calc_params, fittable
from .pdm import PDM, load_pdm
from .pose import default_intrinsics, landmarks_3d_camera, pose_from_params

__all__ = [
    "PDM",
    "load_pdm",
    "calc_params",
    "fittable",
    "MIN_VISIBLE_LANDMARKS",
    "pose_from_params",
    "landmarks_3d_camera",
    "default_intrinsics",
]
