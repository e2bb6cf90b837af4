"""PFLD 68-point landmarks (``pfld.onnx``) from a face box.

Crop, pre-processing and decoding follow ``MODEL_NOTES.md`` section 2 (the PFLD path of
pytorch_face_landmark paired with RetinaFace boxes, ``test_batch_detections.py``), except
that points are mapped back with the unclamped square (MODEL_NOTES 2.2, caution).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..errors import InputError, ModelFileError
from ..validation import require_bgr8
from ..modelstore import ModelsArg, resolve
from ..onnx import check_session_io, open_onnx_session

__all__ = [
    "PFLDLandmarker",
    "crop_square",
    "flush_denormal_weights",
    "INPUT_SIZE",
    "CROP_SCALE",
]

#: Model file of the manifest.
MODEL_FILE = "pfld.onnx"
#: Network input side, pixels (MODEL_NOTES 2.1).
INPUT_SIZE = 112
#: Square side = ``int(CROP_SCALE * min(w, h))`` of the detector box (MODEL_NOTES 2.2,
#: ``test_batch_detections.py``).
CROP_SCALE = 1.2


def crop_square(box: np.ndarray) -> tuple[int, int, int]:
    """The PFLD crop square of a detector box (MODEL_NOTES 2.2 steps 1-4).

    Parameters
    ----------
    box : ``(4,)`` float ``(x1, y1, x2, y2)`` pixels.

    Returns
    -------
    ``(sx, sy, size)``: integer origin (truncated toward zero, as Python ``int``) and
    integer side of the square ``[sx, sx + size) x [sy, sy + size)``.
    """
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    w = x2 - x1 + 1.0
    h = y2 - y1 + 1.0
    size = int(min(w, h) * CROP_SCALE)
    cx = x1 + (w // 2)
    cy = y1 + (h // 2)
    sx = int(cx - (size // 2))
    sy = int(cy - (size // 2))
    return sx, sy, size


# -- minimal protobuf walk over an ONNX ModelProto ------------------------------------
# Field numbers of onnx.proto: ModelProto.graph = 7, GraphProto.initializer = 5,
# TensorProto.data_type = 2 (1 = FLOAT), .float_data = 4 (packed), .raw_data = 9.
_PB_MODEL_GRAPH = 7
_PB_GRAPH_INITIALIZER = 5
_PB_TENSOR_DATA_TYPE = 2
_PB_TENSOR_FLOAT_DATA = 4
_PB_TENSOR_RAW_DATA = 9
_ONNX_FLOAT = 1


def _pb_varint(buf: memoryview, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _pb_fields(buf: memoryview, start: int, end: int):
    """Yield ``(field, wire_type, a, b)``: value and None for varints, else a byte range."""
    i = start
    while i < end:
        key, i = _pb_varint(buf, i)
        field_no, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _pb_varint(buf, i)
            yield field_no, wire, value, None
        elif wire == 1:
            yield field_no, wire, i, i + 8
            i += 8
        elif wire == 5:
            yield field_no, wire, i, i + 4
            i += 4
        elif wire == 2:
            n, i = _pb_varint(buf, i)
            yield field_no, wire, i, i + n
            i += n
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    if i != end:
        raise ValueError("protobuf field runs past its message")


def flush_denormal_weights(data: bytes) -> tuple[bytes, int]:
    """Set the subnormal float32 initializers of an ONNX model to zero, in place.

    ``pfld.onnx`` holds 447,229 subnormal weights (of 741,192); on CPUs that handle
    subnormals in microcode they make onnxruntime's convolutions ~25x slower (measured
    45 ms instead of 1.7 ms per 112x112 call on one thread). Values below 1.2e-38 have no
    effect on the output (identical to float32 precision on the sample crops).

    Parameters
    ----------
    data : the bytes of an ONNX ``ModelProto``.

    Returns
    -------
    (patched bytes of the same length, number of weights set to zero)

    Raises
    ------
    ValueError
        If the bytes are not a well-formed protobuf message.
    """
    buf = bytearray(data)
    view = memoryview(buf)
    tiny = np.finfo(np.float32).tiny
    flushed = 0
    for f, wire, a, b in _pb_fields(view, 0, len(buf)):
        if f != _PB_MODEL_GRAPH or wire != 2:
            continue
        for g, gwire, ga, gb in _pb_fields(view, a, b):
            if g != _PB_GRAPH_INITIALIZER or gwire != 2:
                continue
            dtype, ranges = None, []
            for h, hwire, ha, hb in _pb_fields(view, ga, gb):
                if h == _PB_TENSOR_DATA_TYPE and hwire == 0:
                    dtype = ha
                elif (h == _PB_TENSOR_RAW_DATA or h == _PB_TENSOR_FLOAT_DATA) and hwire == 2:
                    ranges.append((ha, hb))
            if dtype != _ONNX_FLOAT:
                continue
            for ha, hb in ranges:
                if (hb - ha) % 4:
                    continue
                vals = np.frombuffer(view[ha:hb], dtype="<f4")
                bad = (vals != 0) & (np.abs(vals) < tiny)
                n_bad = int(np.count_nonzero(bad))
                if n_bad:
                    vals[bad] = 0.0
                    flushed += n_bad
    del view
    return bytes(buf), flushed


def _crop_padded(image: np.ndarray, sx: int, sy: int, size: int) -> np.ndarray:
    """``image[sy:sy+size, sx:sx+size]`` with zeros outside the image, ``(size, size, 3)``."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = sx, sy, sx + size, sy + size
    if x1 >= 0 and y1 >= 0 and x2 <= w and y2 <= h:
        return image[y1:y2, x1:x2]
    out = np.zeros((size, size, 3), dtype=image.dtype)
    cx1, cy1, cx2, cy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if cx2 > cx1 and cy2 > cy1:
        out[cy1 - y1 : cy2 - y1, cx1 - x1 : cx2 - x1] = image[cy1:cy2, cx1:cx2]
    return out


class PFLDLandmarker:
    """PFLD 68-point landmark network on onnxruntime.

    Parameters
    ----------
    model_path : the ``.onnx`` file; default ``pfld.onnx`` found and checksum-verified
        by :func:`pyfaceau.modelstore.resolve`.
    intra_op_threads : onnxruntime threads inside an operator.
    models : folders searched first for the default model file.

    Notes
    -----
    Input: square crop of ``1.2 x`` the box's shorter side (zero padded outside the
    image), resized to 112 x 112 (bilinear), BGR, values / 255, NCHW float32.
    Output: 68 interleaved (x, y) in [0, 1] of the square; mapped back with the
    unclamped square (MODEL_NOTES 2.2-2.3).
    """

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        *,
        intra_op_threads: int = 1,
        models: ModelsArg = None,
    ) -> None:
        path = Path(model_path) if model_path is not None else resolve(MODEL_FILE, models)
        self.model_path = path
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ModelFileError(
                f"{path}: ONNX model file cannot be read ({exc.strerror}); "
                "pass an existing .onnx file"
            ) from None
        try:
            data, self.flushed_weights = flush_denormal_weights(raw)
        except (ValueError, IndexError):
            raise ModelFileError(
                f"{path}: not an ONNX model (malformed protobuf); replace the file with the "
                "original pfld.onnx"
            ) from None
        self._session = open_onnx_session(path, intra_op_threads, data=data)
        check_session_io(self._session, path, {"input": 4}, {"output": 136})
        shape = self._session.get_inputs()[0].shape
        if any(isinstance(s, int) and s != INPUT_SIZE for s in shape[2:]):
            raise ModelFileError(
                f"{path}: not the expected network (input {shape}, expected "
                f"[N, 3, {INPUT_SIZE}, {INPUT_SIZE}]); use the model file from the pyfaceau "
                "manifest"
            )

    def prepare(
        self, image_bgr: np.ndarray, box: np.ndarray
    ) -> tuple[np.ndarray, tuple[int, int, int]]:
        """The network input for one box.

        Returns
        -------
        input : ``(3, 112, 112)`` float32, BGR / 255.
        square : ``(sx, sy, size)`` of :func:`crop_square`.
        """
        sx, sy, size = crop_square(box)
        if size < 1:
            raise InputError(f"box: too small for a landmark crop ({box})")
        crop = _crop_padded(image_bgr, sx, sy, size)
        resized = cv2.resize(crop, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
        blob = resized.transpose(2, 0, 1).astype(np.float32) * np.float32(1.0 / 255.0)
        return blob, (sx, sy, size)

    def predict(self, image_bgr: np.ndarray, box: np.ndarray) -> np.ndarray:
        """68 landmarks of the face in ``box``.

        Parameters
        ----------
        image_bgr : ``(H, W, 3)`` uint8 BGR.
        box : ``(4,)`` float ``(x1, y1, x2, y2)`` pixels (a RetinaFace box).

        Returns
        -------
        ``(68, 2)`` float64 pixels (x, y).
        """
        return self.predict_batch(image_bgr, np.asarray(box, dtype=np.float64).reshape(1, 4))[0]

    def predict_batch(self, image_bgr: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """68 landmarks for each of several boxes of one image, in one network call.

        Parameters
        ----------
        image_bgr : ``(H, W, 3)`` uint8 BGR.
        boxes : ``(n, 4)`` float ``(x1, y1, x2, y2)`` pixels.

        Returns
        -------
        ``(n, 68, 2)`` float64 pixels.
        """
        require_bgr8(image_bgr)
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if boxes.shape[0] == 0:
            return np.zeros((0, 68, 2), dtype=np.float64)
        if not np.all(np.isfinite(boxes)):
            raise InputError("boxes: expected finite pixel coordinates")
        blobs, squares = [], []
        for b in boxes:
            blob, sq = self.prepare(image_bgr, b)
            blobs.append(blob)
            squares.append(sq)
        out = self._session.run(["output"], {"input": np.stack(blobs)})[0]
        pts = out.astype(np.float64).reshape(-1, 68, 2)
        sq = np.asarray(squares, dtype=np.float64)
        return sq[:, None, :2] + pts * sq[:, None, 2:3]
