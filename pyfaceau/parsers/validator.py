"""Reader of OpenFace's landmark detection validator (``validator_cnn.txt``).

Format (``DetectionValidator::Read`` in OpenFace's
``LandmarkDetector/src/LandmarkDetectionValidator.cpp`` and ``PAW::Read`` in
``LandmarkDetector/src/PAW.cpp``), binary, little-endian, matrices as ``ReadMatBin``
(int32 rows, int32 cols, int32 OpenCV type, raw row-major values):

1. int32 validator type; only ``3`` (CNN) is used by OpenFace 2.2 (older types print
   "Using old face validator, no longer supported" there, and are rejected here);
2. int32 number of views ``n``; then ``n`` orientation matrices ``(3, 1)`` float64,
   degrees ``[pitch, yaw, roll]``;
3. per view:

   - the mean and standard deviation of the normalised warped face, ``(1, n_pixels)``
     float64 each (OpenFace converts them to float32);
   - int32 network depth, then per layer an int32 type: ``0`` convolution (int32 input
     maps, int32 kernels, that many float32 biases, then ``inputs x kernels`` float32
     kernel matrices, input-major), ``1`` 2x2 max pooling with stride 2, ``2`` fully
     connected (float32 biases ``(n_out, 1)``, float32 weights ``(n_in, n_out)``),
     ``3`` ReLU, ``4`` sigmoid;
   - the piece-wise affine warp (PAW) to the view's reference shape: int32 number of
     pixels, float64 ``min_x``, float64 ``min_y``, the reference shape ``(2m, 1)`` float64
     (``[x_0..x_{m-1}, y_0..]``), the triangulation ``(t, 3)`` int32, the per-pixel
     triangle index ``(h, w)`` int32 (-1 outside), the pixel mask ``(h, w)`` (any integer
     type, converted to uint8) and the warp coefficients ``alpha``, ``beta`` ``(t, 3)``
     float64 (OpenFace converts them to float32).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import numpy as np

from ..errors import ModelFileError
from ..modelstore.cache import cached_parser
from ._matrix import BinaryReader

__all__ = [
    "LayerType",
    "ConvLayer",
    "FullyConnectedLayer",
    "PAWData",
    "ValidatorView",
    "ValidatorData",
    "read_validator",
]

#: The only validator type OpenFace 2.2 still supports (``DetectionValidator::Read``).
CNN_VALIDATOR_TYPE = 3


class LayerType(IntEnum):
    """CNN layer codes of the validator (``LandmarkDetectionValidator.h``)."""

    CONVOLUTION = 0
    MAX_POOLING = 1
    FULLY_CONNECTED = 2
    RELU = 3
    SIGMOID = 4


@dataclass(frozen=True)
class ConvLayer:
    """A convolutional layer (valid cross-correlation, stride 1, plus bias).

    Attributes
    ----------
    kernels : (n_out, n_in, kh, kw) float32; output map ``k`` is
        ``sum_i correlate(input_i, kernels[k, i]) + biases[k]``.
    biases : (n_out,) float32.
    """

    kernels: np.ndarray
    biases: np.ndarray


@dataclass(frozen=True)
class FullyConnectedLayer:
    """A fully connected layer, ``y = weights @ x + biases``.

    Attributes
    ----------
    weights : (n_out, n_in) float32 (the file's ``(n_in, n_out)`` matrix, transposed
        as OpenFace does when applying it).
    biases : (n_out,) float32.
    """

    weights: np.ndarray
    biases: np.ndarray


#: A layer: a ConvLayer, a FullyConnectedLayer, or a parameterless LayerType.
Layer = ConvLayer | FullyConnectedLayer | LayerType


@dataclass(frozen=True)
class PAWData:
    """The stored piece-wise affine warp of one view (``PAW::Read``).

    Attributes
    ----------
    number_of_pixels : number of pixels inside the mask.
    min_x, min_y : float32 values, reference-frame coordinates of pixel (0, 0).
    destination_landmarks : (m, 2) float32, the reference shape (x, y).
    triangulation : (t, 3) int32 landmark indices.
    triangle_id : (h, w) int32, triangle of each pixel, -1 outside the face.
    pixel_mask : (h, w) uint8, 1 inside the face.
    alpha, beta : (t, 3) float32 barycentric coefficients of the reference triangles.
    """

    number_of_pixels: int
    min_x: float
    min_y: float
    destination_landmarks: np.ndarray
    triangulation: np.ndarray
    triangle_id: np.ndarray
    pixel_mask: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray


@dataclass(frozen=True)
class ValidatorView:
    """One view (head orientation) of the validator.

    Attributes
    ----------
    orientation : (3,) float64, radians ``[pitch, yaw, roll]`` (converted from the file's
        degrees with ``* pi / 180`` as OpenFace does).
    mean : (n_pixels,) float32, mean of the locally normalised warped face.
    std : (n_pixels,) float32, its standard deviation.
    layers : the CNN, in order.
    paw : the warp to this view's reference shape.
    """

    orientation: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    layers: tuple[Layer, ...]
    paw: PAWData


@dataclass(frozen=True)
class ValidatorData:
    """The content of a validator file.

    Attributes
    ----------
    views : one entry per orientation.
    path : the file read.
    """

    views: tuple[ValidatorView, ...]
    path: Path

    @property
    def orientations(self) -> np.ndarray:
        """(n_views, 3) float64, radians."""
        return np.stack([v.orientation for v in self.views])


def _err(path: Path, msg: str) -> ModelFileError:
    return ModelFileError(f"{path}: {msg}")


def _float_mat(r: BinaryReader, what: str, *, exact32: bool) -> np.ndarray:
    """A binary matrix that must be float32 (``exact32``) or float64."""
    m = r.mat()
    want = np.float32 if exact32 else np.float64
    if m.dtype != want:
        raise _err(
            r.path,
            f"{what} must be a {np.dtype(want).name} matrix, found {m.dtype.name}",
        )
    return m


def _read_layers(r: BinaryReader, view: int) -> tuple[Layer, ...]:
    depth = r.int32()
    if depth <= 0 or depth > 1000:
        raise _err(r.path, f"view {view}: bad network depth {depth}")
    layers: list[Layer] = []
    for li in range(depth):
        code = r.int32()
        try:
            kind = LayerType(code)
        except ValueError:
            raise _err(r.path, f"view {view} layer {li}: unknown layer type {code}") from None
        if kind is LayerType.CONVOLUTION:
            n_in, n_k = r.int32(), r.int32()
            if not (0 < n_in <= 4096 and 0 < n_k <= 4096):
                raise _err(r.path, f"view {view} layer {li}: bad map counts {n_in} x {n_k}")
            biases = r.scalars("<f4", n_k).astype(np.float32)
            kernels = []
            for _ in range(n_in * n_k):
                kernels.append(_float_mat(r, f"view {view} layer {li} kernel", exact32=True))
            shape = kernels[0].shape
            if any(k.shape != shape for k in kernels) or min(shape) <= 0:
                raise _err(r.path, f"view {view} layer {li}: kernels differ in size")
            # file order: for each input map, for each kernel
            arr = np.stack(kernels).reshape(n_in, n_k, *shape).transpose(1, 0, 2, 3)
            layers.append(ConvLayer(np.ascontiguousarray(arr), biases))
        elif kind is LayerType.FULLY_CONNECTED:
            b = _float_mat(r, f"view {view} layer {li} biases", exact32=True)
            w = _float_mat(r, f"view {view} layer {li} weights", exact32=True)
            if b.shape[1] != 1 or w.shape[1] != b.shape[0]:
                raise _err(
                    r.path,
                    f"view {view} layer {li}: fully connected weights {w.shape} do not "
                    f"fit biases {b.shape}",
                )
            layers.append(FullyConnectedLayer(np.ascontiguousarray(w.T), b[:, 0].copy()))
        else:
            layers.append(kind)
    return tuple(layers)


def _read_paw(r: BinaryReader, view: int) -> PAWData:
    n_px = r.int32()
    min_x = float(np.float32(r.float64()))
    min_y = float(np.float32(r.float64()))
    dest = _float_mat(r, f"view {view} PAW reference shape", exact32=False)
    tris = r.mat()
    tri_id = r.mat()
    mask = r.mat()
    alpha = _float_mat(r, f"view {view} PAW alpha", exact32=False)
    beta = _float_mat(r, f"view {view} PAW beta", exact32=False)
    where = f"view {view} PAW"
    if dest.shape[1] != 1 or dest.shape[0] % 2 or dest.shape[0] == 0:
        raise _err(r.path, f"{where}: reference shape must be (2m, 1), found {dest.shape}")
    m = dest.shape[0] // 2
    if tris.dtype != np.int32 or tris.ndim != 2 or tris.shape[1] != 3 or tris.shape[0] == 0:
        raise _err(r.path, f"{where}: triangulation must be int32 (t, 3), found {tris.shape}")
    if tris.min() < 0 or tris.max() >= m:
        raise _err(r.path, f"{where}: triangle vertex index out of range [0, {m})")
    if tri_id.dtype != np.int32 or tri_id.shape != mask.shape or mask.size == 0:
        raise _err(r.path, f"{where}: triangle index map and mask differ in shape or type")
    if not np.issubdtype(mask.dtype, np.integer):
        raise _err(r.path, f"{where}: mask must be an integer matrix, found {mask.dtype.name}")
    mask8 = mask.astype(np.uint8)  # cv::Mat::convertTo(CV_8U)
    if int(np.count_nonzero(mask8)) != n_px:
        raise _err(
            r.path,
            f"{where}: mask has {np.count_nonzero(mask8)} pixels, header says {n_px}",
        )
    inside = mask8 != 0
    if (tri_id[inside] < 0).any() or (tri_id[inside] >= tris.shape[0]).any():
        raise _err(r.path, f"{where}: a pixel inside the mask has no valid triangle")
    if alpha.shape != tris.shape or beta.shape != tris.shape:
        raise _err(r.path, f"{where}: alpha/beta must be {tris.shape}")
    return PAWData(
        number_of_pixels=n_px,
        min_x=min_x,
        min_y=min_y,
        destination_landmarks=np.stack([dest[:m, 0], dest[m:, 0]], axis=1).astype(np.float32),
        triangulation=tris.copy(),
        triangle_id=tri_id.copy(),
        pixel_mask=mask8,
        alpha=alpha.astype(np.float32),
        beta=beta.astype(np.float32),
    )


@cached_parser("validator", code=["pyfaceau.parsers._matrix"])
def read_validator(path: str | Path) -> ValidatorData:
    """Read an OpenFace CNN detection validator strictly.

    Parameters
    ----------
    path : path of ``validator_cnn.txt`` (or ``validator_cnn_68.txt``, same format).

    Returns
    -------
    ValidatorData, one ValidatorView per orientation (7 for OpenFace 2.2's files).

    Raises
    ------
    ModelFileError
        If the file cannot be read, ends early, has trailing bytes, is of an old validator
        type (not a CNN), has an unknown layer type or matrices whose sizes or types do
        not fit together.
    """
    r = BinaryReader(path)
    vtype = r.int32()
    if vtype != CNN_VALIDATOR_TYPE:
        raise _err(
            r.path,
            f"validator type {vtype} is not supported (only the CNN validator, type "
            f"{CNN_VALIDATOR_TYPE}, as in OpenFace 2.2); use "
            "model/detection_validation/validator_cnn.txt",
        )
    n_views = r.int32()
    if not 0 < n_views <= 64:
        raise _err(r.path, f"bad number of views {n_views}")
    orientations = []
    for v in range(n_views):
        o = _float_mat(r, f"orientation {v}", exact32=False)
        if o.size != 3:
            raise _err(r.path, f"orientation {v} must have 3 values, found {o.shape}")
        orientations.append(o.ravel() * np.pi / 180.0)
    views = []
    for v in range(n_views):
        mean = _float_mat(r, f"view {v} mean", exact32=False)
        std = _float_mat(r, f"view {v} standard deviation", exact32=False)
        layers = _read_layers(r, v)
        paw = _read_paw(r, v)
        n_px = paw.number_of_pixels
        if mean.size != n_px or std.size != n_px or 1 not in mean.shape or 1 not in std.shape:
            raise _err(
                r.path,
                f"view {v}: mean {mean.shape} / std {std.shape} do not match the "
                f"{n_px} pixels of the warp",
            )
        views.append(
            ValidatorView(
                orientation=orientations[v],
                mean=mean.ravel().astype(np.float32),
                std=std.ravel().astype(np.float32),
                layers=layers,
                paw=paw,
            )
        )
    if not r.at_end():
        raise _err(r.path, f"unexpected data after the last view (byte {r.tell()})")
    return ValidatorData(views=tuple(views), path=r.path)
