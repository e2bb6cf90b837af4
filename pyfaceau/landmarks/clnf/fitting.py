"""NU-RLMS: OpenFace's regularised landmark mean-shift fitting of the PDM.

Mirrors ``CLNF::Fit``, ``CLNF::NU_RLMS``, ``CLNF::NonVectorisedMeanShift_precalc_kde``
and ``CLNF::GetWeightMatrix`` (``LandmarkDetector/src/LandmarkDetectorModel.cpp``):

- per scale (patch experts at 0.25, 0.35, 0.5 of the reference size for the face
  model), skipping scales whose window size is 0: response maps around the current
  shape, then a rigid NU-RLMS pass (global parameters only, no regularisation) and a
  non-rigid pass (global and local parameters, Tikhonov regularisation by
  ``reg_factor / eigenvalue``), both starting from, and sampling the responses around,
  the shape at the start of the scale;
- each pass: up to ``num_optimisation_iteration`` Gauss-Newton steps, stopping when the
  shape moved less than 0.01 px (L2 norm over all coordinates) since the last step; the
  step solves ``(J_w^T J + R) dp = J_w^T v - R p`` where ``v`` are the mean-shifts of
  the response maps under a Gaussian KDE, in image coordinates;
- the KDE is evaluated from a table precomputed on a 0.1 px grid of the landmark's
  offset in the response window (OpenFace's approximation, reproduced exactly);
- with ``refine_parameters``, ``reg_factor``, ``sigma`` and ``weight_factor`` change
  with the scale as OpenFace's ``Fit`` does.

All arithmetic is float32 as in OpenFace; PDM maths comes from :class:`pyfaceau.pdm.PDM`.
"""

from __future__ import annotations

import math
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import Sequence

import cv2
import numpy as np

from ... import blas, jit
from ...pdm import PDM
from ...pdm.kernels import (
    add_diagonal_kernel,
    clamp_kernel,
    jacobian_kernel,
    project_kernel,
    shape_3d_kernel,
    update_kernel,
)
from ...pdm.opencv_kernels import cholesky_solve_f32
from .patch_experts import (
    BILINEAR_TABLE,
    CCNFScale,
    patch_responses,
    responses_kernel,
    similarity_to_reference_kernel,
)

__all__ = [
    "FitParameters",
    "ScaleFitResult",
    "MEAN_SHIFT_STEP",
    "SHAPE_CONVERGENCE_PX",
    "MIN_FACE_SCALE",
    "LIKELIHOOD_SCALE",
    "KDECache",
    "weight_matrix_diagonal",
    "nu_rlms",
    "fit_scales",
]

#: Grid step (px) of the precomputed KDE table (``step_size = 0.1``,
#: ``NonVectorisedMeanShift_precalc_kde``, LandmarkDetectorModel.cpp).
MEAN_SHIFT_STEP = np.float32(0.1)
#: A NU-RLMS pass stops when the shape moved less than this (``norm(...) < 0.01``).
SHAPE_CONVERGENCE_PX = 0.01
#: ``CLNF::Fit`` fails when the scale drops below this ("face too small", < ~30 px).
MIN_FACE_SCALE = 0.25
#: ``CLNF::Fit`` also records the likelihood when the scale drops below this.
LIKELIHOOD_SCALE = 0.30
#: Reference scale for the per-scale parameter refinement (``/ 0.25``, ``Fit``).
REFINE_BASE_SCALE = 0.25
#: Offset added to the KDE sums before the log (numerical stability, ``NU_RLMS``).
LHOOD_EPS = 1e-8

_F32 = np.float32


@dataclass(frozen=True)
class FitParameters:
    """The subset of OpenFace's ``FaceModelParameters`` that ``CLNF::Fit`` uses.

    Attributes
    ----------
    window_sizes : response window size per scale (0 skips the scale); extra entries
        beyond the model's scales are ignored, as in OpenFace.
    reg_factor : weight of the shape prior (Tikhonov, over eigenvalues).
    sigma : KDE standard deviation of the mean-shift (px in the reference frame).
    weight_factor : NU-RLMS weighting by patch confidence; 0 means identity weights.
    num_iterations : Gauss-Newton iterations per pass (``num_optimisation_iteration``).
    refine_parameters : adapt ``reg_factor``, ``sigma``, ``weight_factor`` per scale.
    """

    window_sizes: tuple[int, ...]
    reg_factor: float = 25.0
    sigma: float = 1.5
    weight_factor: float = 0.0
    num_iterations: int = 5
    refine_parameters: bool = True

    def for_scale(self, patch_scaling: Sequence[float], scale: int) -> "FitParameters":
        """The parameters ``Fit`` uses at ``scale`` (``tmp_parameters``), float32 values."""
        if not self.refine_parameters:
            return self
        scale_max = min(scale, 2)
        lg = math.log(patch_scaling[scale_max] / REFINE_BASE_SCALE) / math.log(2)
        reg = float(_F32(float(_F32(self.reg_factor)) - 15 * lg))
        if reg <= 0:
            reg = float(_F32(0.001))
        sigma = float(_F32(float(_F32(self.sigma)) + 0.25 * lg))
        wf = float(_F32(self.weight_factor))
        wf = float(_F32(wf + 2 * wf * lg))
        return replace(self, reg_factor=reg, sigma=sigma, weight_factor=wf)


@dataclass
class ScaleFitResult:
    """What :func:`fit_scales` returns (OpenFace's ``CLNF::Fit`` outputs).

    Attributes
    ----------
    params_global : (6,) float64 (float32 values).
    params_local : (m,) float64 (float32 values).
    success : False when the face became too small (scale < 0.25).
    model_likelihood : mean log KDE likelihood over visible landmarks at the last scale
        fitted (OpenFace's ``model_likelihood``); -10 if never computed.
    landmark_likelihoods : (n,) float32 per-landmark KDE sums (-1e8 when invisible), or
        None if never computed.
    view : view index used at the last scale fitted.
    """

    params_global: np.ndarray
    params_local: np.ndarray
    success: bool
    model_likelihood: float
    landmark_likelihoods: np.ndarray | None
    view: int


class KDECache:
    """OpenFace's ``kde_resp_precalc``: KDE tables per response window size.

    OpenFace keys the table by window size only and keeps the first sigma it saw; for
    its parameter schedules a window size always comes with the same sigma, so keying by
    ``(window, a)`` gives the same tables.
    """

    def __init__(self) -> None:
        self._tables: dict[tuple[int, float], np.ndarray] = {}

    def table(self, resp_size: int, a: np.float32) -> np.ndarray:
        """The ``((10 w)^2, w^2)`` float32 table of ``exp(a ((dy - ii)^2 + (dx - jj)^2))``.

        Row ``x * 10w + y`` is the offset ``(dx, dy) = (0.1 x, 0.1 y)``, column
        ``ii * w + jj`` the response pixel (row ``ii``, column ``jj``).
        """
        key = (int(resp_size), float(a))
        t = self._tables.get(key)
        if t is None:
            # OpenFace loops ``for (x = 0; x < resp_size / step_size; x++)`` (float bound)
            steps = math.ceil(float(_F32(resp_size) / MEAN_SHIFT_STEP))  # 10 * w
            grid = (np.arange(steps, dtype=_F32) * MEAN_SHIFT_STEP).astype(_F32)
            pix = np.arange(resp_size, dtype=_F32)
            # d2x[x, jj] = (dx - jj)^2, d2y[y, ii] = (dy - ii)^2, float32
            d2x = np.square(grid[:, None] - pix[None, :]).astype(_F32)
            d2y = np.square(grid[:, None] - pix[None, :]).astype(_F32)
            # t[x, y, ii, jj] = exp(a * (vx + vy)), vx from (dy, ii), vy from (dx, jj)
            # in place: the same float32 operations without a copy of the table per step
            t = d2y[None, :, :, None] + d2x[:, None, None, :]
            np.multiply(t, _F32(a), out=t)
            np.exp(t, out=t)
            t = t.reshape(steps * steps, resp_size * resp_size)
            self._tables[key] = t
        return t


@jit.njit(cache=True, nogil=True, error_model="numpy")
def _mean_shift_kde(
    responses: np.ndarray,
    dxs: np.ndarray,
    dys: np.ndarray,
    table: np.ndarray,
    visible: np.ndarray,
    step: np.float32,
    out: np.ndarray,
) -> None:
    """``NonVectorisedMeanShift_precalc_kde``: mean-shift of every response map.

    Parameters
    ----------
    responses : (n, w, w) float32.
    dxs, dys : (n,) float32 landmark positions in the response windows.
    table : KDE table from :meth:`KDECache.table`.
    visible : (n,) bool.
    step : the table's grid step (0.1).
    out : (n, 2) float32, filled with the mean-shift (x, y) in the reference frame.
    """
    n, w, _ = responses.shape
    upper = np.float32(np.float32(w) - step)
    stride = int(np.float64(np.float32(w) / step) + 0.5)
    for i in range(n):
        if not visible[i]:
            out[i, 0] = 0.0
            out[i, 1] = 0.0
            continue
        dx = dxs[i]
        dy = dys[i]
        if dx < 0:
            dx = np.float32(0.0)
        if dy < 0:
            dy = np.float32(0.0)
        if dx > upper:
            dx = upper
        if dy > upper:
            dy = upper
        col = int(np.float64(dy / step) + 0.5)
        row = int(np.float64(dx / step) + 0.5)
        idx = row * stride + col
        mx = np.float32(0.0)
        my = np.float32(0.0)
        s = np.float32(0.0)
        k = 0
        for ii in range(w):
            for jj in range(w):
                v = responses[i, ii, jj] * table[idx, k]
                k += 1
                s += v
                mx += v * np.float32(jj)
                my += v * np.float32(ii)
        out[i, 0] = mx / s - dx
        out[i, 1] = my / s - dy


@jit.njit(cache=True, nogil=True, error_model="numpy")
def _kde_likelihoods(
    responses: np.ndarray,
    dxs: np.ndarray,
    dys: np.ndarray,
    visible: np.ndarray,
    sigma: np.float32,
    out: np.ndarray,
) -> np.float32:
    """The likelihood block at the end of ``NU_RLMS`` (no table, no clamping).

    Returns the float32 sum of ``log(sum + 1e-8)`` over visible landmarks and fills
    ``out`` (n,) with the per-landmark sums (-1e8 where invisible).
    """
    n, w, _ = responses.shape
    ss = np.float64(sigma) * np.float64(sigma)
    total = np.float32(0.0)
    for i in range(n):
        out[i] = np.float32(-1e8)
        if not visible[i]:
            continue
        dx = dxs[i]
        dy = dys[i]
        s = np.float32(0.0)
        for ii in range(w):
            vx = (dy - np.float32(ii)) * (dy - np.float32(ii))
            for jj in range(w):
                vy = (dx - np.float32(jj)) * (dx - np.float32(jj))
                v = responses[i, ii, jj]
                v = np.float32(v * math.exp(-0.5 * np.float64(vx + vy) / ss))
                s += v
        out[i] = s
        total = np.float32(np.float64(total) + math.log(np.float64(s) + 1e-8))
    return total


@jit.njit(cache=True, nogil=True, error_model="numpy")
def _moved_less(shape: np.ndarray, previous: np.ndarray, limit: float) -> bool:
    """``norm(shape - previous) < limit`` on float32 shapes (differences and sum in double)."""
    acc = 0.0
    for i in range(shape.shape[0]):
        d = np.float64(np.float32(shape[i] - previous[i]))
        acc += d * d
    return math.sqrt(acc) < limit


@jit.njit(cache=True, nogil=True, error_model="numpy")
def _nu_rlms_rhs(
    shape: np.ndarray,
    base_2d: np.ndarray,
    sim_img_to_ref: np.ndarray,
    sim_ref_to_img: np.ndarray,
    half: np.float32,
    responses: np.ndarray,
    table: np.ndarray,
    visible: np.ndarray,
    jac: np.ndarray,
    jac_w_t: np.ndarray,
    reg: np.ndarray,
    loc: np.ndarray,
    rigid: bool,
    dxs: np.ndarray,
    dys: np.ndarray,
) -> np.ndarray:
    """One NU-RLMS step's right-hand side ``J_w^T v - R p`` (float32, length k).

    Mean-shifts of the response maps at the current ``shape`` (column layout (2n,)),
    mapped to the image; rows of invisible landmarks are zeroed in ``jac``, ``jac_w_t``
    (in place) and in the mean-shifts; ``dxs``/``dys`` (n,) receive the landmarks'
    positions in the response windows (for the likelihood).

    Notes
    -----
    The 2-term products of ``cv::Mat`` float matrices (OpenCV gemm: double sums) are
    exact in any order. ``J_w^T v`` sums 2n double products in order, where OpenBLAS's
    ``dgemv`` sums them in another: the double results can differ in the last bit, which
    the rounding to float32 hides unless it falls on a float32 rounding boundary.
    """
    n = base_2d.shape[0]
    k = jac_w_t.shape[0]
    shifts = np.empty((n, 2), dtype=np.float32)
    for i in range(n):
        ox = np.float64(np.float32(shape[i] - base_2d[i, 0]))
        oy = np.float64(np.float32(shape[n + i] - base_2d[i, 1]))
        offx = np.float32(ox * sim_img_to_ref[0, 0] + oy * sim_img_to_ref[0, 1])
        offy = np.float32(ox * sim_img_to_ref[1, 0] + oy * sim_img_to_ref[1, 1])
        dxs[i] = offx + half
        dys[i] = offy + half
    _mean_shift_kde(responses, dxs, dys, table, visible, MEAN_SHIFT_STEP, shifts)
    ms = np.empty(2 * n, dtype=np.float32)
    for i in range(n):
        if visible[i]:
            sx = np.float64(shifts[i, 0])
            sy = np.float64(shifts[i, 1])
            ms[i] = np.float32(sx * sim_ref_to_img[0, 0] + sy * sim_ref_to_img[0, 1])
            ms[n + i] = np.float32(sx * sim_ref_to_img[1, 0] + sy * sim_ref_to_img[1, 1])
        else:
            ms[i] = 0.0
            ms[n + i] = 0.0
            for row in (i, n + i):
                for c in range(k):
                    jac[row, c] = 0.0
                    jac_w_t[c, row] = 0.0
    rhs = np.empty(k, dtype=np.float32)
    for c in range(k):
        acc = 0.0
        for row in range(2 * n):
            acc += np.float64(jac_w_t[c, row]) * np.float64(ms[row])
        rhs[c] = np.float32(acc)
    if not rigid:
        for j in range(k - 6):
            rhs[6 + j] = rhs[6 + j] - np.float32(np.float64(reg[6 + j]) * np.float64(loc[j]))
    return rhs


@jit.njit(cache=True, nogil=True, error_model="numpy")
def _nu_rlms_step(
    s3: np.ndarray,
    princ_comp: np.ndarray,
    glob: np.ndarray,
    previous: np.ndarray,
    weights: np.ndarray,
    apply_weights: bool,
    rigid: bool,
    base_2d: np.ndarray,
    sim_img_to_ref: np.ndarray,
    sim_ref_to_img: np.ndarray,
    half: np.float32,
    responses: np.ndarray,
    table: np.ndarray,
    visible: np.ndarray,
    reg: np.ndarray,
    loc: np.ndarray,
    dxs: np.ndarray,
    dys: np.ndarray,
) -> tuple[bool, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The element-wise part of one NU-RLMS iteration, in one call.

    From the 3D shape ``s3`` (``PDM.shape_3d_f32``): the 2D shape, the convergence test
    against ``previous`` (empty on the first iteration), the Jacobians
    (``PDM.jacobian_f32``) and the right-hand side (:func:`_nu_rlms_rhs`). Returns
    ``(converged, shape, jac, jac_w_t, rhs)``; when converged the last three are empty.
    """
    shape = project_kernel(s3, glob)
    empty1 = np.empty(0, dtype=np.float32)
    empty2 = np.empty((0, 0), dtype=np.float32)
    if previous.shape[0] > 0 and _moved_less(shape, previous, SHAPE_CONVERGENCE_PX):
        return True, shape, empty2, empty2, empty1
    jac, jac_w_t = jacobian_kernel(s3, princ_comp, glob, weights, apply_weights, rigid)
    rhs = _nu_rlms_rhs(
        shape, base_2d, sim_img_to_ref, sim_ref_to_img, half, responses, table, visible,
        jac, jac_w_t, reg, loc, rigid, dxs, dys,
    )
    return False, shape, jac, jac_w_t, rhs


@jit.njit(cache=True, nogil=True)
def _nu_rlms_iterations(
    mean_flat: np.ndarray,
    princ_comp: np.ndarray,
    clamp_limit: np.ndarray,
    glob: np.ndarray,
    loc: np.ndarray,
    weights: np.ndarray,
    apply_weights: bool,
    rigid: bool,
    base_2d: np.ndarray,
    sim_img_to_ref: np.ndarray,
    sim_ref_to_img: np.ndarray,
    half: np.float32,
    responses: np.ndarray,
    table: np.ndarray,
    visible: np.ndarray,
    reg: np.ndarray,
    num_iterations: int,
    dxs: np.ndarray,
    dys: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """All Gauss-Newton iterations of one NU-RLMS pass, without the GIL.

    The loop of :func:`nu_rlms` with NumPy's BLAS (:mod:`pyfaceau.blas`) for the
    products OpenFace forms with BLAS and the bit-exact replicas of ``cv::solve``
    (Cholesky), ``cv::SVD`` and ``cv::Rodrigues``: the same bits as the NumPy/OpenCV
    loop. Returns the float32 ``(params_global, params_local)``.
    """
    previous = np.empty(0, dtype=np.float32)
    for _ in range(num_iterations):
        s3 = shape_3d_kernel(mean_flat, princ_comp, loc)
        converged, previous, jac, jac_w_t, rhs = _nu_rlms_step(
            s3, princ_comp, glob, previous, weights, apply_weights, rigid, base_2d,
            sim_img_to_ref, sim_ref_to_img, half, responses, table, visible, reg, loc,
            dxs, dys,
        )
        if converged:
            break
        hessian = blas.sgemm_nn(jac_w_t, jac)  # BLAS sgemm in OpenFace
        add_diagonal_kernel(hessian, reg)
        _, update = cholesky_solve_f32(hessian, rhs)
        glob, loc = update_kernel(update, loc, glob)
        loc = clamp_kernel(loc, clamp_limit)
    return glob, loc


@jit.njit(cache=True, nogil=True, error_model="numpy")
def _scale_setup_kernel(
    mean_flat: np.ndarray,
    princ_comp: np.ndarray,
    glob: np.ndarray,
    loc: np.ndarray,
    patch_scaling: np.float32,
) -> tuple[bool, np.ndarray, np.ndarray, np.ndarray]:
    """The start of a scale in :func:`fit_scales`: the shape ((2n,) float32) and the
    similarities to and from the reference shape ((2, 2) float32). Returns ``(ok, shape,
    img_to_ref, ref_to_img)``; ``ok`` is False when the similarity is singular (the
    NumPy path raises there)."""
    s3 = shape_3d_kernel(mean_flat, princ_comp, loc)
    shape = project_kernel(s3, glob)
    g_ref = np.zeros(6, dtype=np.float32)
    g_ref[0] = patch_scaling
    reference = project_kernel(s3, g_ref)
    ok, img_to_ref, ref_to_img = similarity_to_reference_kernel(shape, reference)
    return ok, shape, img_to_ref, ref_to_img


@jit.njit(cache=True, nogil=True, error_model="numpy")
def _scale_nu_rlms_kernel(
    mean_flat: np.ndarray,
    princ_comp: np.ndarray,
    clamp_limit: np.ndarray,
    glob: np.ndarray,
    loc: np.ndarray,
    shape: np.ndarray,
    img_to_ref: np.ndarray,
    ref_to_img: np.ndarray,
    responses: np.ndarray,
    window: int,
    visible: np.ndarray,
    weights: np.ndarray,
    weights_rigid: bool,
    weights_non_rigid: bool,
    reg_non_rigid: np.ndarray,
    table: np.ndarray,
    sigma: np.float32,
    num_iterations: int,
    last_scale: bool,
) -> tuple[np.ndarray, np.ndarray, bool, np.float32, np.ndarray]:
    """The rigid and the non-rigid NU-RLMS passes of a scale on its ``responses``, and
    the likelihood when this is the last scale fitted (``last_scale``, or the face got
    smaller than :data:`LIKELIHOOD_SCALE` in the rigid pass). Returns ``(glob, loc,
    likelihood_computed, log-likelihood sum, (n,) landmark likelihoods)``."""
    n = mean_flat.shape[0] // 3
    half = np.float32((window - 1) // 2)
    base_2d = np.empty((n, 2), dtype=np.float32)
    for i in range(n):
        base_2d[i, 0] = shape[i]
        base_2d[i, 1] = shape[n + i]
    i2r = img_to_ref.astype(np.float64)
    r2i = ref_to_img.astype(np.float64)
    dxs = np.zeros(n, dtype=np.float32)
    dys = np.zeros(n, dtype=np.float32)
    glob, loc = _nu_rlms_iterations(
        mean_flat, princ_comp, clamp_limit, glob, loc, weights, weights_rigid, True, base_2d,
        i2r, r2i, half, responses, table, visible, np.zeros(6, dtype=np.float32),
        num_iterations, dxs, dys,
    )
    last = last_scale or np.float64(glob[0]) < LIKELIHOOD_SCALE
    dxs = np.zeros(n, dtype=np.float32)
    dys = np.zeros(n, dtype=np.float32)
    glob, loc = _nu_rlms_iterations(
        mean_flat, princ_comp, clamp_limit, glob, loc, weights, weights_non_rigid, False,
        base_2d, i2r, r2i, half, responses, table, visible, reg_non_rigid, num_iterations,
        dxs, dys,
    )
    lhoods = np.empty(n, dtype=np.float32)
    total = np.float32(0.0)
    if last:
        total = _kde_likelihoods(responses, dxs, dys, visible, sigma, lhoods)
    return glob, loc, last, total, lhoods


@jit.njit(cache=True, nogil=True, error_model="numpy")
def _fit_scale_kernel(
    mean_flat: np.ndarray,
    princ_comp: np.ndarray,
    clamp_limit: np.ndarray,
    glob: np.ndarray,
    loc: np.ndarray,
    patch_scaling: np.float32,
    image: np.ndarray,
    visible_experts: np.ndarray,
    expert_weights: np.ndarray,
    alpha2: np.ndarray,
    sigmas_t: np.ndarray,
    patch_h: int,
    patch_w: int,
    window: int,
    visible: np.ndarray,
    weights: np.ndarray,
    weights_rigid: bool,
    weights_non_rigid: bool,
    reg_non_rigid: np.ndarray,
    table: np.ndarray,
    sigma: np.float32,
    num_iterations: int,
    last_scale: bool,
) -> tuple[bool, np.ndarray, np.ndarray, bool, np.float32, np.ndarray]:
    """One scale of :func:`fit_scales` in one call, without the GIL (the same bits):
    :func:`_scale_setup_kernel`, the patch responses
    (:func:`~.patch_experts.responses_kernel`) and :func:`_scale_nu_rlms_kernel`.
    ``glob`` (6,) and ``loc`` (m,) float32. Returns ``(ok, glob, loc,
    likelihood_computed, log-likelihood sum, (n,) landmark likelihoods)``."""
    ok, shape, img_to_ref, ref_to_img = _scale_setup_kernel(
        mean_flat, princ_comp, glob, loc, patch_scaling
    )
    if not ok:
        return False, glob, loc, False, np.float32(0.0), np.empty(0, dtype=np.float32)
    responses = responses_kernel(
        image, shape, ref_to_img, visible_experts, expert_weights, alpha2, sigmas_t,
        patch_h, patch_w, window, BILINEAR_TABLE,
    )
    glob, loc, last, total, lhoods = _scale_nu_rlms_kernel(
        mean_flat, princ_comp, clamp_limit, glob, loc, shape, img_to_ref, ref_to_img,
        responses, window, visible, weights, weights_rigid, weights_non_rigid,
        reg_non_rigid, table, sigma, num_iterations, last_scale,
    )
    return True, glob, loc, last, total, lhoods


def weight_matrix_diagonal(
    experts: CCNFScale, view: int, weight_factor: float
) -> np.ndarray | None:
    """``CLNF::GetWeightMatrix`` for CCNF experts, as its diagonal.

    Parameters
    ----------
    experts : the scale's patch experts.
    view : view index.
    weight_factor : NU-RLMS weight factor (after per-scale refinement).

    Returns
    -------
    (2n,) float32 ``weight_factor * patch_confidence`` (x then y), or None for the
    identity (``weight_factor <= 0``).
    """
    if weight_factor <= 0:
        return None
    conf = experts.confidences[view].astype(_F32)
    w = (_F32(weight_factor) * conf).astype(_F32)
    return np.concatenate([w, w])


def nu_rlms(
    pdm: PDM,
    experts: CCNFScale,
    responses: np.ndarray,
    params_global: np.ndarray,
    params_local: np.ndarray,
    base_shape: np.ndarray,
    sim_img_to_ref: np.ndarray,
    sim_ref_to_img: np.ndarray,
    resp_size: int,
    view: int,
    rigid: bool,
    params: FitParameters,
    kde: KDECache,
    compute_likelihood: bool = False,
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray | None]:
    """One NU-RLMS pass (OpenFace's ``CLNF::NU_RLMS``).

    Parameters
    ----------
    pdm : the model's PDM (n points, m modes).
    experts : the scale's patch experts (visibility and confidences of ``view``).
    responses : (n, w, w) float32 response maps around ``base_shape``.
    params_global : (6,) initial ``[scale, rx, ry, rz, tx, ty]``.
    params_local : (m,) initial shape parameters.
    base_shape : (2n,) float32 shape (column layout) the responses are centred on.
    sim_img_to_ref, sim_ref_to_img : (2, 2) float32 similarity transforms.
    resp_size : response window size ``w``.
    view : view index.
    rigid : optimise the 6 global parameters only (no regularisation).
    params : the (per-scale) fitting parameters.
    kde : the model's KDE table cache.
    compute_likelihood : also return the KDE likelihood.

    Returns
    -------
    params_global : (6,) float64 (float32 values).
    params_local : (m,) float64 (float32 values).
    log_likelihood : float, mean ``log(sum + 1e-8)`` over visible landmarks (0 when not
        computed).
    landmark_likelihoods : (n,) float32 or None.
    """
    n = pdm.n_points
    glob = pdm.global_vec(params_global)
    loc = pdm.local_vec(params_local)
    visible, weights, w_rigid, w_non_rigid, reg_non_rigid = _nu_rlms_constants(
        pdm, experts, view, params
    )
    reg = np.zeros(6, dtype=_F32) if rigid else reg_non_rigid
    reg_mat = np.diag(reg)
    apply_weights = w_rigid if rigid else w_non_rigid

    sigma = _F32(params.sigma)
    a = _F32(-0.5 / float(sigma * sigma))
    table = kde.table(resp_size, a)
    half = _F32((resp_size - 1) // 2)
    base_2d = np.ascontiguousarray(np.stack([base_shape[:n], base_shape[n:]], axis=1), dtype=_F32)
    # The similarities as doubles: cv::Mat products of floats are formed in double.
    img_to_ref = np.asarray(sim_img_to_ref, dtype=_F32).astype(np.float64)
    ref_to_img = np.asarray(sim_ref_to_img, dtype=_F32).astype(np.float64)

    dxs = np.zeros(n, dtype=_F32)
    dys = np.zeros(n, dtype=_F32)
    if blas.AVAILABLE:
        glob, loc = _nu_rlms_iterations(
            pdm.mean_flat, pdm.princ_comp, pdm.clamp_limit, glob, loc, weights,
            apply_weights, rigid, base_2d, img_to_ref, ref_to_img, half, responses, table,
            visible, reg, params.num_iterations, dxs, dys,
        )
    previous = np.empty(0, dtype=_F32)
    for _ in range(0 if blas.AVAILABLE else params.num_iterations):
        converged, previous, jac, jac_w_t, rhs = _nu_rlms_step(
            pdm.shape_3d_f32(loc), pdm.princ_comp, glob, previous, weights, apply_weights,
            rigid, base_2d, img_to_ref, ref_to_img, half, responses, table, visible, reg, loc,
            dxs, dys,
        )
        if converged:
            break
        hessian = jac_w_t @ jac  # BLAS sgemm in OpenFace
        hessian += reg_mat
        _, update = cv2.solve(hessian, rhs[:, None], flags=cv2.DECOMP_CHOLESKY)
        glob, loc = pdm.update_f32(update.reshape(-1), loc, glob)
        loc = pdm.clamp_f32(loc)
    glob = glob.astype(np.float64)
    loc = loc.astype(np.float64)

    loglik = 0.0
    lhoods = None
    if compute_likelihood:
        lhoods = np.empty(n, dtype=_F32)
        total = _kde_likelihoods(responses, dxs, dys, visible, sigma, lhoods)
        n_vis = int(visible.sum())
        loglik = float(_F32(float(total) / n_vis)) if n_vis else 0.0
    return glob, loc, loglik, lhoods


def fit_scales(
    pdm: PDM,
    scales: Sequence[CCNFScale],
    image: np.ndarray,
    params_global: np.ndarray,
    params_local: np.ndarray,
    params: FitParameters,
    kde: KDECache,
    executor: Executor | None = None,
    parts: int = 1,
) -> ScaleFitResult:
    """OpenFace's ``CLNF::Fit``: NU-RLMS over the scales with non-zero window size.

    Parameters
    ----------
    pdm : the model's PDM.
    scales : patch experts per scale (ascending ``patch_scaling``).
    image : (H, W) float32 grey image (0..255).
    params_global : (6,) initial ``[scale, rx, ry, rz, tx, ty]``.
    params_local : (m,) initial shape parameters.
    params : fitting parameters (``window_sizes`` per scale).
    kde : the model's KDE table cache.
    executor, parts : threads sharing the patch responses' landmarks on the NumPy path
        (:meth:`CCNFScale.responses`); the GIL-free path (:data:`pyfaceau.blas.AVAILABLE`)
        fits each scale in one call on this thread. The result does not depend on them.

    Returns
    -------
    ScaleFitResult
    """
    glob = pdm.global_vec(params_global).astype(np.float64)
    loc = pdm.local_vec(params_local).astype(np.float64)
    n_scales = len(scales)
    windows = list(params.window_sizes)
    patch_scalings = [s.patch_scaling for s in scales]
    likelihood = -10.0
    lhoods = None
    view = 0
    if blas.AVAILABLE:
        # (one thread per fit: the part models run side by side instead, see CLNF.fit)
        result = _fit_scales_kernels(pdm, scales, image, glob, loc, params, kde)
        if result is not None:
            return result
    for scale in range(n_scales):
        if scale >= len(windows) or windows[scale] == 0:
            continue
        window = int(windows[scale])
        experts = scales[scale]
        view = experts.view_index(glob)
        shape = pdm.calc_shape_2d(glob, loc)
        reference = pdm.calc_shape_2d((experts.patch_scaling, 0, 0, 0, 0, 0), loc)
        responses, img_to_ref, ref_to_img = patch_responses(
            experts, image, shape, reference, view, window, executor, parts
        )
        sp = params.for_scale(patch_scalings, scale)
        glob, loc, _, _ = nu_rlms(
            pdm, experts, responses, glob, loc, shape, img_to_ref, ref_to_img,
            window, view, True, sp, kde,
        )
        last = (
            scale == n_scales - 1
            or scale + 1 >= len(windows)
            or windows[scale + 1] == 0
            or glob[0] < LIKELIHOOD_SCALE
        )
        glob, loc, lik, lh = nu_rlms(
            pdm, experts, responses, glob, loc, shape, img_to_ref, ref_to_img,
            window, view, False, sp, kde, compute_likelihood=last,
        )
        if last:
            likelihood, lhoods = lik, lh
        if glob[0] < MIN_FACE_SCALE:
            return ScaleFitResult(glob, loc, False, likelihood, lhoods, view)
    return ScaleFitResult(glob, loc, True, likelihood, lhoods, view)


def _fit_scales_kernels(
    pdm: PDM,
    scales: Sequence[CCNFScale],
    image: np.ndarray,
    glob: np.ndarray,
    loc: np.ndarray,
    params: FitParameters,
    kde: KDECache,
) -> ScaleFitResult | None:
    """:func:`fit_scales` with one GIL-free :func:`_fit_scale_kernel` call per scale (the
    same bits); None when a similarity is singular, for the NumPy path to raise."""
    g32 = glob.astype(_F32)
    l32 = loc.astype(_F32)
    n_scales = len(scales)
    windows = list(params.window_sizes)
    patch_scalings = [s.patch_scaling for s in scales]
    likelihood = -10.0
    lhoods = None
    view = 0
    for scale in range(n_scales):
        if scale >= len(windows) or windows[scale] == 0:
            continue
        window = int(windows[scale])
        experts = scales[scale]
        view = experts.view_index(g32)
        sp = params.for_scale(patch_scalings, scale)
        visible_experts, expert_weights, alpha2, sigmas_t, ph, pw = experts.view_arrays(
            view, window
        )
        visible, weights, w_rigid, w_non_rigid, reg = _nu_rlms_constants(
            pdm, experts, view, sp
        )
        sigma = _F32(sp.sigma)
        table = kde.table(window, _F32(-0.5 / float(sigma * sigma)))
        last_scale = (
            scale == n_scales - 1 or scale + 1 >= len(windows) or windows[scale + 1] == 0
        )
        ok, g32, l32, last, total, lh = _fit_scale_kernel(
            pdm.mean_flat, pdm.princ_comp, pdm.clamp_limit, g32, l32,
            _F32(experts.patch_scaling), image, visible_experts, expert_weights, alpha2,
            sigmas_t, ph, pw, window, visible, weights, w_rigid, w_non_rigid, reg, table,
            sigma, sp.num_iterations, last_scale,
        )
        if not ok:
            return None
        if last:
            n_vis = int(visible.sum())
            likelihood = float(_F32(float(total) / n_vis)) if n_vis else 0.0
            lhoods = lh
        if g32[0] < MIN_FACE_SCALE:
            return ScaleFitResult(
                g32.astype(np.float64), l32.astype(np.float64), False, likelihood, lhoods, view
            )
    return ScaleFitResult(
        g32.astype(np.float64), l32.astype(np.float64), True, likelihood, lhoods, view
    )


def _nu_rlms_constants(
    pdm: PDM, experts: CCNFScale, view: int, params: FitParameters
) -> tuple[np.ndarray, np.ndarray, bool, bool, np.ndarray]:
    """What a NU-RLMS pass derives from the model and the parameters, cached: the
    landmarks' visibility (n,) bool, the weight diagonal (2n,) float32 (``GetWeightMatrix``;
    ones when ``weight_factor <= 0``), whether the rigid and the non-rigid pass apply it
    (the non-rigid one not when ``trace(W) == 2n``: ``ComputeJacobian``'s shortcut), and
    the non-rigid regularisation (6 + m,) float32 (``reg_factor / eigenvalue``)."""
    cache = experts.derived_cache("nu_rlms")
    key = (id(pdm), view, params.weight_factor, params.reg_factor)
    cached = cache.get(key)
    if cached is not None and cached[0] is pdm:
        return cached[1]
    n, m = pdm.n_points, pdm.n_modes
    visible = np.ascontiguousarray(experts.visibilities[view] != 0)
    weights = weight_matrix_diagonal(experts, view, params.weight_factor)
    w_rigid = weights is not None
    w_non_rigid = weights is not None and not pdm.weights_are_identity(weights)
    if weights is None:
        weights = np.ones(2 * n, dtype=_F32)
    reg = np.zeros(6 + m, dtype=_F32)
    reg[6:] = (_F32(params.reg_factor) / pdm.eigen_values).astype(_F32)
    value = (visible, weights, w_rigid, w_non_rigid, reg)
    cache[key] = (pdm, value)
    return value
