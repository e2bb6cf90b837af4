"""Targeted refinement of a few landmarks with OpenFace's SVR patch experts.

For each target landmark, OpenFace's response map (``Patch_experts::Response`` with the
SVR experts, ``SVR_patch_expert.cpp``) is computed over a small search window in the
reference frame of the patch experts, and the landmark is moved to the response's peak.

Reference frame (as ``Patch_experts::Response``): the PDM's shape at scale
``patch_scaling`` (0.25 for ``svr_patches_0.25_general.txt``), no rotation, no
translation; the similarity from the image landmarks to it is OpenFace's
``AlignShapesWithScale``; the area of interest around a landmark is sampled with the
inverse similarity (bilinear, zero outside the image) so that its centre is the landmark.

Response of one expert at one position (``SVR_patch_expert::Response``):
``1 / (1 + exp(-(scaling * ncc + bias)))`` where ``ncc`` is OpenCV's
``TM_CCOEFF_NORMED`` correlation of the expert's weights with the features under it
(type 0: the intensities; type 1: squared central-difference gradients of the area, zero
on its border); the modalities' responses are multiplied (``Multi_SVR_patch_expert``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from .. import jit
from ..errors import InputError
from ..validation import require_bgr8, require_gray, require_landmarks, require_number
from ..modelstore import ModelsArg, resolve
from ..pdm import PDM, calc_params, load_pdm
from ..pdm.rotation import align_shapes_with_scale
from ..parsers.svr_patches import FEATURE_GRADIENT, SVRPatchFile, read_svr_patches

__all__ = [
    "TargetedCLNFRefiner",
    "Refinement",
    "TARGET_LANDMARKS",
    "DEFAULT_PATCH_FILE",
    "DEFAULT_PDM_FILE",
    "estimate_rotation",
]

#: Default SVR patch expert file (reference scale 0.25).
DEFAULT_PATCH_FILE = "model/patch_experts/svr_patches_0.25_general.txt"
#: PDM giving the reference shape (the one ``main_clnf_general.txt`` uses).
DEFAULT_PDM_FILE = "model/pdms/In-the-wild_aligned_PDM_68.txt"
#: Landmarks refined by default: brows (17-22, 26) and mouth corners (48, 54), where a
#: generic regressor is least precise for AU work.
TARGET_LANDMARKS: tuple[int, ...] = (17, 18, 19, 20, 21, 22, 26, 48, 54)
#: Default KDE bandwidth of the mean-shift peak search, reference-frame pixels
#: (OpenFace's CLNF ``sigma`` = 1.5, ``LandmarkDetectorParameters.cpp``).
DEFAULT_SIGMA = 1.5
#: Mean-shift iterations of the peak search.
MEANSHIFT_ITERS = 5
#: Default minimum peak response for a landmark to move (measured on the sample videos:
#: weak maps, e.g. the outer brow ends 17 and 26 in most frames, are mostly noise).
DEFAULT_MIN_RESPONSE = 0.0


# -- geometry --------------------------------------------------------------------------
def estimate_rotation(
    landmarks: np.ndarray, mean_shape_3d: np.ndarray, pinv: np.ndarray | None = None
) -> np.ndarray:
    """A quick head rotation (Euler XYZ, radians) from 2D landmarks and a 3D mean shape.

    Fits an affine camera ``landmarks ~= X @ M.T + t`` by least squares, takes the nearest
    rotation to its rows (Gram-Schmidt) and converts it to OpenFace's Euler angles
    (``R = Rx @ Ry @ Rz``). Used only to pick a patch expert view when no PDM fit
    (``calc_params``) is given; about 20 microseconds.

    Parameters
    ----------
    landmarks : ``(n, 2)`` float64 pixels.
    mean_shape_3d : ``(n, 3)`` float64 object-space shape.
    pinv : ``(3, n)`` pseudo-inverse of the mean-centred ``mean_shape_3d``, if cached.

    Returns
    -------
    ``(3,)`` float64 ``[rx, ry, rz]`` radians.
    """
    if pinv is None:
        pinv = np.linalg.pinv(mean_shape_3d - mean_shape_3d.mean(axis=0))
    mt = pinv @ (landmarks - landmarks.mean(axis=0))  # (3, 2) least-squares affine camera
    return _euler_from_affine_camera(np.ascontiguousarray(mt))


@jit.njit(cache=True, nogil=True)
def _euler_from_affine_camera(mt):  # pragma: no cover - numba
    """OpenFace Euler angles (XYZ) of the rotation nearest an affine camera's rows."""
    out = np.zeros(3)
    r1 = mt[:, 0].copy()
    r2 = mt[:, 1].copy()
    n1 = math.sqrt((r1 * r1).sum())
    if n1 == 0.0:
        return out
    r1 /= n1
    r2 -= (r2 * r1).sum() * r1  # Gram-Schmidt: orthogonal rows
    n2 = math.sqrt((r2 * r2).sum())
    if n2 == 0.0:
        return out
    r2 /= n2
    r3 = np.array([r1[1] * r2[2] - r1[2] * r2[1], r1[2] * r2[0] - r1[0] * r2[2],
                   r1[0] * r2[1] - r1[1] * r2[0]])
    # OpenFace's RotationMatrix2Euler (through a quaternion), rows r1, r2, r3
    q0 = math.sqrt(max(1.0 + r1[0] + r2[1] + r3[2], 1e-12)) / 2.0
    q1 = (r3[1] - r2[2]) / (4.0 * q0)
    q2 = (r1[2] - r3[0]) / (4.0 * q0)
    q3 = (r2[0] - r1[1]) / (4.0 * q0)
    t1 = min(max(2.0 * (q0 * q2 + q1 * q3), -1.0), 1.0)
    out[1] = math.asin(t1)
    out[0] = math.atan2(2.0 * (q0 * q1 - q2 * q3), q0 * q0 - q1 * q1 - q2 * q2 + q3 * q3)
    out[2] = math.atan2(2.0 * (q0 * q3 - q1 * q2), q0 * q0 + q1 * q1 - q2 * q2 - q3 * q3)
    return out


# -- kernels ---------------------------------------------------------------------------
@jit.njit(cache=True, nogil=True)
def _sample_area(gray, cx, cy, a1, b1, size, out):  # pragma: no cover - numba
    """``out[v, u]`` = bilinear ``gray`` at ``(cx, cy) + [[a1, -b1], [b1, a1]] @ (u - c, v - c)``.

    ``c = (size - 1) / 2``; zero outside the image (OpenCV ``warpAffine`` with
    ``WARP_INVERSE_MAP``, ``INTER_LINEAR``, constant border 0).
    """
    h, w = gray.shape
    c = (size - 1) * 0.5
    for v in range(size):
        dv = v - c
        for u in range(size):
            du = u - c
            x = cx + a1 * du - b1 * dv
            y = cy + b1 * du + a1 * dv
            x0 = math.floor(x)
            y0 = math.floor(y)
            fx = x - x0
            fy = y - y0
            ix = int(x0)
            iy = int(y0)
            acc = 0.0
            if 0 <= iy < h:
                if 0 <= ix < w:
                    acc += (1.0 - fx) * (1.0 - fy) * gray[iy, ix]
                if 0 <= ix + 1 < w:
                    acc += fx * (1.0 - fy) * gray[iy, ix + 1]
            if 0 <= iy + 1 < h:
                if 0 <= ix < w:
                    acc += (1.0 - fx) * fy * gray[iy + 1, ix]
                if 0 <= ix + 1 < w:
                    acc += fx * fy * gray[iy + 1, ix + 1]
            out[v, u] = acc


@jit.njit(cache=True, nogil=True)
def _gradient(area, out):  # pragma: no cover - numba
    """OpenFace's ``Grad``: squared central differences, zero on the border."""
    h, w = area.shape
    out[:, :] = 0.0
    for y in range(1, h - 1):
        for x in range(1, w - 1):
            vx = area[y, x + 1] - area[y, x - 1]
            vy = area[y + 1, x] - area[y - 1, x]
            out[y, x] = vx * vx + vy * vy


@jit.njit(cache=True, nogil=True)
def _ncc_logistic(feat, tmpl, scaling, bias, resp):  # pragma: no cover - numba
    """``resp *= 1 / (1 + exp(-(scaling * TM_CCOEFF_NORMED(feat, tmpl) + bias)))``."""
    th, tw = tmpl.shape
    rh, rw = resp.shape
    area = th * tw
    t_mean = 0.0
    for i in range(th):
        for j in range(tw):
            t_mean += tmpl[i, j]
    t_mean /= area
    t_norm = 0.0
    for i in range(th):
        for j in range(tw):
            d = tmpl[i, j] - t_mean
            t_norm += d * d
    t_norm = math.sqrt(t_norm)
    for r in range(rh):
        for c in range(rw):
            s = 0.0
            s2 = 0.0
            st = 0.0
            for i in range(th):
                for j in range(tw):
                    v = feat[r + i, c + j]
                    s += v
                    s2 += v * v
                    st += v * tmpl[i, j]
            num = st - s * t_mean
            den = math.sqrt(max(s2 - s * s / area, 0.0)) * t_norm
            if t_norm < 1e-12:
                ncc = 1.0
            elif abs(num) < den:
                ncc = num / den
            elif abs(num) < den * 1.125:
                ncc = 1.0 if num > 0 else -1.0
            else:
                ncc = 0.0
            resp[r, c] *= 1.0 / (1.0 + math.exp(-(ncc * scaling + bias)))


@jit.njit(cache=True, nogil=True)
def _responses(
    gray, points, a1, b1, weights, ftypes, scalings, biases, radius, out
):  # pragma: no cover - numba
    """Response maps ``out[k]`` ``(2r+1, 2r+1)`` of the experts of each point ``k``."""
    k_pts = points.shape[0]
    n_mod = weights.shape[1]
    th = weights.shape[2]
    win = 2 * radius + 1
    size = win + th - 1
    area = np.empty((size, size), dtype=np.float64)
    grad = np.empty((size, size), dtype=np.float64)
    for k in range(k_pts):
        _sample_area(gray, points[k, 0], points[k, 1], a1, b1, size, area)
        has_grad = False
        out[k, :, :] = 1.0
        for m in range(n_mod):
            if ftypes[k, m] == 1:
                if not has_grad:
                    _gradient(area, grad)
                    has_grad = True
                _ncc_logistic(grad, weights[k, m], scalings[k, m], biases[k, m], out[k])
            else:
                _ncc_logistic(area, weights[k, m], scalings[k, m], biases[k, m], out[k])


@jit.njit(cache=True, nogil=True)
def _meanshift_peaks(resp, sigma, iters, out):  # pragma: no cover - numba
    """Mode of each response map near its centre, by Gaussian-kernel mean shift.

    ``out[k]`` = offset ``(dx, dy)`` from the window centre, reference pixels; starts at
    0 (the current landmark), as OpenFace's ``NonVectorisedMeanShift``.
    """
    k_pts, win, _ = resp.shape
    r = (win - 1) // 2
    a = -0.5 / (sigma * sigma)
    for k in range(k_pts):
        dx = 0.0
        dy = 0.0
        for _ in range(iters):
            sw = 0.0
            sx = 0.0
            sy = 0.0
            for i in range(win):
                ey = (i - r) - dy
                for j in range(win):
                    ex = (j - r) - dx
                    wgt = resp[k, i, j] * math.exp(a * (ex * ex + ey * ey))
                    sw += wgt
                    sx += wgt * (j - r)
                    sy += wgt * (i - r)
            if sw <= 0.0:
                break
            dx = sx / sw
            dy = sy / sw
        out[k, 0] = dx
        out[k, 1] = dy


def _argmax_peaks(resp: np.ndarray, subpixel: bool) -> np.ndarray:
    """Offsets of each map's maximum (optionally refined by a 1D parabola per axis)."""
    k_pts, win, _ = resp.shape
    r = (win - 1) // 2
    flat = resp.reshape(k_pts, -1).argmax(axis=1)
    iy, ix = np.divmod(flat, win)
    off = np.stack([ix - r, iy - r], axis=1).astype(np.float64)
    if subpixel:
        for k in range(k_pts):
            y, x = int(iy[k]), int(ix[k])
            if 0 < x < win - 1:
                l, c, rr = resp[k, y, x - 1], resp[k, y, x], resp[k, y, x + 1]
                den = l - 2 * c + rr
                if den < 0:
                    off[k, 0] += float(np.clip(0.5 * (l - rr) / den, -0.5, 0.5))
            if 0 < y < win - 1:
                l, c, rr = resp[k, y - 1, x], resp[k, y, x], resp[k, y + 1, x]
                den = l - 2 * c + rr
                if den < 0:
                    off[k, 1] += float(np.clip(0.5 * (l - rr) / den, -0.5, 0.5))
    return off


# -- public class ----------------------------------------------------------------------
#: Search radius the fast front end uses (measured best, see ``TargetedCLNFRefiner``).
FAST_SEARCH_WINDOW = 2
#: :meth:`TargetedCLNFRefiner.refine_in_image`: extra margin of the grey region, beyond
#: the half-size of the patch experts' areas of interest, fraction of the landmarks' extent.
REFINE_MARGIN = 0.1


@dataclass
class Refinement:
    """The result of :meth:`TargetedCLNFRefiner.refine`.

    Attributes
    ----------
    landmarks : ``(68, 2)`` float64 pixels.
    params_global : ``(6,)`` float64 ``[scale, rx, ry, rz, tx, ty]`` of the PDM fit when
        the refiner constrains with the PDM, else None.
    params_local : ``(34,)`` float64 shape parameters of that fit, else None.
    """

    landmarks: np.ndarray
    params_global: np.ndarray | None = None
    params_local: np.ndarray | None = None


class TargetedCLNFRefiner:
    """Move a few landmarks to the peak of OpenFace's SVR patch expert responses.

    Parameters
    ----------
    patch_expert_file : an SVR patch expert file; default
        ``svr_patches_0.25_general.txt`` from the model store.
    search_window : search radius, reference-frame pixels (``3`` gives a 7 x 7 response;
        one reference pixel is ``1 / patch_scaling`` PDM millimetres, about 5 image pixels
        for a 180-pixel-wide face at 0.25). The default is the documented 3; the fast
        front end uses :data:`FAST_SEARCH_WINDOW` = 2, which measured better on the 11
        sample videos (9 targets against OpenFace: 2.53 vs 2.66 px; PFLD alone 3.70).
    landmarks : indices (0-67) of the landmarks to refine.
    pdm_file : the PDM whose mean shape defines the reference frame and the pose used
        for view selection; default ``In-the-wild_aligned_PDM_68.txt``.
    peak : ``"meanshift"`` (Gaussian-kernel mean shift from the current point, as
        OpenFace's NU-RLMS step), ``"argmax"`` or ``"argmax_subpixel"``.
    sigma : mean-shift kernel width, reference pixels.
    max_shift : moves longer than this (reference pixels) are not applied.
    min_response : a landmark moves only if its response map's maximum reaches this
        value (a confidence gate; 0 = always move, which measured best on the samples).
    pdm_constrain : after the moves, fit the PDM to all 68 points (OpenFace's
        ``CalcParams``, :func:`pyfaceau.pdm.calc_params`) and return the PDM's shape
        (all 68 points) and parameters. Measured on the 11 sample videos against
        OpenFace (fast front end): all 68 points 3.24 px instead of 3.38 (PFLD alone
        3.53), the 9 targets 2.43 instead of 2.52 (PFLD alone 3.64), and the 9 targets
        not worse than PFLD alone on any video; costs one ``calc_params`` (~1.5 ms).
    models : folders searched first for the default model files.

    Notes
    -----
    Matches OpenFace ``Patch_experts::Response`` (SVR branch) for the reference frame,
    the area of interest, the features and the logistic response. Deviates: the
    reference shape is the PDM's mean shape (no local parameters: the fast path has no
    PDM fit), the area is sampled with exact bilinear weights (OpenCV quantises them to
    1/32 px), and the update is a per-landmark peak search instead of OpenFace's
    PDM-regularised NU-RLMS over all 68 points.
    """

    def __init__(
        self,
        patch_expert_file: str | os.PathLike | None = None,
        search_window: int = 3,
        landmarks: Sequence[int] = TARGET_LANDMARKS,
        *,
        pdm_file: str | os.PathLike | None = None,
        peak: str = "meanshift",
        sigma: float = DEFAULT_SIGMA,
        max_shift: float | None = None,
        min_response: float = DEFAULT_MIN_RESPONSE,
        pdm_constrain: bool = False,
        models: ModelsArg = None,
    ) -> None:
        if isinstance(search_window, bool) or not isinstance(search_window, (int, np.integer)) \
                or not 1 <= search_window <= 15:
            raise InputError(
                f"search_window: expected an integer radius 1..15, got {search_window!r}"
            )
        if peak not in ("meanshift", "argmax", "argmax_subpixel"):
            raise InputError(
                f"peak: expected 'meanshift', 'argmax' or 'argmax_subpixel', got {peak!r}"
            )
        require_number(sigma, "sigma", minimum=0.0)
        if not sigma > 0:
            raise InputError(f"sigma: expected a positive width, got {sigma!r}")
        path = (
            Path(patch_expert_file)
            if patch_expert_file is not None
            else resolve(DEFAULT_PATCH_FILE, models)
        )
        pdm_path = Path(pdm_file) if pdm_file is not None else resolve(DEFAULT_PDM_FILE, models)
        self.patches: SVRPatchFile = read_svr_patches(path)
        pdm = load_pdm(pdm_path)
        self.pdm: PDM = pdm
        self.pdm_constrain = bool(pdm_constrain)
        n = self.patches.n_points
        if pdm.mean_shape.shape[0] != 3 * n:
            raise InputError(
                f"pdm_file: {pdm_path} has {pdm.mean_shape.shape[0] // 3} points, the patch "
                f"experts {n}; use matching files"
            )
        lms = np.asarray(list(landmarks), dtype=np.int64).reshape(-1)
        if lms.size == 0 or lms.min() < 0 or lms.max() >= n or len(set(lms.tolist())) != lms.size:
            raise InputError(
                f"landmarks: expected distinct indices in 0..{n - 1}, got {list(landmarks)}"
            )
        self.landmarks = tuple(int(i) for i in lms)
        self.search_window = int(search_window)
        self.peak = peak
        self.sigma = float(sigma)
        self.max_shift = None if max_shift is None else float(max_shift)
        if not 0.0 <= min_response < 1.0:
            raise InputError(f"min_response: expected a value in [0, 1), got {min_response}")
        self.min_response = float(min_response)
        self.mean_shape_3d = pdm.mean_shape[:, 0].astype(np.float64).reshape(3, n).T.copy()
        self.reference_shape = self.patches.patch_scaling * self.mean_shape_3d[:, :2]
        self._pinv = np.linalg.pinv(self.mean_shape_3d - self.mean_shape_3d.mean(axis=0))
        self._pack_experts()
        #: Largest expert support among the targets, reference pixels.
        self.patch_size = max(
            max(e.width, e.height) for row in self.patches.experts for e in row
        )

    def _pack_experts(self) -> None:
        """Stack the target landmarks' experts per view into kernel-ready arrays."""
        p = self.patches
        self._packed = []
        for v in range(p.n_views):
            experts = [p.experts[v][j] for j in self.landmarks]
            n_mod = {len(e.modalities) for e in experts}
            sizes = {(e.height, e.width) for e in experts}
            visible = np.array([bool(p.visibilities[v, j]) and len(p.experts[v][j].modalities) > 0
                                for j in self.landmarks])
            if len(n_mod) != 1 or len(sizes) != 1 or 0 in n_mod:
                # Experts of mixed shapes in this view (not the case in OpenFace's SVR
                # files): the view is not used, the frontal view replaces it.
                self._packed.append(None)
                continue
            m = n_mod.pop()
            th, tw = sizes.pop()
            w = np.zeros((len(experts), m, th, tw), dtype=np.float64)
            ft = np.zeros((len(experts), m), dtype=np.int64)
            sc = np.zeros((len(experts), m), dtype=np.float64)
            bi = np.zeros((len(experts), m), dtype=np.float64)
            for k, e in enumerate(experts):
                for q, mod in enumerate(e.modalities):
                    w[k, q] = mod.weights
                    ft[k, q] = 1 if mod.feature_type == FEATURE_GRADIENT else 0
                    sc[k, q] = mod.scaling
                    bi[k, q] = mod.bias
            self._packed.append((w, ft, sc, bi, visible))

    def view_index(self, rotation: np.ndarray) -> int:
        """OpenFace's ``GetViewIdx``: the view whose centre is nearest ``[rx, ry, rz]``."""
        rot = np.asarray(rotation, dtype=np.float64).reshape(-1)[:3]
        d = ((self.patches.centers - rot[None, :]) ** 2).sum(axis=1)
        return int(np.argmin(d))

    def responses(
        self, gray: np.ndarray, landmarks: np.ndarray, params_global: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
        """Response maps of the target landmarks.

        Returns
        -------
        maps : ``(k, 2r+1, 2r+1)`` float64 responses in (0, 1).
        ref_to_img : ``(2, 2)`` float64 similarity from reference to image pixels.
        view : the view used.
        visible : ``(k,)`` bool, the landmark has an expert in that view.
        """
        img = self._check_gray(gray)
        lm = self._check_landmarks(landmarks)
        if params_global is not None:
            g = np.asarray(params_global, dtype=np.float64).reshape(-1)
            if g.shape[0] != 6 or not np.isfinite(g).all():
                raise InputError(
                    "params_global: expected 6 finite values [scale, rx, ry, rz, tx, ty]"
                )
            rot = g[1:4]
        else:
            rot = estimate_rotation(lm, self.mean_shape_3d, self._pinv)
        view = self.view_index(rot)
        packed = self._packed[view]
        if packed is None:
            view = 0
            packed = self._packed[0]
            if packed is None:
                raise InputError(f"{self.patches.path}: the frontal view's experts cannot be used")
        w, ft, sc, bi, visible = packed
        img_to_ref = align_shapes_with_scale(lm, self.reference_shape)
        ref_to_img = np.linalg.inv(img_to_ref)
        a1, b1 = float(ref_to_img[0, 0]), float(-ref_to_img[0, 1])
        pts = np.ascontiguousarray(lm[list(self.landmarks)])
        win = 2 * self.search_window + 1
        maps = np.empty((len(self.landmarks), win, win), dtype=np.float64)
        _responses(img, pts, a1, b1, w, ft, sc, bi, self.search_window, maps)
        return maps, ref_to_img, view, visible

    def refine(
        self, gray: np.ndarray, landmarks: np.ndarray, params_global: np.ndarray | None = None
    ) -> Refinement:
        """Refine the target landmarks (and fit the PDM when ``pdm_constrain``).

        Parameters
        ----------
        gray : ``(H, W)`` uint8 grey image (``cv2.COLOR_BGR2GRAY``), or float.
        landmarks : ``(68, 2)`` float pixels (x, y).
        params_global : ``(6,)`` ``[scale, rx, ry, rz, tx, ty]`` of a PDM fit
            (``calc_params``), used to pick the view; if None the rotation is estimated
            from the landmarks with :func:`estimate_rotation`.

        Returns
        -------
        Refinement
            Without ``pdm_constrain``: a copy of ``landmarks`` with the target landmarks
            moved (those the chosen view marks invisible stay), no parameters. With it:
            the PDM's shape fitted to those points, and its parameters.
        """
        maps, ref_to_img, _, visible = self.responses(gray, landmarks, params_global)
        if self.peak == "meanshift":
            off = np.empty((maps.shape[0], 2), dtype=np.float64)
            _meanshift_peaks(maps, self.sigma, MEANSHIFT_ITERS, off)
        else:
            off = _argmax_peaks(maps, subpixel=self.peak == "argmax_subpixel")
        if self.max_shift is not None:
            too_far = np.hypot(off[:, 0], off[:, 1]) > self.max_shift
            off[too_far] = 0.0
        off[~visible] = 0.0
        off[maps.reshape(maps.shape[0], -1).max(axis=1) < self.min_response] = 0.0
        out = np.array(landmarks, dtype=np.float64, copy=True)
        out[list(self.landmarks)] += off @ ref_to_img.T
        if not self.pdm_constrain:
            return Refinement(out)
        pg, pl = calc_params(self.pdm, out)
        return Refinement(self.pdm.shape_2d(pg, pl), pg, pl)

    def refine_in_image(self, image_bgr: np.ndarray, landmarks: np.ndarray) -> Refinement:
        """:meth:`refine` on the grey face region of a BGR image only (the areas of
        interest lie well inside it), which saves converting the whole frame.

        Parameters
        ----------
        image_bgr : ``(H, W, 3)`` uint8 BGR image.
        landmarks : ``(68, 2)`` float64 pixels in ``image_bgr``.

        Returns
        -------
        Refinement in ``image_bgr``'s pixels (the PDM translation too); the landmarks
        unchanged when the region is empty.
        """
        image_bgr = require_bgr8(image_bgr, "image_bgr")
        landmarks = self._check_landmarks(landmarks)
        h, w = image_bgr.shape[:2]
        mn, mx = landmarks.min(axis=0), landmarks.max(axis=0)
        half_area = (2 * self.search_window + 1 + self.patch_size - 1) / 2.0  # reference px
        ref_extent = float(np.ptp(self.reference_shape, axis=0).min())
        margin = (half_area / ref_extent + REFINE_MARGIN) * float((mx - mn).max()) + 2.0
        x1, y1 = max(int(mn[0] - margin), 0), max(int(mn[1] - margin), 0)
        x2, y2 = min(int(mx[0] + margin) + 1, w), min(int(mx[1] + margin) + 1, h)
        if x2 - x1 < 2 or y2 - y1 < 2:
            return Refinement(landmarks)
        gray = cv2.cvtColor(image_bgr[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY)
        offset = np.array([x1, y1], dtype=np.float64)
        res = self.refine(gray, landmarks - offset)
        res.landmarks = res.landmarks + offset
        if res.params_global is not None:
            res.params_global = res.params_global.copy()
            res.params_global[4:6] += offset  # the PDM's translation, image pixels
        return res

    def refine_landmarks(
        self, gray: np.ndarray, landmarks: np.ndarray, params_global: np.ndarray | None = None
    ) -> np.ndarray:
        """:meth:`refine`'s landmarks only: ``(68, 2)`` float64 pixels."""
        return self.refine(gray, landmarks, params_global).landmarks

    # -- validation -------------------------------------------------------------------
    @staticmethod
    def _check_gray(gray: np.ndarray) -> np.ndarray:
        g = require_gray(gray, dtypes=(np.uint8, np.float32, np.float64))
        return np.ascontiguousarray(g)

    def _check_landmarks(self, landmarks: np.ndarray) -> np.ndarray:
        # A failed frame's all-zero landmarks would divide by a zero scale further on.
        return require_landmarks(landmarks, self.patches.n_points)
