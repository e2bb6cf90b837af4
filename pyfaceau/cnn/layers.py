"""OpenFace's CNN layers, with products whose every bit is fixed by this code.

One engine for the two places OpenFace runs its own CNN format: the MTCNN face detector
(``FaceDetectorMTCNN.cpp``: ``CNN::Inference``) and the landmark detection validator
(``LandmarkDetectionValidator.cpp``: ``DetectionValidator::CheckCNN``). Both call the
layer functions of ``LandmarkDetector/src/CNN_utils.cpp``, mirrored here:

1. ``convolution_direct_blas``: ``im2col_multimap`` (column ``c * kw * kh + xx * kh + yy``
   for input map ``c``, kernel column ``xx``, kernel row ``yy``, then a column of ones
   for the bias) times the weight matrix, with OpenBLAS ``sgemm`` (:func:`conv2d`);
2. ``max_pooling``: output size ``round((n - k) / s) + 1``, windows clipped at the edge
   (:func:`max_pool`);
3. ``fully_connected``: ``weights * input + biases`` with OpenCV's ``cv::Mat`` product
   (:func:`fully_connected`);
4. ``PReLU`` and the validator's ReLU (``cv::threshold(..., THRESH_TOZERO)``)
   (:func:`prelu`, :func:`relu`).

Maps are ``(N, C, H, W)`` float32: a batch of ``N`` inputs with ``C`` maps each
(OpenFace's ``std::vector<cv::Mat_<float>>`` per input).

Notes
-----
Why not BLAS: OpenBLAS picks its ``sgemm`` kernel from the CPU at run time
(``OPENBLAS_CORETYPE``), and kernels sum in different orders, so the last bits of every
network output -- and through a threshold or an arg-max, a detection or a validator
confidence -- would depend on the machine. Here each product has one fixed order:

- a convolution output is one float32 fused multiply-add chain over the im2col columns
  in OpenFace's order, bias last -- what OpenBLAS's Haswell ``sgemm`` micro-kernel does
  for each output element when the inner dimension fits one block. Measured against
  NumPy's OpenBLAS with ``OPENBLAS_CORETYPE=Haswell``, on these layer sizes the chain
  gives the same float32 bits for 2-98% of the outputs more than a double-precision sum
  does, and never differs by more than a few ulp;
- a fully connected output is a double-precision sum of the products in input order,
  rounded to float32, then the bias added in float32: OpenCV's ``gemm`` for float
  matrices accumulates in double (``GEMMSingleMul<float, double>``, matmul.simd.hpp),
  and OpenFace adds the bias separately.

The fused multiply-add is LLVM's ``llvm.fma.f32`` (one rounding, on every CPU: in
hardware where the CPU has FMA, in software otherwise), so the results are the same on
any x86-64 (or other) CPU, whatever the BLAS library and thread count.
"""

from __future__ import annotations

import math
from concurrent.futures import Executor

import numpy as np
from llvmlite import ir

from .. import jit
from ..parallel import run_all, split_ranges

__all__ = [
    "conv_weight_matrix",
    "conv2d",
    "max_pool",
    "pool_output_size",
    "fully_connected",
    "prelu",
    "relu",
    "sigmoid",
]

_F32 = np.float32
#: :func:`conv2d` loops along the output maps (not the rows) when the output is narrower
#: than this and has at least ``PIXEL_LOOP_MIN_MAPS`` maps (speed only; same bits).
PIXEL_LOOP_MAX_WIDTH = 16
PIXEL_LOOP_MIN_MAPS = 16
#: OpenFace's ``max_pooling`` starts every window at ``-FLT_MAX``.
_FLT_MAX = float(np.finfo(np.float32).max)


@jit.intrinsic
def _fma32(typingctx, a, b, c):  # pragma: no cover - compiled by numba
    """``a * b + c`` in float32 with one rounding (LLVM's ``llvm.fma.f32``)."""
    from numba.core import cgutils, types

    f32 = types.float32
    if not (a == f32 and b == f32 and c == f32):
        return None
    sig = f32(f32, f32, f32)

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.FloatType(), [ir.FloatType()] * 3)
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.fma.f32")
        return builder.call(fn, args)

    return sig, codegen


# --------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------
@jit.njit(cache=True, nogil=True, boundscheck=False)
def _conv2d_rows(
    x: np.ndarray, w_t: np.ndarray, kh: int, kw: int, o_start: int, o_end: int, out: np.ndarray
) -> None:
    """Output maps ``o_start:o_end`` of :func:`conv2d`, vectorised along output rows.

    For wide maps. Four output maps and three kernel rows at a time share their loads;
    every output element is still one chain in OpenFace's column order (input map,
    kernel column, kernel row), so the result equals :func:`_conv2d_pixels`' bit for
    bit. Disjoint ranges of output maps can run in parallel.
    """
    n, c, h, w = x.shape
    ho = h - kh + 1
    wo = w - kw + 1
    ck = c * kw * kh
    one = _F32(1.0)
    scratch = np.empty((3, wo), dtype=np.float32)  # rows of absent maps in a block of 4
    for b in range(n):
        o = o_start
        while o < o_end:
            m = min(4, o_end - o)
            w0 = w_t[o]
            w1 = w_t[o + 1] if m > 1 else w0
            w2 = w_t[o + 2] if m > 2 else w0
            w3 = w_t[o + 3] if m > 3 else w0
            for y in range(ho):
                a0 = out[b, o, y]
                a1 = out[b, o + 1, y] if m > 1 else scratch[0]
                a2 = out[b, o + 2, y] if m > 2 else scratch[1]
                a3 = out[b, o + 3, y] if m > 3 else scratch[2]
                for xo in range(wo):
                    a0[xo] = _F32(0.0)
                    a1[xo] = _F32(0.0)
                    a2[xo] = _F32(0.0)
                    a3[xo] = _F32(0.0)
                for ch in range(c):
                    for xx in range(kw):
                        base = ch * kw * kh + xx * kh
                        yy = 0
                        while yy + 3 <= kh:  # three consecutive columns of the chain
                            s0 = x[b, ch, y + yy, xx:]
                            s1 = x[b, ch, y + yy + 1, xx:]
                            s2 = x[b, ch, y + yy + 2, xx:]
                            k = base + yy
                            u0, u1, u2 = w0[k], w0[k + 1], w0[k + 2]
                            v0, v1, v2 = w1[k], w1[k + 1], w1[k + 2]
                            p0, p1, p2 = w2[k], w2[k + 1], w2[k + 2]
                            q0, q1, q2 = w3[k], w3[k + 1], w3[k + 2]
                            for xo in range(wo):
                                t0 = s0[xo]
                                t1 = s1[xo]
                                t2 = s2[xo]
                                a0[xo] = _fma32(t2, u2, _fma32(t1, u1, _fma32(t0, u0, a0[xo])))
                                a1[xo] = _fma32(t2, v2, _fma32(t1, v1, _fma32(t0, v0, a1[xo])))
                                a2[xo] = _fma32(t2, p2, _fma32(t1, p1, _fma32(t0, p0, a2[xo])))
                                a3[xo] = _fma32(t2, q2, _fma32(t1, q1, _fma32(t0, q0, a3[xo])))
                            yy += 3
                        while yy < kh:
                            s0 = x[b, ch, y + yy, xx:]
                            k = base + yy
                            u0, v0, p0, q0 = w0[k], w1[k], w2[k], w3[k]
                            for xo in range(wo):
                                t0 = s0[xo]
                                a0[xo] = _fma32(t0, u0, a0[xo])
                                a1[xo] = _fma32(t0, v0, a1[xo])
                                a2[xo] = _fma32(t0, p0, a2[xo])
                                a3[xo] = _fma32(t0, q0, a3[xo])
                            yy += 1
                # the bias column: 1 * bias, the last term of the chain
                b0, b1, b2, b3 = w0[ck], w1[ck], w2[ck], w3[ck]
                for xo in range(wo):
                    a0[xo] = _fma32(one, b0, a0[xo])
                    a1[xo] = _fma32(one, b1, a1[xo])
                    a2[xo] = _fma32(one, b2, a2[xo])
                    a3[xo] = _fma32(one, b3, a3[xo])
            o += m


@jit.njit(cache=True, nogil=True, boundscheck=False)
def _conv2d_pixels(
    x: np.ndarray, w_k: np.ndarray, kh: int, kw: int, o_start: int, o_end: int, out: np.ndarray
) -> None:
    """Output maps ``o_start:o_end`` of :func:`conv2d`, vectorised along the output maps.

    For small maps with many output maps (RNet's and ONet's deeper layers). ``w_k`` is
    the weight matrix with the maps last, ``(C * kw * kh + 1, K)``. Two pixels and three
    kernel rows at a time share their loads; the same chains as :func:`_conv2d_rows`.
    """
    n, c, h, w = x.shape
    ho = h - kh + 1
    wo = w - kw + 1
    ck = c * kw * kh
    k_out = o_end - o_start
    one = _F32(1.0)
    acc0 = np.empty(k_out, dtype=np.float32)
    acc1 = np.empty(k_out, dtype=np.float32)
    for b in range(n):
        for y in range(ho):
            xo = 0
            while xo < wo:
                pair = xo + 1 < wo
                x1 = xo + 1 if pair else xo  # a lone last pixel is computed twice
                for j in range(k_out):
                    acc0[j] = _F32(0.0)
                    acc1[j] = _F32(0.0)
                for ch in range(c):
                    for xx in range(kw):
                        base = ch * kw * kh + xx * kh
                        yy = 0
                        while yy + 3 <= kh:
                            k = base + yy
                            r0 = x[b, ch, y + yy]
                            r1 = x[b, ch, y + yy + 1]
                            r2 = x[b, ch, y + yy + 2]
                            s0, s1, s2 = r0[xo + xx], r1[xo + xx], r2[xo + xx]
                            t0, t1, t2 = r0[x1 + xx], r1[x1 + xx], r2[x1 + xx]
                            g0 = w_k[k, o_start:o_end]
                            g1 = w_k[k + 1, o_start:o_end]
                            g2 = w_k[k + 2, o_start:o_end]
                            for j in range(k_out):
                                acc0[j] = _fma32(s2, g2[j], _fma32(s1, g1[j], _fma32(s0, g0[j], acc0[j])))
                                acc1[j] = _fma32(t2, g2[j], _fma32(t1, g1[j], _fma32(t0, g0[j], acc1[j])))
                            yy += 3
                        while yy < kh:
                            k = base + yy
                            r0 = x[b, ch, y + yy]
                            s0, t0 = r0[xo + xx], r0[x1 + xx]
                            g0 = w_k[k, o_start:o_end]
                            for j in range(k_out):
                                acc0[j] = _fma32(s0, g0[j], acc0[j])
                                acc1[j] = _fma32(t0, g0[j], acc1[j])
                            yy += 1
                bias = w_k[ck, o_start:o_end]
                for j in range(k_out):
                    out[b, o_start + j, y, xo] = _fma32(one, bias[j], acc0[j])
                    out[b, o_start + j, y, x1] = _fma32(one, bias[j], acc1[j])
                xo += 2


@jit.njit(cache=True, nogil=True, boundscheck=False)
def _max_pool_kernel(
    x: np.ndarray, kx: int, ky: int, sx: int, sy: int, out: np.ndarray
) -> None:
    """``max_pooling`` of every map (``out`` is (N, C, out_y, out_x), filled)."""
    n, c, h, w = x.shape
    out_y, out_x = out.shape[2], out.shape[3]
    for b in range(n):
        for ch in range(c):
            m = x[b, ch]
            o = out[b, ch]
            for oy in range(out_y):
                y0 = oy * sy
                y1 = min(h, y0 + ky)
                for ox in range(out_x):
                    x0 = ox * sx
                    x1 = min(w, x0 + kx)
                    best = _F32(-_FLT_MAX)
                    for xi in range(x0, x1):
                        for yi in range(y0, y1):
                            v = m[yi, xi]
                            if v > best:
                                best = v
                    o[oy, ox] = best


@jit.njit(cache=True, nogil=True, boundscheck=False)
def _fc_kernel(w: np.ndarray, v: np.ndarray, bias: np.ndarray, out: np.ndarray) -> None:
    """``out[o, j] = float32(sum_i w[o, i] * v[i, j] in double) + bias[o]`` (float32)."""
    n_out, n_in = w.shape
    cols = v.shape[1]
    acc = np.empty(cols, dtype=np.float64)
    for o in range(n_out):
        for j in range(cols):
            acc[j] = 0.0
        for i in range(n_in):
            wv = np.float64(w[o, i])
            row = v[i]
            for j in range(cols):
                acc[j] += wv * np.float64(row[j])
        b = bias[o]
        for j in range(cols):
            out[o, j] = _F32(acc[j]) + b


# --------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------
def conv_weight_matrix(kernels: np.ndarray, biases: np.ndarray) -> np.ndarray:
    """A convolution layer's weights in the layout :func:`conv2d` takes.

    Parameters
    ----------
    kernels : (K, C, kh, kw) float32; ``kernels[k, c]`` is the kernel of output map ``k``
        on input map ``c`` (row ``yy``, column ``xx``).
    biases : (K,) float32.

    Returns
    -------
    (K, C * kw * kh + 1) float32: row ``k`` holds ``kernels[k, c, yy, xx]`` at column
    ``c * kw * kh + xx * kh + yy`` (OpenFace's weight matrix, ``CNN::Read``, transposed),
    then the bias.
    """
    k, c, kh, kw = kernels.shape
    w = np.asarray(kernels, dtype=_F32).transpose(0, 1, 3, 2).reshape(k, c * kw * kh)
    return np.ascontiguousarray(np.hstack([w, np.asarray(biases, _F32).reshape(k, 1)]))


def conv2d(
    x: np.ndarray,
    weights: np.ndarray,
    kh: int,
    kw: int,
    executor: Executor | None = None,
    parts: int = 1,
) -> np.ndarray:
    """Valid cross-correlation, stride 1 (OpenFace's ``convolution_direct_blas``).

    Parameters
    ----------
    x : (N, C, H, W) float32 input maps.
    weights : (K, C * kw * kh + 1) float32 from :func:`conv_weight_matrix`.
    kh, kw : kernel rows and columns.
    executor : threads to split the output maps over (None: this thread).
    parts : number of disjoint ranges of output maps given to ``executor``.

    Returns
    -------
    (N, K, H - kh + 1, W - kw + 1) float32; empty spatially when the kernel is larger
    than the input.

    Notes
    -----
    Each output is a float32 fused multiply-add chain in OpenFace's im2col order (see
    the module notes): the same bits whatever the CPU, BLAS or ``parts``.
    """
    x = np.ascontiguousarray(x, dtype=_F32)
    n, c, h, w = x.shape
    k = weights.shape[0]
    if weights.shape[1] != c * kh * kw + 1:
        raise ValueError(
            f"conv2d: weights for {(weights.shape[1] - 1)} inputs, got {c} maps of "
            f"{kh}x{kw} kernels"
        )
    ho, wo = h - kh + 1, w - kw + 1
    if ho <= 0 or wo <= 0:
        return np.zeros((n, k, max(ho, 0), max(wo, 0)), dtype=_F32)
    out = np.empty((n, k, ho, wo), dtype=_F32)
    # Two loop orders for speed, with the same chains (the same bits): along rows for
    # wide maps, along output maps for small maps with many of them.
    if wo >= PIXEL_LOOP_MAX_WIDTH or k < PIXEL_LOOP_MIN_MAPS:
        kernel, w = _conv2d_rows, weights
    else:
        kernel, w = _conv2d_pixels, np.ascontiguousarray(weights.T)
    ranges = split_ranges(k, parts if executor is not None else 1)
    run_all(executor, [(kernel, (x, w, kh, kw, lo, hi, out)) for lo, hi in ranges])
    return out


def pool_output_size(n: int, kernel: int, stride: int) -> int:
    """``(int)round((float)(n - kernel) / (float)stride) + 1`` (``max_pooling``; C's
    ``round`` takes halves away from zero)."""
    v = float(_F32(n - kernel) / _F32(stride))
    return int(math.copysign(math.floor(abs(v) + 0.5), v)) + 1


def max_pool(x: np.ndarray, kernel_x: int, kernel_y: int, stride_x: int, stride_y: int) -> np.ndarray:
    """OpenFace's ``max_pooling``.

    Parameters
    ----------
    x : (N, C, H, W) float32.
    kernel_x, kernel_y : window width and height.
    stride_x, stride_y : steps.

    Returns
    -------
    (N, C, out_y, out_x) float32, ``out = round((n - k) / s) + 1``; windows that reach
    past the map are clipped to it.
    """
    x = np.ascontiguousarray(x, dtype=_F32)
    n, c, h, w = x.shape
    out_x = pool_output_size(w, kernel_x, stride_x)
    out_y = pool_output_size(h, kernel_y, stride_y)
    out = np.zeros((n, c, max(out_y, 0), max(out_x, 0)), dtype=_F32)
    if out_x > 0 and out_y > 0:
        _max_pool_kernel(x, kernel_x, kernel_y, stride_x, stride_y, out)
    return out


def fully_connected(w: np.ndarray, v: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``w @ v + bias`` as OpenFace's ``fully_connected`` forms it (``cv::Mat`` product).

    Parameters
    ----------
    w : (n_out, n_in) float32 weights.
    v : (n_in, cols) float32: one input per column (a flattened input, or the maps of
        every pixel for a per-pixel layer).
    bias : (n_out,) float32.

    Returns
    -------
    (n_out, cols) float32: each product summed in double in input order, rounded to
    float32, plus the bias in float32.
    """
    w = np.ascontiguousarray(w, dtype=_F32)
    v = np.ascontiguousarray(v, dtype=_F32)
    if v.shape[0] != w.shape[1]:
        raise ValueError(f"fully connected layer expects {w.shape[1]} inputs, got {v.shape[0]}")
    out = np.empty((w.shape[0], v.shape[1]), dtype=_F32)
    _fc_kernel(w, v, np.ascontiguousarray(bias, dtype=_F32).reshape(-1), out)
    return out


@jit.njit(cache=True, nogil=True, boundscheck=False)
def _prelu_kernel(x: np.ndarray, slopes: np.ndarray, out: np.ndarray) -> None:
    """``PReLU`` on (N, C, L) float32: ``v if v >= 0 else v * slopes[c]``."""
    n, c, length = x.shape
    for b in range(n):
        for ch in range(c):
            s = slopes[ch]
            src = x[b, ch]
            dst = out[b, ch]
            for i in range(length):
                v = src[i]
                dst[i] = v if v >= 0 else v * s


def prelu(x: np.ndarray, slopes: np.ndarray) -> np.ndarray:
    """OpenFace's ``PReLU``: ``x if x >= 0 else slope * x``, one slope per map.

    Parameters
    ----------
    x : (N, C, ...) float32: maps ``(N, C, H, W)`` or vectors ``(N, C)``.
    slopes : (C,) float32.

    Returns
    -------
    float32 array shaped like ``x``.
    """
    x = np.ascontiguousarray(x, dtype=_F32)
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    out = np.empty_like(flat)
    _prelu_kernel(flat, np.ascontiguousarray(slopes, dtype=_F32), out)
    return out.reshape(x.shape)


def relu(x: np.ndarray) -> np.ndarray:
    """The validator's ReLU, ``cv::threshold(x, 0, 0, THRESH_TOZERO)``: ``x if x > 0 else 0``."""
    return np.maximum(x, _F32(0))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` in float32 (``CNN::Inference`` / ``CheckCNN`` layer 4)."""
    return (_F32(1) / (_F32(1) + np.exp(-x))).astype(_F32)
