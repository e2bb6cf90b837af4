"""Reader of OpenFace's MTCNN face detector files.

Formats (OpenFace ``LandmarkDetector/src/FaceDetectorMTCNN.cpp``):

``MTCNN_detector.txt`` (``FaceDetectorMTCNN::Read``)
    one ``module file`` pair per line, ``module`` one of ``PNet``, ``RNet``, ``ONet``;
    ``file`` is relative to the folder of the ``.txt``.

``PNet.dat`` / ``RNet.dat`` / ``ONet.dat`` (``CNN::Read``), little-endian binary:
    ``int32 depth``, then ``depth`` layers, each ``int32 type`` followed by

    - ``0`` convolution: ``int32 num_in``, ``int32 num_kernels``,
      ``float32 bias[num_kernels]``, then ``num_in * num_kernels`` binary matrices
      (``ReadMatBin``: int32 rows, int32 cols, int32 OpenCV type, values), input map
      outer, kernel inner; each ``(kh, kw)`` CV_32F. OpenFace applies them as a plain
      "valid" cross-correlation (no flip), ``out[k] = sum_c in[c] * K[c][k] + b[k]``.
    - ``1`` max pooling: ``int32 kernel_x, kernel_y, stride_x, stride_y``.
    - ``2`` fully connected: a ``(out, 1)`` bias matrix then a ``(in, out)`` weight
      matrix (OpenFace transposes it to ``(out, in)`` on reading).
    - ``3`` PReLU: a ``(n, 1)`` matrix of negative slopes, one per channel.
    - ``4`` sigmoid: no data.

This reader is strict: an unknown layer type or module, a matrix that is not CV_32F, shapes
that do not fit together, a short read or trailing bytes raise
:class:`pyfaceau.errors.ModelFileError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

from ..errors import ModelFileError
from ..modelstore.cache import cached_parser
from ._matrix import BinaryReader

__all__ = [
    "ConvLayer",
    "MaxPoolLayer",
    "FullyConnectedLayer",
    "PReLULayer",
    "SigmoidLayer",
    "CNNLayer",
    "CNNData",
    "MTCNNData",
    "read_cnn",
    "read_mtcnn",
    "MTCNN_MODULES",
]

#: Layer type codes of ``CNN::Read`` (``FaceDetectorMTCNN.cpp``; header ``FaceDetectorMTCNN.h``).
LAYER_CONV, LAYER_MAX_POOL, LAYER_FULLY_CONNECTED, LAYER_PRELU, LAYER_SIGMOID = 0, 1, 2, 3, 4
#: The modules ``FaceDetectorMTCNN::Read`` knows, in pipeline order.
MTCNN_MODULES = ("PNet", "RNet", "ONet")
#: OpenCV type code of one-channel float32 (the only matrix type in these files).
_CV_32F = 5
#: Upper bound on the layer count and sizes, to fail fast on a garbage header.
_MAX_LAYERS = 1000
_MAX_DIM = 1 << 16


@dataclass(frozen=True)
class ConvLayer:
    """Convolution (cross-correlation, stride 1, no padding).

    Attributes
    ----------
    weights : ``(num_kernels, num_in, kh, kw)`` float32; ``weights[k, c]`` is OpenFace's
        ``cnn_convolutional_layers[layer][k][c]``.
    bias : ``(num_kernels,)`` float32.
    """

    weights: np.ndarray
    bias: np.ndarray

    @property
    def num_in(self) -> int:
        return int(self.weights.shape[1])

    @property
    def num_out(self) -> int:
        return int(self.weights.shape[0])


@dataclass(frozen=True)
class MaxPoolLayer:
    """Max pooling with OpenFace's output size ``round((n - kernel) / stride) + 1``.

    Attributes
    ----------
    kernel_x, kernel_y : window size along columns / rows, pixels.
    stride_x, stride_y : step along columns / rows, pixels.
    """

    kernel_x: int
    kernel_y: int
    stride_x: int
    stride_y: int


@dataclass(frozen=True)
class FullyConnectedLayer:
    """Fully connected layer ``y = weights @ x + bias``.

    Attributes
    ----------
    weights : ``(out, in)`` float32 (already transposed as OpenFace does on reading).
    bias : ``(out,)`` float32.
    """

    weights: np.ndarray
    bias: np.ndarray


@dataclass(frozen=True)
class PReLULayer:
    """Parametric ReLU: ``x if x >= 0 else slope[c] * x``.

    Attributes
    ----------
    slopes : ``(channels,)`` float32.
    """

    slopes: np.ndarray


@dataclass(frozen=True)
class SigmoidLayer:
    """Element-wise logistic function (type 4; not used by OpenFace 2.2's MTCNN files)."""


CNNLayer = Union[ConvLayer, MaxPoolLayer, FullyConnectedLayer, PReLULayer, SigmoidLayer]


@dataclass(frozen=True)
class CNNData:
    """One network file.

    Attributes
    ----------
    layers : the layers in file order.
    path : the file read.
    """

    layers: tuple[CNNLayer, ...]
    path: Path


@dataclass(frozen=True)
class MTCNNData:
    """The three MTCNN networks.

    Attributes
    ----------
    pnet, rnet, onet : the proposal, refinement and output networks.
    path : the ``MTCNN_detector.txt`` read.
    """

    pnet: CNNData
    rnet: CNNData
    onet: CNNData
    path: Path


def _f32_mat(reader: BinaryReader, what: str) -> np.ndarray:
    start = reader.tell()
    rows, cols, cv_type = (int(v) for v in np.frombuffer(reader.bytes(12), dtype="<i4"))
    if cv_type != _CV_32F or not (0 < rows <= _MAX_DIM and 0 < cols <= _MAX_DIM):
        raise ModelFileError(
            f"{reader.path}: {what} at byte {start}: expected a float32 (type 5) matrix, "
            f"found {rows} x {cols} of type {cv_type}"
        )
    return reader.scalars("<f4", rows * cols).reshape(rows, cols)


def _positive(reader: BinaryReader, what: str) -> int:
    value = reader.int32()
    if not 0 < value <= _MAX_DIM:
        raise ModelFileError(f"{reader.path}: {what} must be positive, found {value}")
    return value


@cached_parser("mtcnn_cnn", code=["pyfaceau.parsers._matrix"])
def read_cnn(path: str | Path, data: bytes | None = None) -> CNNData:
    """Read one of OpenFace's MTCNN network files (``PNet.dat`` ...) strictly.

    Parameters
    ----------
    path : the ``.dat`` file (used for error messages when ``data`` is given).
    data : the file's bytes, if already read.

    Returns
    -------
    CNNData with float32 arrays.

    Raises
    ------
    ModelFileError
        If the file cannot be read, is truncated, has trailing bytes, an unknown layer type,
        a non-float32 matrix or layer shapes that do not fit together.
    """
    reader = BinaryReader(path, data)
    depth = reader.int32()
    if not 0 < depth <= _MAX_LAYERS:
        raise ModelFileError(f"{reader.path}: bad layer count {depth} (not an MTCNN .dat file?)")
    layers: list[CNNLayer] = []
    for index in range(depth):
        layer_type = reader.int32()
        where = f"layer {index}"
        if layer_type == LAYER_CONV:
            num_in = _positive(reader, f"{where}: number of input maps")
            num_out = _positive(reader, f"{where}: number of kernels")
            bias = reader.scalars("<f4", num_out)
            kernels = [[_f32_mat(reader, f"{where} kernel") for _ in range(num_out)]
                       for _ in range(num_in)]
            shapes = {k.shape for row in kernels for k in row}
            if len(shapes) != 1:
                raise ModelFileError(
                    f"{reader.path}: {where}: convolution kernels differ in size {sorted(shapes)}"
                )
            # file order: input map outer, kernel inner -> (num_out, num_in, kh, kw)
            weights = np.array(kernels, dtype=np.float32).transpose(1, 0, 2, 3)
            weights = np.ascontiguousarray(weights)
            layers.append(ConvLayer(weights=weights, bias=bias))
        elif layer_type == LAYER_MAX_POOL:
            kx, ky, sx, sy = (_positive(reader, f"{where}: pooling size") for _ in range(4))
            layers.append(MaxPoolLayer(kernel_x=kx, kernel_y=ky, stride_x=sx, stride_y=sy))
        elif layer_type == LAYER_FULLY_CONNECTED:
            bias = _f32_mat(reader, f"{where} bias")
            weights = _f32_mat(reader, f"{where} weights")
            if bias.shape[1] != 1 or weights.shape[1] != bias.shape[0]:
                raise ModelFileError(
                    f"{reader.path}: {where}: fully connected bias {bias.shape} does not fit "
                    f"weights {weights.shape} (expected (out, 1) and (in, out))"
                )
            layers.append(FullyConnectedLayer(weights=np.ascontiguousarray(weights.T),
                                              bias=bias[:, 0].copy()))
        elif layer_type == LAYER_PRELU:
            slopes = _f32_mat(reader, f"{where} PReLU slopes")
            if slopes.shape[1] != 1:
                raise ModelFileError(
                    f"{reader.path}: {where}: PReLU slopes must be (n, 1), found {slopes.shape}"
                )
            layers.append(PReLULayer(slopes=slopes[:, 0].copy()))
        elif layer_type == LAYER_SIGMOID:
            layers.append(SigmoidLayer())
        else:
            raise ModelFileError(
                f"{reader.path}: {where}: unknown layer type {layer_type} "
                "(expected 0 conv, 1 max-pool, 2 fully connected, 3 PReLU, 4 sigmoid)"
            )
    if not reader.at_end():
        raise ModelFileError(
            f"{reader.path}: {reader._size - reader.tell()} unexpected bytes after the last layer"
        )
    _check_channels(reader.path, layers)
    return CNNData(layers=tuple(layers), path=reader.path)


def _check_channels(path: Path, layers: list[CNNLayer]) -> None:
    """Channel counts must chain: conv in = previous out, PReLU size = channels."""
    channels: int | None = 3  # OpenFace feeds 3 colour maps
    for index, layer in enumerate(layers):
        if isinstance(layer, ConvLayer):
            if channels is not None and layer.num_in != channels:
                raise ModelFileError(
                    f"{path}: layer {index}: convolution expects {layer.num_in} input maps "
                    f"but the previous layer gives {channels}"
                )
            channels = layer.num_out
        elif isinstance(layer, FullyConnectedLayer):
            channels = int(layer.weights.shape[0])
        elif isinstance(layer, PReLULayer):
            if channels is not None and layer.slopes.shape[0] != channels:
                raise ModelFileError(
                    f"{path}: layer {index}: PReLU has {layer.slopes.shape[0]} slopes for "
                    f"{channels} channels"
                )


def read_mtcnn(path: str | Path) -> MTCNNData:
    """Read ``MTCNN_detector.txt`` and the three network files it names.

    Parameters
    ----------
    path : the ``MTCNN_detector.txt``; network paths are relative to its folder.

    Returns
    -------
    MTCNNData

    Raises
    ------
    ModelFileError
        If a line is not ``module file``, a module is unknown or given twice or missing,
        or a network file is bad (see :func:`read_cnn`).

    Notes
    -----
    OpenFace ignores unknown module names and silently leaves a missing network empty; this
    reader raises instead.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="latin-1")
    except OSError as exc:
        raise ModelFileError(f"{p}: cannot be read ({exc.strerror})") from exc
    files: dict[str, Path] = {}
    for line_no, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise ModelFileError(f"{p}: line {line_no}: expected 'module file', found {line!r}")
        module, rel = parts
        if module not in MTCNN_MODULES:
            raise ModelFileError(
                f"{p}: line {line_no}: unknown module '{module}' (expected PNet, RNet or ONet)"
            )
        if module in files:
            raise ModelFileError(f"{p}: line {line_no}: module '{module}' given twice")
        files[module] = p.parent / rel
    missing = [m for m in MTCNN_MODULES if m not in files]
    if missing:
        raise ModelFileError(f"{p}: no line for module(s) {', '.join(missing)}")
    nets = {m: read_cnn(files[m]) for m in MTCNN_MODULES}
    return MTCNNData(pnet=nets["PNet"], rnet=nets["RNet"], onet=nets["ONet"], path=p)
