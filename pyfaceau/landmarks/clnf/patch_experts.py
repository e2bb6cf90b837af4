"""CCNF patch experts: response maps of every landmark over its search window.

Mirrors OpenFace 2.2's ``Patch_experts::Response`` / ``GetViewIdx``
(``LandmarkDetector/src/Patch_experts.cpp``) and ``CCNF_patch_expert::ResponseOpenBlas``
/ ``ComputeSigmas`` (``CCNF_patch_expert.cpp``), the path OpenFace takes with CCNF
experts:

1. the view (orientation bin) closest to the current rotation is chosen;
2. a similarity transform maps the image shape onto the model's shape at the experts'
   reference scale (``patch_scaling``); the area of interest around every landmark
   (``window + patch - 1`` pixels square) is sampled from the image with that
   transform (``cv::warpAffine``, bilinear, inverse map, zero border);
3. every ``patch``-sized sub-window is mean-normalised and scaled to unit norm
   (``im2colContrastNormBias``); each neuron responds with
   ``2 alpha / (1 + exp(-(bias + norm_weights * <w, patch>)))`` (neurons with
   ``alpha <= 1e-4`` are skipped), summed over neurons;
4. the CRF's spatial smoothing: ``response = Sigma @ response`` with
   ``Sigma = inv(2 (sum(alpha) I + sum_b beta_b S_b))`` for the window size (cached),
   and the map is shifted so that its minimum is 0 if it was negative.

All arithmetic is float32 as in OpenFace (the sigmoid in float64, as there).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ... import jit
from ...parallel import run_all, split_ranges
from ...errors import ModelFileError
from ...modelstore.cache import Entry, cached
from ...parsers.ccnf_patches import CCNFPatchFile, read_ccnf_patches
from ... import blas
from ...libm import exp_into
from ...pdm.rotation import align_shapes_with_scale, align_shapes_with_scale_kernel

__all__ = [
    "NEURON_ALPHA_MIN",
    "CCNFScale",
    "load_ccnf_scale",
    "align_shapes_with_scale",
    "similarity_to_reference",
    "patch_responses",
    "responses_kernel",
    "similarity_to_reference_kernel",
    "BILINEAR_TABLE",
]

#: Neurons with ``alpha`` at or below this are skipped (``CCNF_patch_expert::Response``,
#: CCNF_patch_expert.cpp).
NEURON_ALPHA_MIN = 1e-4

_F32 = np.float32


# --------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------
def _bilinear_table() -> np.ndarray:
    """OpenCV's float bilinear weights (``BilinearTab_f``) for sub-pixel offsets in 1/32.

    Returns (32, 32, 4) float32 indexed by ``[y offset, x offset]``: the weights of the
    top-left, top-right, bottom-left and bottom-right source pixels.
    """
    frac = (np.arange(INTER_TAB_SIZE, dtype=_F32) * _F32(1.0 / INTER_TAB_SIZE)).astype(_F32)
    one = _F32(1.0)
    cy = np.stack([one - frac, frac], axis=1)  # (32, 2)
    tab = np.empty((INTER_TAB_SIZE, INTER_TAB_SIZE, 4), dtype=_F32)
    for i in range(INTER_TAB_SIZE):
        for j in range(INTER_TAB_SIZE):
            tab[i, j] = [cy[i, 0] * cy[j, 0], cy[i, 0] * cy[j, 1], cy[i, 1] * cy[j, 0], cy[i, 1] * cy[j, 1]]
    return tab


#: OpenCV's sub-pixel resolution of warps (``INTER_BITS``) and fixed-point coordinate
#: scale (``AB_BITS``), imgwarp.cpp.
INTER_BITS = 5
INTER_TAB_SIZE = 1 << INTER_BITS
_AB_SCALE = 1024.0
_BILINEAR_TABLE = _bilinear_table()
#: Public name of the bilinear table, for :func:`responses_kernel`'s callers.
BILINEAR_TABLE = _BILINEAR_TABLE


@jit.njit(cache=True, nogil=True, error_model="numpy")
def _sample_areas(
    image: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    a1: np.float32,
    b1: np.float32,
    table: np.ndarray,
    out: np.ndarray,
) -> None:
    """Every landmark's area of interest, as ``cv::warpAffine`` samples it.

    One call instead of one ``cv2.warpAffine`` per landmark. Follows OpenCV 4's
    ``WARP_INVERSE_MAP | INTER_LINEAR`` with a zero border on float32 images: source
    coordinates in fixed point (1/1024, rounded to even), sub-pixel offsets quantised to
    1/32, weights from OpenCV's table. Bit for bit what OpenFace's OpenCV 4.6 (Debian's
    build) computes: 0 of 178,200 pixels differ from its ``cv::hal::warpAffine`` on random
    areas (``docs/accuracy.md``); the newer OpenCV of the ``opencv-python`` wheel differs
    from both by one float32 ulp on about a quarter of the pixels.

    Parameters
    ----------
    image : (H, W) float32.
    xs, ys : (k,) float32 area centres (the landmarks), pixels.
    a1, b1 : the reference-to-image similarity ``[[a1, -b1], [b1, a1]]``.
    table : :data:`_BILINEAR_TABLE`.
    out : (k, A, A) float32, filled.
    """
    h, w = image.shape
    k, oh, ow = out.shape
    half = np.float32((np.float32(ow) - np.float32(1.0)) / np.float32(2.0))
    m00 = np.float64(a1)
    m01 = np.float64(-b1)
    m10 = np.float64(b1)
    m11 = np.float64(a1)
    zero = np.float32(0.0)
    for l in range(k):
        # The matrix's translation in float32, as OpenFace builds it (then cv::Mat double).
        m02 = np.float64(xs[l] - a1 * half + b1 * half)
        m12 = np.float64(ys[l] - a1 * half - b1 * half)
        o = out[l]
        for y in range(oh):
            x0 = np.int64(np.rint((m01 * y + m02) * _AB_SCALE)) + 16
            y0 = np.int64(np.rint((m11 * y + m12) * _AB_SCALE)) + 16
            for x in range(ow):
                fx = (x0 + np.int64(np.rint(m00 * x * _AB_SCALE))) >> 5
                fy = (y0 + np.int64(np.rint(m10 * x * _AB_SCALE))) >> 5
                sx = fx >> 5
                sy = fy >> 5
                wt = table[fy & 31, fx & 31]
                if 0 <= sx < w - 1 and 0 <= sy < h - 1:
                    o[y, x] = (
                        image[sy, sx] * wt[0]
                        + image[sy, sx + 1] * wt[1]
                        + image[sy + 1, sx] * wt[2]
                        + image[sy + 1, sx + 1] * wt[3]
                    )
                else:  # zero border, pixel by pixel
                    in_x0 = 0 <= sx < w
                    in_x1 = 0 <= sx + 1 < w
                    in_y0 = 0 <= sy < h
                    in_y1 = 0 <= sy + 1 < h
                    v00 = image[sy, sx] if in_x0 and in_y0 else zero
                    v01 = image[sy, sx + 1] if in_x1 and in_y0 else zero
                    v10 = image[sy + 1, sx] if in_x0 and in_y1 else zero
                    v11 = image[sy + 1, sx + 1] if in_x1 and in_y1 else zero
                    o[y, x] = v00 * wt[0] + v01 * wt[1] + v10 * wt[2] + v11 * wt[3]


@jit.njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def _im2col_contrast_norm(aois: np.ndarray, ph: int, pw: int, out: np.ndarray) -> None:
    """OpenFace's ``im2colContrastNormBias`` for a stack of areas of interest.

    Parameters
    ----------
    aois : (k, A, A) float32 areas of interest.
    ph, pw : patch height and width.
    out : (k, P, 1 + ph*pw) float32, filled: column 0 is 1 (the bias input), columns
        ``1 + xx*ph + yy`` hold the normalised patch (column-major, as OpenFace's
        weights), rows are the window positions in row-major order (``y * ws + x``).

    Notes
    -----
    Each patch's mean and norm are float32 sums in OpenFace's order (row-major for the
    mean, column-major after), which makes them one long chain of dependent additions. The
    chains of all landmarks run side by side in SIMD lanes (a landmark-last copy of the
    areas), then the output is written from a transposed copy, whose patch columns are
    contiguous. Bit-identical to the patch-by-patch loop, about 1.7x faster.
    """
    k, ah, aw = aois.shape
    rows = ah - ph + 1
    cols = aw - pw + 1
    n_items = ph * pw
    inv_n = np.float32(n_items)
    lanes = np.empty((ah, aw, k), dtype=np.float32)
    transposed = np.empty((k, aw, ah), dtype=np.float32)
    for l in range(k):
        for y in range(ah):
            for x in range(aw):
                lanes[y, x, l] = aois[l, y, x]
                transposed[l, x, y] = aois[l, y, x]
    mean = np.empty((rows * cols, k), dtype=np.float32)
    inv = np.empty((rows * cols, k), dtype=np.float32)
    s = np.empty(k, dtype=np.float32)
    ss = np.empty(k, dtype=np.float32)
    for i in range(rows):
        for j in range(cols):
            p = i * cols + j
            for l in range(k):
                s[l] = 0.0
            for yy in range(ph):
                for xx in range(pw):
                    for l in range(k):
                        s[l] += lanes[i + yy, j + xx, l]
            for l in range(k):
                s[l] = s[l] / inv_n
                ss[l] = 0.0
            for xx in range(pw):
                for yy in range(ph):
                    for l in range(k):
                        v = lanes[i + yy, j + xx, l] - s[l]
                        ss[l] += v * v
            for l in range(k):
                norm = np.float32(math.sqrt(ss[l]))
                if norm == 0:
                    norm = np.float32(1.0)
                mean[p, l] = s[l]
                inv[p, l] = np.float32(1.0 / np.float64(norm))
    for l in range(k):
        t = transposed[l]
        for i in range(rows):
            for j in range(cols):
                p = i * cols + j
                m = mean[p, l]
                iv = inv[p, l]
                o = out[l, p]
                o[0] = np.float32(1.0)
                for xx in range(pw):
                    base = 1 + xx * ph
                    for yy in range(ph):
                        o[base + yy] = (t[j + xx, i + yy] - m) * iv


@jit.njit(cache=True, nogil=True, error_model="numpy")
def _sigmoid_sum_smooth(
    z: np.ndarray, alpha2: np.ndarray, sigmas_t: np.ndarray, out: np.ndarray
) -> None:
    """Neuron sigmoids summed, CRF smoothing with Sigma, and the non-negativity shift.

    Parameters
    ----------
    z : (k, P, K) float32 neuron activations (bias included).
    alpha2 : (k, K) float64, ``2 * alpha`` of used neurons, 0 for skipped ones.
    sigmas_t : (k, P, P) float32, the Sigma matrices transposed.
    out : (k, P) float32 response maps (row-major windows), filled.
    """
    k, p_count, n_neurons = z.shape
    resp = np.empty(p_count, dtype=np.float32)
    acc = np.empty(p_count, dtype=np.float32)
    # exp of a row at once, with libm's bits (pyfaceau.libm); its scratch allocated once
    neg_z = np.empty(p_count, dtype=np.float64)
    e = np.empty(p_count, dtype=np.float64)
    kd = np.empty(p_count, dtype=np.float64)
    scale_bits = np.empty(p_count, dtype=np.uint64)
    tail = np.empty(p_count, dtype=np.float64)
    for l in range(k):
        for p in range(p_count):
            resp[p] = np.float32(0.0)
        for nn in range(n_neurons):
            a2 = alpha2[l, nn]
            if a2 == 0.0:
                continue
            for p in range(p_count):
                neg_z[p] = -np.float64(z[l, p, nn])
            exp_into(neg_z, e, kd, scale_bits, tail)
            for p in range(p_count):
                # OpenFace: response += (2 alpha) / (1 + exp(-x)), in double
                resp[p] = np.float32(np.float64(resp[p]) + a2 / (1.0 + e[p]))
        # (Sigma @ resp)[p] summed over q in order; all P sums advance together so that
        # the loop over p is contiguous (Sigma transposed) and vectorises.
        acc[:] = 0.0
        st = sigmas_t[l]
        for q in range(p_count):
            rq = resp[q]
            row = st[q]
            for p in range(p_count):
                acc[p] += row[p] * rq
        mn = np.float32(np.inf)
        for p in range(p_count):
            out[l, p] = acc[p]
            if acc[p] < mn:
                mn = acc[p]
        if mn < 0:
            for p in range(p_count):
                out[l, p] -= mn


@jit.njit(cache=True, nogil=True, error_model="numpy")
def responses_kernel(
    image: np.ndarray,
    shape_2d: np.ndarray,
    sim_ref_to_img: np.ndarray,
    visible: np.ndarray,
    weights: np.ndarray,
    alpha2: np.ndarray,
    sigmas_t: np.ndarray,
    patch_h: int,
    patch_w: int,
    window: int,
    bilinear_table: np.ndarray,
) -> np.ndarray:
    """:meth:`CCNFScale.responses` in one call, without the GIL (same bits).

    ``visible``, ``weights``, ``alpha2``, ``sigmas_t``, ``patch_h``, ``patch_w`` are a
    view's arrays (:meth:`CCNFScale.view_arrays`); ``shape_2d`` (2n,) float32. The neuron
    products are NumPy's ``matmul`` of each landmark (:func:`pyfaceau.blas.matmul_f32`).
    Returns (n, window, window) float32, zero for landmarks without an expert.
    """
    n = shape_2d.shape[0] // 2
    out = np.zeros((n, window, window), dtype=np.float32)
    k = visible.shape[0]
    if k == 0:
        return out
    a1 = np.float32(sim_ref_to_img[0, 0])
    b1 = np.float32(-sim_ref_to_img[0, 1])
    xs = np.empty(k, dtype=np.float32)
    ys = np.empty(k, dtype=np.float32)
    for l in range(k):
        xs[l] = shape_2d[visible[l]]
        ys[l] = shape_2d[visible[l] + n]
    aois = np.empty((k, window + patch_h - 1, window + patch_w - 1), dtype=np.float32)
    _sample_areas(image, xs, ys, a1, b1, bilinear_table, aois)
    p_count = window * window
    cols = np.empty((k, p_count, 1 + patch_h * patch_w), dtype=np.float32)
    _im2col_contrast_norm(aois, patch_h, patch_w, cols)
    z = np.empty((k, p_count, weights.shape[2]), dtype=np.float32)
    for l in range(k):
        z[l] = blas.matmul_f32(cols[l], weights[l])
    resp = np.empty((k, p_count), dtype=np.float32)
    _sigmoid_sum_smooth(z, alpha2, sigmas_t, resp)
    for l in range(k):
        o = out[visible[l]]
        for i in range(window):
            for j in range(window):
                o[i, j] = resp[l, i * window + j]
    return out


@jit.njit(cache=True, nogil=True, error_model="numpy")
def similarity_to_reference_kernel(
    shape_2d: np.ndarray, reference_2d: np.ndarray
) -> tuple[bool, np.ndarray, np.ndarray]:
    """:func:`similarity_to_reference` in numba (same bits): ``(ok, img_to_ref,
    ref_to_img)``; ``ok`` is False where ``numpy.linalg.inv`` would raise."""
    n = shape_2d.shape[0] // 2
    img = np.empty((n, 2), dtype=np.float32)
    ref = np.empty((n, 2), dtype=np.float32)
    for i in range(n):
        img[i, 0] = shape_2d[i]
        img[i, 1] = shape_2d[n + i]
        ref[i, 0] = reference_2d[i]
        ref[i, 1] = reference_2d[n + i]
    img_to_ref = align_shapes_with_scale_kernel(img, ref)
    ok, inv = blas.dgesv_inverse(img_to_ref.astype(np.float64))
    return ok, img_to_ref, inv.astype(np.float32)


# --------------------------------------------------------------------------------------
# Similarity transform to the reference shape
# --------------------------------------------------------------------------------------
def similarity_to_reference(
    shape_2d: np.ndarray, reference_2d: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The image-to-reference similarity and its inverse, as ``Patch_experts::Response``.

    Parameters
    ----------
    shape_2d : (2n,) float32 current landmarks, column layout ``[x.., y..]``.
    reference_2d : (2n,) float32 the same shape at the experts' scale, no rotation.

    Returns
    -------
    sim_img_to_ref : (2, 2) float32.
    sim_ref_to_img : (2, 2) float32, its inverse (``cv::DECOMP_LU``).
    """
    n = shape_2d.shape[0] // 2
    img = np.stack([shape_2d[:n], shape_2d[n:]], axis=1)
    ref = np.stack([reference_2d[:n], reference_2d[n:]], axis=1)
    img_to_ref = align_shapes_with_scale(img, ref)
    ref_to_img = np.linalg.inv(img_to_ref.astype(np.float64)).astype(_F32)
    return img_to_ref, ref_to_img


# --------------------------------------------------------------------------------------
# One scale of CCNF patch experts
# --------------------------------------------------------------------------------------
@dataclass
class _ViewExperts:
    """The experts of one view, stacked over landmarks (visible ones only)."""

    visible: np.ndarray  # (k,) int64 landmark indices with an expert
    weights: np.ndarray  # (k, F, K) float32: row 0 bias, rows 1.. weights*norm_weights
    alpha2: np.ndarray  # (k, K) float64: 2*alpha of used neurons, 0 otherwise
    sum_alpha: np.ndarray  # (k,) float32: sum of all alphas (ComputeSigmas)
    betas: np.ndarray  # (k, C) float64
    patch_h: int
    patch_w: int


@dataclass
class CCNFScale:
    """The CCNF patch experts of one scale (one ``ccnf_patches_*.txt``).

    Attributes
    ----------
    patch_scaling : float, scale of the reference shape (OpenFace's ``patch_scaling``).
    centers : (n_views, 3) float64 view orientations, radians.
    visibilities : (n_views, n) int32.
    confidences : (n_views, n) float64 patch confidences (0 where invisible).
    sigma_components : window size -> its ``(w*w, w*w)`` float32 components.
    """

    patch_scaling: float
    centers: np.ndarray
    visibilities: np.ndarray
    confidences: np.ndarray
    sigma_components: dict[int, tuple[np.ndarray, ...]]
    _views: list[_ViewExperts]
    # Each Sigma is kept transposed (contiguous), as the responses kernel reads it.
    _sigma_t_cache: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)
    _view_arrays_cache: dict[tuple[int, int], tuple] = field(default_factory=dict)
    _derived: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def from_file(cls, data: CCNFPatchFile) -> "CCNFScale":
        """Stack a parsed file's experts for vectorised responses.

        Raises
        ------
        ModelFileError
            If the experts of one view differ in patch size (OpenFace's files do not).
        """
        views = []
        n_views, n = data.n_views, data.n_points
        conf = np.zeros((n_views, n), dtype=np.float64)
        for v in range(n_views):
            idx = [i for i in range(n) if data.visibilities[v, i] and not data.experts[v][i].empty]
            experts = [data.experts[v][i] for i in idx]
            for i in idx:
                conf[v, i] = data.experts[v][i].patch_confidence
            if experts:
                ph, pw = experts[0].height, experts[0].width
                if any((e.height, e.width) != (ph, pw) for e in experts):
                    raise ModelFileError(f"{data.path}: patch experts of view {v} differ in size")
                kmax = max(len(e.neurons) for e in experts)
                n_comp = max(len(e.betas) for e in experts)
            else:
                ph = pw = 1
                kmax = n_comp = 0
            feat = 1 + ph * pw
            w = np.zeros((len(experts), feat, kmax), dtype=_F32)
            a2 = np.zeros((len(experts), kmax), dtype=np.float64)
            sa = np.zeros(len(experts), dtype=_F32)
            betas = np.zeros((len(experts), n_comp), dtype=np.float64)
            for li, e in enumerate(experts):
                s = _F32(0.0)
                for ki, nr in enumerate(e.neurons):
                    # weight_matrix row: bias, then the template flattened column-major
                    # and multiplied by norm_weights, all float32 (CCNF_patch_expert.cpp).
                    w[li, 0, ki] = _F32(nr.bias)
                    w[li, 1:, ki] = nr.weights.T.reshape(-1) * _F32(nr.norm_weights)
                    if nr.alpha > NEURON_ALPHA_MIN:
                        a2[li, ki] = 2.0 * nr.alpha
                    s = _F32(float(s) + nr.alpha)
                sa[li] = s
                betas[li, : len(e.betas)] = e.betas
            views.append(
                _ViewExperts(
                    visible=np.array(idx, dtype=np.int64),
                    weights=w,
                    alpha2=a2,
                    sum_alpha=sa,
                    betas=betas,
                    patch_h=ph,
                    patch_w=pw,
                )
            )
        comps = {w: c for w, c in zip(data.window_sizes, data.sigma_components) if len(c) > 0}
        return cls(
            patch_scaling=float(data.patch_scaling),
            centers=data.centers.copy(),
            visibilities=data.visibilities.copy(),
            confidences=conf,
            sigma_components=comps,
            _views=views,
        )

    @property
    def n_views(self) -> int:
        return self.centers.shape[0]

    @property
    def n_points(self) -> int:
        return self.visibilities.shape[1]

    def view_arrays(
        self, view: int, window: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, int]:
        """A view's experts as :func:`responses_kernel` takes them: ``(visible (k,) int64,
        weights (k, F, K) float32, alpha2 (k, K) float64, sigmas_t (k, P, P) float32,
        patch_h, patch_w)`` for the response window ``window`` (cached)."""
        key = (view, window)
        cached = self._view_arrays_cache.get(key)
        if cached is None:
            ve = self._views[view]
            cached = (
                ve.visible, np.ascontiguousarray(ve.weights), np.ascontiguousarray(ve.alpha2),
                self._sigmas_t(view, window), int(ve.patch_h), int(ve.patch_w),
            )
            self._view_arrays_cache[key] = cached
        return cached

    def derived_cache(self, name: str) -> dict:
        """A dict, one per ``name``, where a stage keeps what it derives from these experts
        once (e.g. NU-RLMS's weights per view); it lives as long as the experts."""
        return self._derived.setdefault(name, {})

    def patch_size(self, view: int) -> tuple[int, int]:
        """``(height, width)`` of the experts of ``view``."""
        ve = self._views[view]
        return ve.patch_h, ve.patch_w

    def view_index(self, params_global: np.ndarray) -> int:
        """OpenFace's ``GetViewIdx``: the view whose centre is nearest the rotation.

        Parameters
        ----------
        params_global : (6,) ``[scale, rx, ry, rz, tx, ty]``.

        Returns
        -------
        int, the view index (first one on ties).
        """
        g = np.asarray(params_global, dtype=_F32)
        best, idx = _F32(0.0), 0
        for i in range(self.n_views):
            c = self.centers[i]
            v1 = _F32(float(g[1]) - c[0])
            v2 = _F32(float(g[2]) - c[1])
            v3 = _F32(float(g[3]) - c[2])
            d = v1 * v1 + v2 * v2 + v3 * v3
            if i == 0 or d < best:
                best, idx = d, i
        return idx

    def sigmas(self, view: int, window: int) -> np.ndarray:
        """OpenFace's ``ComputeSigmas`` for every visible landmark of a view (cached).

        Parameters
        ----------
        view : view index.
        window : response window size ``w``.

        Returns
        -------
        (k, w*w, w*w) float32, in the order of the view's visible landmarks (a view of
        the cached matrices: read, do not write).

        Notes
        -----
        ``Sigma = inv(2 (sum(alpha) I + sum_b beta_b S_b))``; without sigma components
        for the window (the eye models) only the identity term remains, as in OpenFace.
        Inverted with OpenCV's float32 Cholesky (``cv::invert``), as OpenFace does, on
        one BLAS thread as OpenFace (``openblas_set_num_threads(1)``): from 100 x 100 up
        OpenCV hands the factorisation to OpenBLAS (``sposv``), whose result depends on
        its thread count, and these matrices are stored in the model cache, whose key
        does not hold the caller's thread settings. So the Sigmas are the same bits
        whoever asks, and they are OpenFace's (``docs/accuracy.md``).
        """
        return self._sigmas_t(view, window).transpose(0, 2, 1)

    def _sigmas_t(self, view: int, window: int) -> np.ndarray:
        """:meth:`sigmas` with each matrix transposed, ``(k, w*w, w*w)`` float32
        C-contiguous, as :func:`responses_kernel` reads them (computed once, cached)."""
        key = (view, window)
        cached = self._sigma_t_cache.get(key)
        if cached is None:
            cached = np.ascontiguousarray(self._compute_sigmas(view, window).transpose(0, 2, 1))
            self._sigma_t_cache[key] = cached
        return cached

    def _compute_sigmas(self, view: int, window: int) -> np.ndarray:
        ve = self._views[view]
        p = window * window
        comps = self.sigma_components.get(window, ())
        eye = np.eye(p, dtype=_F32)
        out = np.empty((len(ve.visible), p, p), dtype=_F32)
        with blas.single_threaded_blas():
            for li in range(len(ve.visible)):
                q = ve.sum_alpha[li] * eye
                q2 = np.zeros((p, p), dtype=_F32)
                for b, comp in enumerate(comps):
                    q2 = q2 + _F32(ve.betas[li, b]) * comp
                inv_sigma = (_F32(2.0) * (q + q2)).astype(_F32)
                # cv::invert(..., DECOMP_CHOLESKY) in float32, as OpenFace (zeros if not
                # SPD).
                ok, sig = cv2.invert(inv_sigma, flags=cv2.DECOMP_CHOLESKY)
                out[li] = sig if ok else 0.0
        return out

    def responses(
        self,
        image: np.ndarray,
        shape_2d: np.ndarray,
        sim_ref_to_img: np.ndarray,
        view: int,
        window: int,
        executor: Executor | None = None,
        parts: int = 1,
    ) -> np.ndarray:
        """Response maps of every landmark (``Patch_experts::Response``, CCNF branch).

        Parameters
        ----------
        image : (H, W) float32 grey image (0..255).
        shape_2d : (2n,) float32 current landmarks, column layout.
        sim_ref_to_img : (2, 2) float32 reference-to-image similarity.
        view : view index (:meth:`view_index`).
        window : response window size.
        executor : threads to share the landmarks with (None: this thread only).
        parts : number of disjoint landmark ranges handed to ``executor``.

        Returns
        -------
        (n, window, window) float32; maps of landmarks invisible in the view are zero.
        The same bits whatever ``executor`` and ``parts``: every landmark's map is
        computed on its own.
        """
        n = self.n_points
        out = np.zeros((n, window, window), dtype=_F32)
        ve = self._views[view]
        k = len(ve.visible)
        if k == 0:
            return out
        a1 = _F32(sim_ref_to_img[0, 0])
        b1 = _F32(-sim_ref_to_img[0, 1])
        xs = np.ascontiguousarray(shape_2d[ve.visible], dtype=_F32)
        ys = np.ascontiguousarray(shape_2d[ve.visible + n], dtype=_F32)
        sigmas_t = self._sigmas_t(view, window)
        resp = np.empty((k, window * window), dtype=_F32)

        def run(lo: int, hi: int) -> None:
            _response_range(image, xs, ys, a1, b1, ve, sigmas_t, window, lo, hi, resp)

        # Disjoint landmark ranges: no result depends on the split.
        run_all(executor, [(run, r) for r in split_ranges(k, parts if executor else 1)])
        out[ve.visible] = resp.reshape(k, window, window)
        return out


def _response_range(
    image: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    a1: np.float32,
    b1: np.float32,
    ve: _ViewExperts,
    sigmas_t: np.ndarray,
    window: int,
    lo: int,
    hi: int,
    resp: np.ndarray,
) -> None:
    """Response maps of the view's visible landmarks ``lo:hi`` into ``resp[lo:hi]``
    ((k, window * window) float32): areas of interest, contrast-normalised patches,
    neurons, CRF smoothing (numba kernels and a float32 ``matmul``, all releasing the
    GIL)."""
    ph, pw = ve.patch_h, ve.patch_w
    m = hi - lo
    aois = np.empty((m, window + ph - 1, window + pw - 1), dtype=_F32)
    _sample_areas(image, xs[lo:hi], ys[lo:hi], a1, b1, _BILINEAR_TABLE, aois)
    p_count = window * window
    cols = np.empty((m, p_count, 1 + ph * pw), dtype=_F32)
    _im2col_contrast_norm(aois, ph, pw, cols)
    z = np.matmul(cols, ve.weights[lo:hi])  # (m, P, K) float32 (OpenFace: sgemm)
    _sigmoid_sum_smooth(z, ve.alpha2[lo:hi], sigmas_t[lo:hi], resp[lo:hi])


def patch_responses(
    scale: CCNFScale,
    image: np.ndarray,
    shape_2d: np.ndarray,
    reference_2d: np.ndarray,
    view: int,
    window: int,
    executor: Executor | None = None,
    parts: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All of ``Patch_experts::Response`` for one scale.

    Parameters
    ----------
    scale : the scale's experts.
    image : (H, W) float32 grey image.
    shape_2d : (2n,) float32 current landmarks (``CalcShape2D`` of the parameters).
    reference_2d : (2n,) float32 ``CalcShape2D`` with ``[patch_scaling, 0, 0, 0, 0, 0]``
        and the same local parameters.
    view : view index.
    window : response window size.
    executor, parts : threads sharing the landmarks (see :meth:`CCNFScale.responses`).

    Returns
    -------
    responses : (n, window, window) float32.
    sim_img_to_ref, sim_ref_to_img : (2, 2) float32.
    """
    img_to_ref, ref_to_img = similarity_to_reference(shape_2d, reference_2d)
    resp = scale.responses(image, shape_2d, ref_to_img, view, window, executor, parts)
    return resp, img_to_ref, ref_to_img


#: Modules whose code defines a cached CCNFScale and its Sigmas (part of the cache keys).
_CACHE_CODE = [__name__, "pyfaceau.parsers.ccnf_patches", "pyfaceau.parsers._matrix"]


class _StoredSigmas(dict):
    """:class:`CCNFScale`'s Sigma cache, backed by the binary model cache.

    The Sigmas of a (view, window) depend only on the model file: OpenCV's float32
    Cholesky inverse of up to 68 matrices of 121 x 121 is computed the first time, and
    later runs load the stored result (the same bytes) instead, each matrix transposed as
    the responses kernel reads it. The key holds OpenCV's version, whose ``cv::invert``
    computed them.
    """

    def __init__(self, source: Path) -> None:
        super().__init__()
        self.source = source

    def _entry(self, key: tuple[int, int]) -> Entry:
        extra = [int(key[0]), int(key[1]), cv2.__version__]
        return Entry("ccnf_sigmas", [self.source], code=_CACHE_CODE, extra=extra)

    def get(self, key, default=None):  # type: ignore[override]
        value = super().get(key)
        if value is None:
            value = self._entry(key).load()
            if value is None:
                return default
            super().__setitem__(key, value)
        return value

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        self._entry(key).store(value)


def load_ccnf_scale(path: str | os.PathLike) -> CCNFScale:
    """:meth:`CCNFScale.from_file` of a CCNF patch expert file, through the binary model
    cache (:func:`pyfaceau.modelstore.cache.cached`): parsed once, then loaded; its
    Sigmas too are computed once per view and window and then loaded.

    Parameters
    ----------
    path : a (checksum-verified) ``ccnf_patches_*.txt``.
    """
    scale = cached(
        "ccnf_scale",
        [path],
        lambda: CCNFScale.from_file(read_ccnf_patches(path)),
        code=_CACHE_CODE,
    )
    scale._sigma_t_cache = _StoredSigmas(Path(path))
    return scale
