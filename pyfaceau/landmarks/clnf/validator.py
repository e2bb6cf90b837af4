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
from concurrent.futures import Executor
from pathlib import Path
from typing import Sequence

import numpy as np

from ... import cnn
from ...errors import InputError, ModelFileError
from ...validation import require_gray
from ...modelstore import ModelsArg, store
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

#: Max pooling window and stride of layer type 1 (``CheckCNN``: ``max_pooling(..., 2, 2, 2, 2)``).
POOL_SIZE = 2

#: Range the arg-max bin is "unquantised" to (``CheckCNN``: ``max = 1``, ``min = -1``).
UNQUANTISE_MIN, UNQUANTISE_MAX = -1.0, 1.0


class _Net:
    """One view's CNN (``CheckCNN``'s layer loop) on the shared CNN engine
    (:mod:`pyfaceau.cnn`)."""

    def __init__(self, layers: Sequence, path: Path) -> None:
        self.ops: list[tuple] = []
        for layer in layers:
            if isinstance(layer, ConvLayer):
                k, c, kh, kw = layer.kernels.shape
                w = cnn.conv_weight_matrix(layer.kernels, layer.biases)
                self.ops.append(("conv", w, kh, kw, c))
            elif isinstance(layer, FullyConnectedLayer):
                self.ops.append(
                    ("fc", np.ascontiguousarray(layer.weights, dtype=np.float32),
                     layer.biases.astype(np.float32).reshape(-1))
                )
            elif layer is LayerType.MAX_POOLING:
                self.ops.append(("pool",))
            elif layer is LayerType.RELU:
                self.ops.append(("relu",))
            elif layer is LayerType.SIGMOID:
                self.ops.append(("sigmoid",))
            else:  # pragma: no cover - the parser only yields the above
                raise ModelFileError(f"{path}: unsupported layer {layer!r}")
        self.path = path

    def forward(self, img: np.ndarray, executor: Executor | None = None, parts: int = 1) -> np.ndarray:
        """Run the network on one (H, W) float32 map; returns the last layer's matrix.

        ``executor`` and ``parts`` split each convolution's output maps over threads
        (:func:`pyfaceau.cnn.conv2d`); the result does not depend on them.
        """
        x = np.ascontiguousarray(img, dtype=np.float32)[None, None]  # (1, maps, rows, cols)
        for op in self.ops:
            kind = op[0]
            if kind == "conv":
                _, w, kh, kw, c = op
                if x.shape[1] != c:
                    raise ModelFileError(
                        f"{self.path}: convolution expects {c} input maps, got {x.shape[1]}"
                    )
                if x.shape[2] < kh or x.shape[3] < kw:
                    raise ModelFileError(f"{self.path}: convolution kernel larger than its input")
                x = cnn.conv2d(x, w, kh, kw, executor=executor, parts=parts)
            elif kind == "pool":
                x = cnn.max_pool(x, POOL_SIZE, POOL_SIZE, POOL_SIZE, POOL_SIZE)
            elif kind == "relu":
                x = cnn.relu(x)
            elif kind == "sigmoid":
                x = cnn.sigmoid(x)
            else:  # fully connected (CNN_utils.cpp: fully_connected)
                _, w, b = op
                maps = x[0]
                n_maps, rows, cols_ = maps.shape
                n_out, n_in = w.shape
                if n_maps > 1 and n_maps == n_in:
                    # maps treated as features of each pixel (a 1x1 convolution)
                    out = cnn.fully_connected(w, maps.reshape(n_maps, rows * cols_), b)
                    x = out.reshape(1, n_out, rows, cols_)
                elif n_maps > 1:
                    # every map transposed, flattened, concatenated
                    v = maps.transpose(0, 2, 1).reshape(-1, 1)
                    if v.shape[0] != n_in:
                        raise ModelFileError(
                            f"{self.path}: fully connected layer expects {n_in} inputs, "
                            f"got {v.shape[0]}"
                        )
                    x = cnn.fully_connected(w, v, b).reshape(1, 1, n_out, 1)
                else:
                    if cols_ != 1 or rows != n_in:
                        raise ModelFileError(
                            f"{self.path}: fully connected layer expects a ({n_in}, 1) "
                            f"input, got ({rows}, {cols_})"
                        )
                    # OpenFace stores the result transposed: a (1, n_out) row
                    x = cnn.fully_connected(w, maps[0, :, :1], b).reshape(1, 1, 1, n_out)
        return x[0, 0]


class DetectionValidator:
    """OpenFace's CNN landmark validator: how face-like the warped landmark region is.

    Parameters
    ----------
    data : the parsed validator file (:func:`pyfaceau.parsers.validator.read_validator`).
    executor : threads that share each convolution's output maps
        (``concurrent.futures.Executor``, e.g. the pipeline's thread pool); None (the
        default) runs on the calling thread. The confidence is the same either way.
    threads : how many parts the output maps are split into for ``executor`` (ignored
        without one).

    Notes
    -----
    Matches ``DetectionValidator::Check`` of OpenFace 2.2's
    ``LandmarkDetectionValidator.cpp`` step by step in float32 (the warp uses OpenCV's
    ``remap`` as OpenFace does). The network runs on :mod:`pyfaceau.cnn`, whose products
    sum in one fixed order (OpenBLAS ``sgemm``'s chain of fused multiply-adds for the
    convolutions): the outputs are the same on every CPU, and differ from OpenFace's
    only where its BLAS kernel sums in another order (last float32 bits); the
    confidence (an arg-max over 30 bins) is the same unless two bins tie to within that
    rounding.
    """

    def __init__(
        self, data: ValidatorData, *, executor: Executor | None = None, threads: int = 1
    ) -> None:
        self.executor = executor
        self.threads = int(threads)
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
    def from_file(
        cls, path: str | os.PathLike, *, executor: Executor | None = None, threads: int = 1
    ) -> "DetectionValidator":
        """Load a validator file (e.g. a copy of ``validator_cnn.txt``); ``executor`` and
        ``threads`` as in the constructor."""
        return cls(read_validator(path), executor=executor, threads=threads)

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
        out = self._nets[view].forward(img_t.T, self.executor, self.threads)
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
    models: ModelsArg = None,
    *,
    executor: Executor | None = None,
    threads: int = 1,
) -> DetectionValidator:
    """OpenFace 2.2's validator (``validator_cnn.txt``) from the model folders.

    Parameters
    ----------
    models : folders searched first (see :func:`pyfaceau.modelstore.store.resolve`).
    executor, threads : see :class:`DetectionValidator`.
    """
    return DetectionValidator.from_file(
        store.resolve(VALIDATOR_RELPATH, models), executor=executor, threads=threads
    )
