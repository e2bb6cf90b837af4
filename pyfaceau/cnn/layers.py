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

import numba as nb
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from .._parallel import run_all, split_ranges

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
#: OpenFace's ``max_pooling`` starts every window at ``-FLT_MAX``.
_FLT_MAX = float(np.finfo(np.float32).max)


@intrinsic
def _fma32(typingctx, a, b, c):  # pragma: no cover - compiled by numba
    """``a * b + c`` in float32 with one rounding (LLVM's ``llvm.fma.f32``)."""
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
@nb.njit(cache=True, nogil=True, boundscheck=False)
def _conv2d_kernel(
    x: np.ndarray, w_t: np.ndarray, kh: int, kw: int, o_start: int, o_end: int, out: np.ndarray
) -> None:
    """Output maps ``o_start:o_end`` of :func:`conv2d` (disjoint ranges can run in
    parallel: each output element is computed alone, in a fixed order)."""
    n, c, h, w = x.shape
    ho = h - kh + 1
    wo = w - kw + 1
    ck = c * kw * kh
    for b in range(n):
        for o in range(o_start, o_end):
            wrow = w_t[o]
            bias = wrow[ck]
            for y in range(ho):
                acc = out[b, o, y]
                for xo in range(wo):
                    acc[xo] = _F32(0.0)
                # sgemm over im2col_multimap's columns: map, kernel column, kernel row
                for ch in range(c):
                    for xx in range(kw):
                        for yy in range(kh):
                            wv = wrow[ch * kw * kh + xx * kh + yy]
                            src = x[b, ch, y + yy]
                            for xo in range(wo):
                                acc[xo] = _fma32(src[xo + xx], wv, acc[xo])
                # the bias column: 1 * bias, the last term of the chain
                for xo in range(wo):
                    acc[xo] = _fma32(_F32(1.0), bias, acc[xo])


@nb.njit(cache=True, nogil=True, boundscheck=False)
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


@nb.njit(cache=True, nogil=True, boundscheck=False)
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
    if executor is None or parts <= 1 or k < 2:
        _conv2d_kernel(x, weights, kh, kw, 0, k, out)
        return out
    run_all(
        executor, [(_conv2d_kernel, (x, weights, kh, kw, lo, hi, out)) for lo, hi in split_ranges(k, parts)]
    )
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


def prelu(x: np.ndarray, slopes: np.ndarray, axis: int = 1) -> np.ndarray:
    """OpenFace's ``PReLU``: ``x if x >= 0 else slope * x``, one slope per map.

    Parameters
    ----------
    x : float32 maps; ``axis`` indexes the maps (channels).
    slopes : (C,) float32.
    """
    shape = [1] * x.ndim
    shape[axis] = -1
    s = np.asarray(slopes, dtype=_F32).reshape(shape)
    # max(x, 0) + slope * min(x, 0): the per-element branch bit for bit (one of the two
    # terms is zero), and several times faster than np.where.
    neg = np.minimum(x, _F32(0))
    neg *= s
    out = np.maximum(x, _F32(0))
    out += neg
    return out


def relu(x: np.ndarray) -> np.ndarray:
    """The validator's ReLU, ``cv::threshold(x, 0, 0, THRESH_TOZERO)``: ``x if x > 0 else 0``."""
    return np.maximum(x, _F32(0))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` in float32 (``CNN::Inference`` / ``CheckCNN`` layer 4)."""
    return (_F32(1) / (_F32(1) + np.exp(-x))).astype(_F32)
