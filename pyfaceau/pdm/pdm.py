"""OpenFace's 3D point distribution model (``LandmarkDetector/src/PDM.cpp``).

The PDM describes a face shape as ``mean + princ_comp @ params_local`` in object space
(mm), placed in the image by a weak-perspective (scaled orthographic) projection with
``params_global = [scale, rx, ry, rz, tx, ty]`` (rotation as XYZ Euler angles, radians;
translation in pixels).

Layouts
-------
Public methods (:meth:`PDM.shape_3d`, :meth:`PDM.shape_2d`) take and return ``(n, 3)`` /
``(n, 2)`` float64 arrays. The kernels the CLNF fitter needs (Jacobians, parameter update,
clamping, bounding box) mirror OpenFace's maths and therefore work in OpenFace's column
layout: a 2D shape is ``(2n,)`` ``[x_0..x_{n-1}, y_0..y_{n-1}]``, a 3D shape ``(3n,)``
``[x.., y.., z..]``, and Jacobian rows follow the 2D layout (row ``i`` is ``x_i``, row
``n + i`` is ``y_i``).

Precision
---------
OpenFace keeps the model and every parameter in float32 (``cv::Mat_<float>``,
``cv::Vec6f``). The kernels compute in float32 in OpenFace's order of operations;
parameters are returned as float64 arrays that hold float32-rounded values, so a value
passed back in is unchanged by the float32 rounding at the next call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..errors import InputError
from ..parsers.pdm import read_pdm
from .kernels import (
    clamp_kernel,
    jacobian_kernel,
    project_kernel,
    update_begin_kernel,
    update_end_kernel,
    update_rotation_kernel,
)
from .rotation import euler_to_rotation_matrix

__all__ = ["PDM", "load_pdm", "N_SIGMAS_CLAMP", "ArrayLike"]

ArrayLike = Sequence[float] | np.ndarray

#: Local parameters are clamped to +-3 standard deviations (``PDM::Clamp``, PDM.cpp).
N_SIGMAS_CLAMP = 3.0

_F32 = np.float32


def _vec(x: ArrayLike, n: int, name: str) -> np.ndarray:
    """``x`` as a float32 vector of length ``n`` (OpenFace's float parameters)."""
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if a.shape[0] != n:
        raise InputError(f"{name}: expected {n} values, got {a.shape[0]}")
    return a.astype(_F32)


@dataclass(frozen=True, eq=False)
class PDM:
    """A linear 3D point distribution model, as OpenFace's ``LandmarkDetector::PDM``.

    Attributes
    ----------
    mean_shape : (3n, 1) float32, mm, rows ``[x.., y.., z..]`` (OpenFace's ``mean_shape``).
    princ_comp : (3n, m) float32, principal components (OpenFace's ``princ_comp``).
    eigen_values : (m,) float32, variances of the modes (OpenFace's ``eigen_values``).
    path : the file the model came from, if any.

    Notes
    -----
    Methods with an ``_f32`` suffix are the kernels behind the public methods, for the
    hot loops that mirror OpenFace's maths (CLNF fitting, ``calc_params``): they take
    already validated float32 arrays (OpenFace's column layout) and return float32 arrays.
    """

    mean_shape: np.ndarray
    princ_comp: np.ndarray
    eigen_values: np.ndarray
    path: Path | None = None

    def __post_init__(self) -> None:
        # Freeze the arrays too: a PDM is shared between stages and must not change.
        for name in ("mean_shape", "princ_comp", "eigen_values"):
            arr = np.ascontiguousarray(getattr(self, name), dtype=_F32)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        n3 = self.mean_shape.shape[0]
        if self.mean_shape.shape != (n3, 1) or n3 % 3:
            raise InputError(f"mean_shape must be (3n, 1), got {self.mean_shape.shape}")
        if self.princ_comp.ndim != 2 or self.princ_comp.shape[0] != n3:
            raise InputError(f"princ_comp must be ({n3}, m), got {self.princ_comp.shape}")
        if self.eigen_values.shape != (self.princ_comp.shape[1],):
            raise InputError(
                f"eigen_values must be ({self.princ_comp.shape[1]},), got {self.eigen_values.shape}"
            )
        # Per-model constants of the kernels, computed once.
        object.__setattr__(self, "_mean_flat", np.ascontiguousarray(self.mean_shape[:, 0]))
        object.__setattr__(
            self,
            "_clamp_limit",
            (_F32(N_SIGMAS_CLAMP) * np.sqrt(self.eigen_values)).astype(_F32),
        )
        object.__setattr__(self, "_no_weights", np.ones(2 * (n3 // 3), dtype=_F32))
        object.__setattr__(self, "_derived", {})

    # -- sizes -------------------------------------------------------------------------
    @property
    def n_points(self) -> int:
        """Number of landmarks ``n`` (OpenFace's ``NumberOfPoints``)."""
        return self.mean_shape.shape[0] // 3

    @property
    def n_modes(self) -> int:
        """Number of shape modes ``m`` (OpenFace's ``NumberOfModes``)."""
        return self.princ_comp.shape[1]

    @property
    def mean_flat(self) -> np.ndarray:
        """(3n,) float32 read-only view of ``mean_shape`` (for kernels)."""
        return self._mean_flat  # type: ignore[attr-defined]

    @property
    def clamp_limit(self) -> np.ndarray:
        """(m,) float32 ``3 * sqrt(eigen_values)``, the bound of :meth:`clamp`."""
        return self._clamp_limit  # type: ignore[attr-defined]

    def derived_cache(self, name: str) -> dict:
        """A dict, one per ``name``, where a stage keeps what it derives from this (frozen)
        model once, e.g. ``calc_params``'s model restricted to the visible landmarks."""
        return self._derived.setdefault(name, {})  # type: ignore[attr-defined]

    # -- argument helpers --------------------------------------------------------------
    def local_vec(self, params_local: ArrayLike | None) -> np.ndarray:
        """``params_local`` as float32 ``(m,)``; None means zeros (the mean shape)."""
        if params_local is None:
            return np.zeros(self.n_modes, dtype=_F32)
        return _vec(params_local, self.n_modes, "params_local")

    @staticmethod
    def global_vec(params_global: ArrayLike) -> np.ndarray:
        """``params_global`` as float32 ``(6,)`` (OpenFace's ``cv::Vec6f``)."""
        return _vec(params_global, 6, "params_global")

    def _weights(self, weights: np.ndarray | None) -> np.ndarray | None:
        """Diagonal of OpenFace's ``W`` as float32 ``(2n,)``, or None for identity."""
        if weights is None:
            return None
        w = np.asarray(weights)
        k = 2 * self.n_points
        if w.shape == (k, k):
            w = np.diagonal(w)
        elif w.shape != (k,):
            raise InputError(f"weights: expected ({k},) or ({k}, {k}), got {w.shape}")
        return w.astype(_F32)

    # -- shapes, OpenFace layout ---------------------------------------------------------
    def calc_shape_3d(self, params_local: ArrayLike | None) -> np.ndarray:
        """OpenFace's ``CalcShape3D``: the 3D shape in object space, column layout.

        Parameters
        ----------
        params_local : (m,) shape parameters (None: the mean shape).

        Returns
        -------
        (3n,) float32, mm, ``[x.., y.., z..]`` = ``mean_shape + princ_comp @ params_local``.
        """
        return self.shape_3d_f32(self.local_vec(params_local))

    def shape_3d_f32(self, p: np.ndarray) -> np.ndarray:
        """:meth:`calc_shape_3d` of a float32 ``(m,)`` vector."""
        # OpenFace uses BLAS sgemm here: a float32 product.
        return self._mean_flat + self.princ_comp @ p

    def calc_shape_2d(self, params_global: ArrayLike, params_local: ArrayLike | None) -> np.ndarray:
        """OpenFace's ``CalcShape2D``: weak-perspective projection, column layout.

        Parameters
        ----------
        params_global : (6,) ``[scale, rx, ry, rz, tx, ty]``.
        params_local : (m,) shape parameters (None: the mean shape).

        Returns
        -------
        (2n,) float32 pixels ``[x_0..x_{n-1}, y_0..y_{n-1}]``.
        """
        return self.shape_2d_f32(self.global_vec(params_global), self.local_vec(params_local))

    def shape_2d_f32(self, g: np.ndarray, p: np.ndarray) -> np.ndarray:
        """:meth:`calc_shape_2d` of float32 ``(6,)`` and ``(m,)`` vectors."""
        return project_kernel(self.shape_3d_f32(p), g)

    # -- shapes, public layout -----------------------------------------------------------
    def shape_3d(self, params_local: ArrayLike | None = None) -> np.ndarray:
        """The 3D shape in object space.

        Parameters
        ----------
        params_local : (m,) shape parameters (None: the mean shape).

        Returns
        -------
        (n, 3) float64, mm, columns x, y, z.
        """
        n = self.n_points
        return self.calc_shape_3d(params_local).reshape(3, n).T.astype(np.float64)

    def shape_2d(self, params_global: ArrayLike, params_local: ArrayLike | None = None) -> np.ndarray:
        """The 2D landmarks in the image (OpenFace's ``CalcShape2D``).

        Parameters
        ----------
        params_global : (6,) ``[scale, rx, ry, rz, tx, ty]`` (radians, pixels).
        params_local : (m,) shape parameters (None: the mean shape).

        Returns
        -------
        (n, 2) float64 pixels, columns x, y.
        """
        n = self.n_points
        return self.calc_shape_2d(params_global, params_local).reshape(2, n).T.astype(np.float64)

    # -- CLNF kernels -------------------------------------------------------------------
    def compute_rigid_jacobian(
        self,
        params_local: ArrayLike | None,
        params_global: ArrayLike,
        weights: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """OpenFace's ``ComputeRigidJacobian``: Jacobian over the 6 global parameters.

        Parameters
        ----------
        params_local : (m,) shape parameters.
        params_global : (6,) ``[scale, rx, ry, rz, tx, ty]``.
        weights : OpenFace's NU-RLMS weight matrix ``W``: ``(2n, 2n)`` diagonal matrix or
            its ``(2n,)`` diagonal, rows in column layout (``x_i`` at ``i``, ``y_i`` at
            ``n + i``). None means the identity.

        Returns
        -------
        jacobian : (2n, 6) float32, rows ``[x_0..x_{n-1}, y_0..y_{n-1}]``.
        jacobian_w_t : (6, 2n) float32, ``(diag(W) * jacobian).T``.

        Notes
        -----
        Matches PDM.cpp: the weights are always applied (unlike :meth:`compute_jacobian`).
        """
        g = self.global_vec(params_global)
        s3 = self.calc_shape_3d(params_local)
        return self.jacobian_f32(s3, g, self._weights(weights), rigid=True)

    def compute_jacobian(
        self,
        params_local: ArrayLike | None,
        params_global: ArrayLike,
        weights: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """OpenFace's ``ComputeJacobian``: Jacobian over global and local parameters.

        Parameters
        ----------
        params_local : (m,) shape parameters.
        params_global : (6,) ``[scale, rx, ry, rz, tx, ty]``.
        weights : OpenFace's ``W``: ``(2n, 2n)`` diagonal matrix or its ``(2n,)`` diagonal
            (column layout). None means the identity.

        Returns
        -------
        jacobian : (2n, 6 + m) float32, rows ``[x_0..x_{n-1}, y_0..y_{n-1}]``, columns
            ``[scale, rx, ry, rz, tx, ty, p_0..p_{m-1}]``.
        jacobian_w_t : (6 + m, 2n) float32, ``(diag(W) * jacobian).T``.

        Notes
        -----
        Matches PDM.cpp, including its shortcut: the weights are applied only when
        ``trace(W) != 2n``; a weight vector whose sum is exactly ``2n`` is treated as the
        identity, as OpenFace does.
        """
        g = self.global_vec(params_global)
        s3 = self.calc_shape_3d(params_local)
        w = self._weights(weights)
        if w is not None and self.weights_are_identity(w):
            w = None
        return self.jacobian_f32(s3, g, w, rigid=False)

    def weights_are_identity(self, w: np.ndarray) -> bool:
        """``ComputeJacobian``'s test ``trace(W) == 2n`` on the float32 diagonal ``w``."""
        # cv::trace sums the float diagonal in double; compare as OpenFace does.
        return float(np.sum(w, dtype=np.float64)) == float(2 * self.n_points)

    def jacobian_f32(
        self, s3: np.ndarray, g: np.ndarray, w: np.ndarray | None, rigid: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Jacobian and ``(W J)^T`` from the float32 3D shape ``s3`` (:meth:`shape_3d_f32`)
        and float32 ``g``; ``w`` is the float32 ``(2n,)`` diagonal of ``W``, applied as
        given (None: identity). ``rigid`` keeps the 6 global columns only."""
        apply = w is not None
        return jacobian_kernel(
            s3, self.princ_comp, g, w if apply else self._no_weights, apply, rigid
        )

    def update_model_parameters(
        self,
        delta_p: ArrayLike,
        params_local: ArrayLike | None,
        params_global: ArrayLike,
    ) -> tuple[np.ndarray, np.ndarray]:
        """OpenFace's ``UpdateModelParameters``: apply a Gauss-Newton step.

        Parameters
        ----------
        delta_p : (6,) or (6 + m,) update ``[d_scale, wx, wy, wz, d_tx, d_ty, d_p...]``;
            the rotation part is a small-angle axis rotation composed on the right.
        params_local : (m,) current shape parameters.
        params_global : (6,) current ``[scale, rx, ry, rz, tx, ty]``.

        Returns
        -------
        params_global : (6,) float64 (float32-rounded values), updated.
        params_local : (m,) float64 (float32-rounded values), updated if ``delta_p`` has
            local entries, else unchanged.

        Notes
        -----
        Matches PDM.cpp: ``R1 @ orthonormalise(R')``, then Euler angles through axis-angle
        (``cv::Rodrigues``); a NaN angle resets all three angles to 0 as OpenFace does.
        """
        d = np.asarray(delta_p, dtype=np.float64).reshape(-1).astype(_F32)
        if d.shape[0] not in (6, 6 + self.n_modes):
            raise InputError(f"delta_p: expected 6 or {6 + self.n_modes} values, got {d.shape[0]}")
        g, p = self.update_f32(d, self.local_vec(params_local), self.global_vec(params_global))
        return g.astype(np.float64), p.astype(np.float64)

    def update_f32(
        self, d: np.ndarray, p: np.ndarray, g: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`update_model_parameters` on float32 vectors; returns float32
        ``(params_global, params_local)`` (new arrays)."""
        g2, r2 = update_begin_kernel(d, g)
        # cv::SVD and cv::Rodrigues (matrix to vector, itself an SVD in double) are
        # OpenCV's own code, called as OpenFace calls them.
        _, u, vt = cv2.SVDecomp(r2)
        r3 = update_rotation_kernel(g2, u, vt)
        axis_angle = cv2.Rodrigues(r3)[0].reshape(3)
        return update_end_kernel(g2, axis_angle, p, d)

    def clamp(
        self, params_local: ArrayLike, params_global: ArrayLike
    ) -> tuple[np.ndarray, np.ndarray]:
        """OpenFace's ``PDM::Clamp``: limit shape parameters to +-3 standard deviations.

        Parameters
        ----------
        params_local : (m,) shape parameters.
        params_global : (6,) global parameters (returned unchanged: OpenFace's pose limit
            is commented out).

        Returns
        -------
        params_local : (m,) float64 (float32-rounded values), clamped.
        params_global : (6,) float64 (float32-rounded values).
        """
        p = self.clamp_f32(self.local_vec(params_local))
        g = self.global_vec(params_global)
        return p.astype(np.float64), g.astype(np.float64)

    def clamp_f32(self, p: np.ndarray) -> np.ndarray:
        """:meth:`clamp` of float32 local parameters (a new array)."""
        return clamp_kernel(p, self._clamp_limit)

    # Former private names of the float32 kernels, for code written against them before
    # they became public (branches in flight); use the ``_f32`` names.
    _shape_3d32 = shape_3d_f32
    _shape_2d32 = shape_2d_f32
    _jacobian32 = jacobian_f32
    _update32 = update_f32
    _clamp32 = clamp_f32
    _weights_are_identity = weights_are_identity

    def calc_bounding_box(
        self, params_global: ArrayLike, params_local: ArrayLike | None = None
    ) -> tuple[float, float, float, float]:
        """OpenFace's ``CalcBoundingBox``: the box around the projected model.

        Parameters
        ----------
        params_global : (6,) ``[scale, rx, ry, rz, tx, ty]``.
        params_local : (m,) shape parameters (None: the mean shape).

        Returns
        -------
        ``(x, y, width, height)`` pixels (float32-rounded values).
        """
        n = self.n_points
        s2 = self.calc_shape_2d(params_global, params_local)
        min_x, max_x = s2[:n].min(), s2[:n].max()
        min_y, max_y = s2[n:].min(), s2[n:].max()
        return (float(min_x), float(min_y), float(abs(min_x - max_x)), float(abs(min_y - max_y)))

    def calc_params_from_bbox(
        self,
        bbox: Sequence[float],
        params_local: ArrayLike | None = None,
        rotation: Sequence[float] = (0.0, 0.0, 0.0),
    ) -> np.ndarray:
        """OpenFace's ``CalcParams`` overload from a bounding box (CLNF initialisation).

        Places the model, with the given shape and rotation, so that the box around its
        projected points matches ``bbox`` (the box spans the face outline left to right and
        chin to eyebrows).

        Parameters
        ----------
        bbox : ``(x, y, width, height)`` pixels.
        params_local : (m,) shape parameters (None: the mean shape).
        rotation : (3,) Euler angles ``[rx, ry, rz]`` radians.

        Returns
        -------
        (6,) float64 ``[scale, rx, ry, rz, tx, ty]`` (float32-rounded values).
        """
        bx, by, bw, bh = (_F32(v) for v in bbox)
        rot = _vec(rotation, 3, "rotation")
        n = self.n_points
        shape = self.calc_shape_3d(params_local).reshape(3, n)
        # cv::Mat * cv::Mat is OpenCV's gemm: double sums, float result.
        rotated = (
            euler_to_rotation_matrix(rot).astype(np.float64) @ shape.astype(np.float64)
        ).astype(_F32)
        # cv::minMaxLoc reports doubles; OpenFace mixes them with floats below.
        min_x, max_x = float(rotated[0].min()), float(rotated[0].max())
        min_y, max_y = float(rotated[1].min()), float(rotated[1].max())
        width = _F32(abs(min_x - max_x))
        height = _F32(abs(min_y - max_y))
        scaling = ((bw / width) + (bh / height)) / _F32(2.0)
        tx = bx + bw / _F32(2)
        ty = by + bh / _F32(2)
        tx = _F32(float(tx) - float(scaling) * (min_x + max_x) / 2.0)
        ty = _F32(float(ty) - float(scaling) * (min_y + max_y) / 2.0)
        return np.array([scaling, rot[0], rot[1], rot[2], tx, ty], dtype=_F32).astype(np.float64)


def load_pdm(path: str | Path) -> PDM:
    """Load an OpenFace PDM file (e.g. ``In-the-wild_aligned_PDM_68.txt``).

    Parameters
    ----------
    path : path of the file; use :func:`pyfaceau.modelstore.resolve` to find the
        checksum-verified copy, e.g. ``resolve("model/pdms/In-the-wild_aligned_PDM_68.txt")``.

    Returns
    -------
    PDM

    Raises
    ------
    ModelFileError
        If the file is missing, truncated or not a PDM file.
    """
    data = read_pdm(path)
    return PDM(
        mean_shape=data.mean_shape,
        princ_comp=data.princ_comp,
        eigen_values=data.eigen_values,
        path=data.path,
    )
