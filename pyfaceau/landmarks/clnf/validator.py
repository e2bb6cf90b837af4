"""OpenFace's landmark detection validator (the ``confidence`` column).

Mirrors ``DetectionValidator::Check``, ``CheckCNN``, ``NormaliseWarpedToVector`` and
``GetViewId`` of OpenFace's ``LandmarkDetector/src/LandmarkDetectionValidator.cpp`` and
the layer functions of ``LandmarkDetector/src/CNN_utils.cpp``:

1. pick the view whose orientation is nearest (Euclidean, radians) to the head rotation;
2. crop the landmarks' bounding box (+3 px) from the grey image, warp it piece-wise
   affinely onto the view's reference shape (:class:`PiecewiseAffineWarp`);
3. take the pixels inside the view's mask in column-major order, normalise them to zero
   mean and unit variance, then by the view's per-pixel mean and standard deviation;
4. put them back into a zero image, run the view's CNN (convolutions, ReLU, 2x2 max
   pooling, fully connected layers); the arg-max of the last layer's ``bins`` outputs,
   "unquantised" to ``[-1, 1]``, becomes ``confidence = 0.5 * (1 - value)``.

The confidence therefore takes one of ``bins`` (30 for ``validator_cnn.txt``) values,
``1 - (2 * idx + 1) / (2 * bins)``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import cv2
import numba as nb
import numpy as np

from ...errors import InputError, ModelFileError
from ...validation import require_gray
from ...modelstore import store
from ...parsers.validator import (
    ConvLayer,
    FullyConnectedLayer,
    LayerType,
    ValidatorData,
    ValidatorView,
    read_validator,
)
from .paw import PiecewiseAffineWarp

__all__ = ["VALIDATOR_RELPATH", "DetectionValidator", "load_detection_validator"]

#: The validator ``main_clnf_general.txt`` names (``DetectionValidator`` line).
VALIDATOR_RELPATH = "model/detection_validation/validator_cnn.txt"

#: Extra pixels around the landmarks' bounding box for bilinear sampling
#: (``DetectionValidator::Check``: ``min_x_f - 3.0f`` ...).
ROI_MARGIN = 3.0

#: Max pooling window and stride of layer type 1 (``CheckCNN``: ``max_pooling(..., 2, 2, 2, 2)``);
#: :func:`_max_pool` is written for this value.
POOL_SIZE = 2

#: Range the arg-max bin is "unquantised" to (``CheckCNN``: ``max = 1``, ``min = -1``).
UNQUANTISE_MIN, UNQUANTISE_MAX = -1.0, 1.0


def _max_pool(x: np.ndarray) -> np.ndarray:
    """2x2, stride-2 max pooling of (C, H, W) maps (``CNN_utils.cpp: max_pooling``).

    The output size is ``round((n - 2) / 2) + 1`` (C ``round``, half away from zero), so
    an odd size gets a last, one-wide window.
    """
    c, h, w = x.shape
    out_h = int(math.floor((h - POOL_SIZE) / POOL_SIZE + 0.5)) + 1
    out_w = int(math.floor((w - POOL_SIZE) / POOL_SIZE + 0.5)) + 1
    ph, pw = out_h * POOL_SIZE, out_w * POOL_SIZE
    if ph != h or pw != w:
        padded = np.full((c, max(ph, h), max(pw, w)), -np.inf, dtype=x.dtype)
        padded[:, :h, :w] = x
        x = padded[:, :ph, :pw]
    # element-wise maxima of the four strided sub-grids (much faster than a reduction)
    top = np.maximum(x[:, 0::2, 0::2], x[:, 0::2, 1::2])
    bottom = np.maximum(x[:, 1::2, 0::2], x[:, 1::2, 1::2])
    return np.maximum(top, bottom)


@nb.njit(cache=True, nogil=True)
def _im2col(x: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """(c, H, W) float32 maps -> (oh*ow, c*kh*kw) patches, row ``oy * ow + ox``, column
    ``(ch * kh + ky) * kw + kx`` (the kernels' order); a plain copy, as a compiled loop
    because the strided NumPy version cost half of the validator's time."""
    c, h, w = x.shape
    oh = h - kh + 1
    ow = w - kw + 1
    out = np.empty((oh * ow, c * kh * kw), dtype=x.dtype)
    for oy in range(oh):
        for ox in range(ow):
            row = out[oy * ow + ox]
            k = 0
            for ch in range(c):
                for ky in range(kh):
                    src = x[ch, oy + ky]
                    for kx in range(kw):
                        row[k] = src[ox + kx]
                        k += 1
    return out


def _gemm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float32 ``a @ b`` with OpenCV's ``gemm``.

    OpenCV's single-threaded product of these small matrices is several times faster
    than NumPy's multi-threaded BLAS when the cores are busy (measured 1 ms vs 7 ms per
    network on a loaded 2-core machine).
    """
    return cv2.gemm(np.ascontiguousarray(a), np.ascontiguousarray(b), 1.0, None, 0.0)


class _Net:
    """One view's CNN with the weights laid out for matrix products."""

    def __init__(self, layers: Sequence, path: Path) -> None:
        self.ops: list[tuple] = []
        for layer in layers:
            if isinstance(layer, ConvLayer):
                k, c, kh, kw = layer.kernels.shape
                w = np.ascontiguousarray(layer.kernels.reshape(k, c * kh * kw).T)
                self.ops.append(("conv", w, layer.biases.astype(np.float32), kh, kw, c))
            elif isinstance(layer, FullyConnectedLayer):
                self.ops.append(("fc", layer.weights, layer.biases.astype(np.float32)))
            elif layer is LayerType.MAX_POOLING:
                self.ops.append(("pool",))
            elif layer is LayerType.RELU:
                self.ops.append(("relu",))
            elif layer is LayerType.SIGMOID:
                self.ops.append(("sigmoid",))
            else:  # pragma: no cover - the parser only yields the above
                raise ModelFileError(f"{path}: unsupported layer {layer!r}")
        self.path = path

    def forward(self, img: np.ndarray) -> np.ndarray:
        """Run the network on one (H, W) float32 map; returns the last layer's matrix."""
        x = img[None].astype(np.float32, copy=False)  # (maps, rows, cols)
        for op in self.ops:
            kind = op[0]
            if kind == "conv":
                _, w, b, kh, kw, c = op
                if x.shape[0] != c:
                    raise ModelFileError(
                        f"{self.path}: convolution expects {c} input maps, got {x.shape[0]}"
                    )
                oh, ow = x.shape[1] - kh + 1, x.shape[2] - kw + 1
                if oh <= 0 or ow <= 0:
                    raise ModelFileError(f"{self.path}: convolution kernel larger than its input")
                cols = _im2col(np.ascontiguousarray(x), kh, kw)
                out = _gemm(cols, w) + b
                x = np.ascontiguousarray(out.T).reshape(-1, oh, ow)
            elif kind == "pool":
                x = _max_pool(x)
            elif kind == "relu":
                x = np.maximum(x, np.float32(0))
            elif kind == "sigmoid":
                x = (np.float32(1) / (np.float32(1) + np.exp(-x))).astype(np.float32)
            else:  # fully connected (CNN_utils.cpp: fully_connected)
                _, w, b = op
                n_maps, rows, cols_ = x.shape
                n_out, n_in = w.shape
                if n_maps > 1 and n_maps == n_in:
                    # maps treated as features of each pixel (a 1x1 convolution)
                    out = _gemm(w, x.reshape(n_maps, rows * cols_)) + b[:, None]
                    x = out.reshape(n_out, rows, cols_)
                elif n_maps > 1:
                    # every map transposed, flattened, concatenated
                    v = x.transpose(0, 2, 1).reshape(-1)
                    if v.size != n_in:
                        raise ModelFileError(
                            f"{self.path}: fully connected layer expects {n_in} inputs, "
                            f"got {v.size}"
                        )
                    x = (_gemm(w, v[:, None])[:, 0] + b)[None, :, None]
                else:
                    if cols_ != 1 or rows != n_in:
                        raise ModelFileError(
                            f"{self.path}: fully connected layer expects a ({n_in}, 1) "
                            f"input, got ({rows}, {cols_})"
                        )
                    # OpenFace stores the result transposed: a (1, n_out) row
                    x = (_gemm(w, x[0, :, :1])[:, 0] + b)[None, None, :]
            x = x.astype(np.float32, copy=False)
        return x[0]


class DetectionValidator:
    """OpenFace's CNN landmark validator: how face-like the warped landmark region is.

    Parameters
    ----------
    data : the parsed validator file (:func:`pyfaceau.parsers.validator.read_validator`).

    Notes
    -----
    Matches ``DetectionValidator::Check`` of OpenFace 2.2's
    ``LandmarkDetectionValidator.cpp`` step by step in float32 (the warp uses OpenCV's
    ``remap`` as OpenFace does). Deviation: matrix products sum in a different order
    than OpenFace's BLAS ``sgemm``, which changes the network outputs by float32
    rounding only; the confidence (an arg-max over 30 bins) is the same unless two bins
    tie to within that rounding. Matrix products use OpenCV's ``gemm`` (see
    :func:`_gemm`).
    """

    def __init__(self, data: ValidatorData) -> None:
        self.path = data.path
        self.views: tuple[ValidatorView, ...] = data.views
        self.orientations = data.orientations  # (n_views, 3) radians
        self._paws = [PiecewiseAffineWarp(v.paw) for v in data.views]
        self._nets = [_Net(v.layers, data.path) for v in data.views]
        # column-major order of the mask pixels (NormaliseWarpedToVector)
        self._mask_t = [p.pixel_mask.T != 0 for p in self._paws]
        self._mean = [v.mean for v in data.views]
        self._std = [v.std for v in data.views]
        for i, net in enumerate(self._nets):  # a dry run checks that the layers fit
            out = net.forward(np.zeros(self._paws[i].shape, np.float32))
            if out.ndim != 2 or out.size == 0:
                raise ModelFileError(f"{self.path}: view {i}: network output is empty")

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "DetectionValidator":
        """Load a validator file (e.g. a copy of ``validator_cnn.txt``)."""
        return cls(read_validator(path))

    # ------------------------------------------------------------------------------
    def view_id(self, orientation: np.ndarray) -> int:
        """Index of the view nearest to ``orientation`` (``GetViewId``).

        Parameters
        ----------
        orientation : (3,) rotation ``[rx, ry, rz]`` in radians (``params_global[1:4]``).
        """
        o = np.asarray(orientation, dtype=np.float64)
        d = np.sqrt(((self.orientations - o) ** 2).sum(axis=1))
        return int(np.argmin(d))  # first of equal distances, as OpenFace's strict '<'

    def warp(self, gray: np.ndarray, landmarks: np.ndarray, view: int) -> np.ndarray | None:
        """The face warped onto view ``view``'s reference shape, as ``Check`` does.

        Parameters
        ----------
        gray : (H, W) uint8 grey image.
        landmarks : (68, 2) landmarks in pixels.
        view : view index.

        Returns
        -------
        (h, w) float32 warped image, or None when the landmarks' box (+3 px) has no area
        inside the image (OpenFace then returns confidence 0).
        """
        lm = np.asarray(landmarks, dtype=np.float32)
        min_xf, max_xf = lm[:, 0].min(), lm[:, 0].max()
        min_yf, max_yf = lm[:, 1].min(), lm[:, 1].max()
        m = np.float32(ROI_MARGIN)
        # C's (int) cast truncates toward zero
        min_x, max_x = int(float(min_xf - m)), int(float(max_xf + m))
        min_y, max_y = int(float(min_yf - m)), int(float(max_yf + m))
        min_x, min_y = max(min_x, 0), max(min_y, 0)
        max_x = min(max_x, gray.shape[1] - 1)
        max_y = min(max_y, gray.shape[0] - 1)
        if max_x - min_x <= 1 or max_y - min_y <= 1:
            return None
        local = gray[min_y:max_y, min_x:max_x].astype(np.float32)
        shifted = lm - np.array([min_x, min_y], dtype=np.float32)
        return self._paws[view].warp(local, shifted)

    def score_warped(self, warped: np.ndarray, view: int) -> float:
        """Confidence of an already warped face (``CheckCNN`` and the final mapping).

        Parameters
        ----------
        warped : (h, w) float32, output of :meth:`warp` for the same view.
        view : view index.

        Returns
        -------
        confidence in (0, 1).
        """
        mask_t = self._mask_t[view]
        vec = np.asarray(warped, dtype=np.float32).T[mask_t]
        # cv::meanStdDev (double sums, population standard deviation)
        v64 = vec.astype(np.float64)
        mean = v64.mean()
        std = math.sqrt(max((v64 * v64).mean() - mean * mean, 0.0))
        if std == 0:
            std = 1.0
        # vec -= mean; vec /= std  (OpenCV: convertTo with float scale and shift)
        vec = vec + np.float32(-mean)
        vec = vec * np.float32(1.0 / std)
        feat = (vec - self._mean[view]) / self._std[view]
        img_t = np.zeros(mask_t.shape, dtype=np.float32)
        img_t[mask_t] = feat
        out = self._nets[view].forward(img_t.T)
        # cv::minMaxLoc(outputs[0].t()) -> max_loc.y, bins = outputs[0].cols
        rows, bins = out.shape
        flat = int(np.argmax(out.T.ravel()))
        max_idx = flat // rows
        step = (UNQUANTISE_MAX - UNQUANTISE_MIN) / bins
        unquantized = UNQUANTISE_MIN + step / 2.0 + max_idx * step
        return float(np.float32(0.5 * (1.0 - unquantized)))

    def check(self, gray: np.ndarray, landmarks: np.ndarray, orientation: np.ndarray) -> float:
        """OpenFace's detection certainty for ``landmarks`` in ``gray``.

        Parameters
        ----------
        gray : (H, W) uint8 grey image (OpenFace's ``grayscale_image``).
        landmarks : (68, 2) float landmarks, pixels (x, y).
        orientation : (3,) head rotation ``[rx, ry, rz]``, radians
            (``params_global[1:4]`` of the fit that produced ``landmarks``).

        Returns
        -------
        confidence in [0, 1]; 0 if the landmarks lie outside the image. OpenFace counts a
        detection as successful when it exceeds ``VALIDATION_BOUNDARY`` (0.725).

        Raises
        ------
        InputError
            If an argument has the wrong shape or type.
        """
        g = require_gray(np.asarray(gray))
        n = self._paws[0].n_landmarks
        lm = np.asarray(landmarks)
        if lm.shape != (n, 2):  # NaN is allowed: the answer is 0 below
            raise InputError(f"landmarks must be ({n}, 2), found {lm.shape}")
        o = np.asarray(orientation, dtype=np.float64)
        if o.shape != (3,):
            raise InputError(f"orientation must be (3,) radians [rx, ry, rz], found {o.shape}")
        if not np.isfinite(lm).all():
            return 0.0
        view = self.view_id(o)
        warped = self.warp(g, lm, view)
        if warped is None:
            return 0.0
        return self.score_warped(warped, view)


def load_detection_validator(
    models: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
) -> DetectionValidator:
    """OpenFace 2.2's validator (``validator_cnn.txt``) from the model folders.

    Parameters
    ----------
    models : folders searched first (see :func:`pyfaceau.modelstore.store.resolve`).
    """
    return DetectionValidator.from_file(store.resolve(VALIDATOR_RELPATH, models))
