"""OpenFace 2.2's MTCNN face detector, reproduced in NumPy.

Everything follows ``FaceDetectorMTCNN.cpp`` (``FaceDetectorMTCNN::DetectFaces``,
``CNN::Inference``) and ``CNN_utils.cpp`` (``convolution_direct_blas``, ``max_pooling``,
``fully_connected``, ``PReLU``) of OpenFace 2.2 (``lib/local/LandmarkDetector/src``):

1. Pyramid: scales ``12 / min_face * 0.709**i`` down to the smallest image side; each level
   is ``cv::resize`` (bilinear) of the float image, normalised ``(x - 127.5) * 0.0078125``,
   its channels fed in R, G, B order (OpenFace splits the BGR image and reverses it). The
   image is not transposed.
2. PNet heat map >= 0.6 gives 12 px boxes (stride 2); NMS 0.5 (IoU) per scale, NMS 0.7 over
   all scales, box regression, squaring ("rectify", truncating to whole pixels).
3. RNet on 24 x 24 crops (zero padded, bilinear) >= 0.7, NMS 0.7, regression, squaring.
4. ONet on 48 x 48 crops >= 0.7, regression with the box grown by one pixel, NMS 0.7 with
   the intersection over the smaller area, then OpenFace's correction that makes the box
   tight around the 68 landmarks: ``x += -0.0075 w``, ``y += 0.2459 h``, ``w *= 1.0323``,
   ``h *= 0.7751``.

Box arithmetic reproduces OpenFace's float32 / int conversions (``cv::Rect_<float>`` to
``cv::Rect`` rounds half to even; ``(int)`` truncates). The networks are evaluated with an
im2col + GEMM convolution in OpenFace's column order (input map, kernel column, kernel row,
then the bias as last column), in float32, on :mod:`pyfaceau.cnn` (one fixed order of
summation: the same outputs on every CPU). The whole detector takes about 20 ms of CPU
per 640 x 480 frame.

Notes
-----
Matches OpenFace: thresholds, pyramid, NMS order and modes, crops, regressions and the final
correction. Deviates: the last float bits of network outputs can differ (OpenFace's BLAS
kernel may sum in another order; OpenCV version), which may flip a proposal exactly at a threshold; boxes that OpenFace
would crash on (no overlap with the image, non-positive size) are dropped. Adds: ONet's five
points (OpenFace computes and ignores them), mapped from ONet's crop to the image.
"""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import Executor
from typing import Sequence

import cv2
import numpy as np

from .. import cnn
from ..parallel import run_all
from ..errors import InputError
from ..validation import require_image
from ..modelstore import ModelsArg, MANIFEST, resolve, verify_file
from ..parsers.mtcnn import (
    CNNData,
    ConvLayer,
    FullyConnectedLayer,
    MaxPoolLayer,
    MTCNNData,
    PReLULayer,
    SigmoidLayer,
    read_mtcnn,
)
from .types import FaceDetections

__all__ = [
    "MTCNNDetector",
    "MTCNNNetwork",
    "load_mtcnn",
    "pick_single_face",
    "MODEL_FILES",
]

log = logging.getLogger(__name__)

#: Manifest paths of OpenFace's MTCNN files (``model/mtcnn_detector/``).
MODEL_FILES = (
    "model/mtcnn_detector/MTCNN_detector.txt",
    "model/mtcnn_detector/PNet.dat",
    "model/mtcnn_detector/RNet.dat",
    "model/mtcnn_detector/ONet.dat",
)

# --- constants of FaceDetectorMTCNN.cpp / FaceDetectorMTCNN.h (OpenFace 2.2) ----------------
#: ``DetectFaces`` default ``min_face``: smallest face searched, pixels.
MIN_FACE_SIZE = 60
#: ``DetectFaces`` defaults ``t1, t2, t3``: PNet, RNet, ONet probability thresholds.
THRESHOLDS = (0.6, 0.7, 0.7)
#: ``pyramid_factor``: size ratio of consecutive pyramid levels.
PYRAMID_FACTOR = 0.709
#: ``face_support``: PNet's receptive field, pixels.
FACE_SUPPORT = 12
#: ``stride`` in ``generate_bounding_boxes``: PNet's output step, pixels.
PNET_STRIDE = 2
#: Input normalisation ``(x - 127.5) * 0.0078125``.
PIXEL_MEAN = 127.5
PIXEL_SCALE = 0.0078125
#: NMS thresholds: per PNet scale (IoU), across scales and after RNet (IoU), after ONet
#: (intersection over the smaller box).
NMS_PNET_SCALE = 0.5
NMS_PNET_ALL = 0.7
NMS_RNET = 0.7
NMS_ONET = 0.7
#: Crop sizes of RNet and ONet, pixels.
RNET_SIZE = 24
ONET_SIZE = 48
#: Final correction of the ONet box "to be tight around facial landmarks":
#: ``x += w * dx``, ``y += h * dy``, ``w *= sw``, ``h *= sh``.
CORRECTION_DX = -0.0075
CORRECTION_DY = 0.2459
CORRECTION_SW = 1.0323
CORRECTION_SH = 0.7751

_F32 = np.float32


# =========================================================================================
# Networks
# =========================================================================================
class MTCNNNetwork:
    """A network of OpenFace's MTCNN format (``CNN::Inference``) on the shared CNN engine
    (:mod:`pyfaceau.cnn`).

    Parameters
    ----------
    data : the parsed network (:func:`pyfaceau.parsers.mtcnn.read_cnn`).

    Notes
    -----
    Activations are ``(N, C, H, W)`` float32 inside (a batch of images, OpenFace's list of
    maps per image). A fully connected layer on ``C`` maps with ``C`` inputs is applied
    per pixel (PNet's last layer), otherwise the maps are flattened in OpenFace's order:
    channel, then column, then row (``fully_connected`` in ``CNN_utils.cpp`` transposes
    each map before flattening). Products sum in one fixed order, so the outputs are the
    same on every CPU (see :mod:`pyfaceau.cnn.layers`).
    """

    def __init__(self, data: CNNData) -> None:
        self.path = data.path
        self._ops: list[tuple] = []
        for layer in data.layers:
            if isinstance(layer, ConvLayer):
                k, c, kh, kw = layer.weights.shape
                self._ops.append(("conv", cnn.conv_weight_matrix(layer.weights, layer.bias), kh, kw))
            elif isinstance(layer, MaxPoolLayer):
                self._ops.append(
                    ("pool", layer.kernel_x, layer.kernel_y, layer.stride_x, layer.stride_y)
                )
            elif isinstance(layer, FullyConnectedLayer):
                self._ops.append(
                    ("fc", np.ascontiguousarray(layer.weights, dtype=_F32),
                     layer.bias.astype(_F32))
                )
            elif isinstance(layer, PReLULayer):
                self._ops.append(("prelu", layer.slopes.astype(_F32)))
            elif isinstance(layer, SigmoidLayer):
                self._ops.append(("sigmoid",))
            else:  # pragma: no cover - the parser only makes the types above
                raise TypeError(f"unknown layer {layer!r}")

    def __call__(
        self, x: np.ndarray, executor: Executor | None = None, parts: int = 1
    ) -> np.ndarray:
        """Run the network.

        Parameters
        ----------
        x : ``(N, H, W, 3)`` float32, normalised R, G, B maps.
        executor, parts : threads sharing each convolution's output maps
            (:func:`pyfaceau.cnn.conv2d`); the outputs do not depend on them.

        Returns
        -------
        ``(N, H', W', K)`` float32 maps if the network stays convolutional (PNet), else
        ``(N, K)`` float32 vectors (RNet, ONet).
        """
        maps = np.ascontiguousarray(np.asarray(x, dtype=_F32).transpose(0, 3, 1, 2))
        out = self.forward_maps(maps, executor, parts)
        return out.transpose(0, 2, 3, 1) if out.ndim == 4 else out

    def forward_maps(
        self, x: np.ndarray, executor: Executor | None = None, parts: int = 1
    ) -> np.ndarray:
        """:meth:`__call__` on ``(N, C, H, W)`` maps; returns ``(N, K, H', W')`` or ``(N, K)``."""
        for op in self._ops:
            kind = op[0]
            if kind == "conv":
                x = cnn.conv2d(x, op[1], op[2], op[3], executor=executor, parts=parts)
            elif kind == "pool":
                x = cnn.max_pool(x, *op[1:])
            elif kind == "prelu":
                x = cnn.prelu(x, op[1])
            elif kind == "fc":
                x = _fully_connected(x, op[1], op[2])
            else:
                x = cnn.sigmoid(x)
        return x


def _fully_connected(x: np.ndarray, w: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """OpenFace's ``fully_connected`` on a batch.

    Parameters
    ----------
    x : ``(N, C, H, W)`` maps or ``(N, D)`` vectors, float32.
    w : ``(out, in)`` float32 weights.
    bias : ``(out,)`` float32.

    Returns
    -------
    ``(N, out, H, W)`` when ``C == in`` (per-pixel layer), else ``(N, out)``.
    """
    n = x.shape[0]
    if x.ndim == 4:
        _, c, h, wd = x.shape
        if c == w.shape[1]:
            return np.stack([cnn.fully_connected(w, x[i].reshape(c, h * wd), bias)
                             for i in range(n)]).reshape(n, -1, h, wd)
        # flatten as OpenFace: map by map, each map transposed (column-major)
        x = x.transpose(0, 1, 3, 2).reshape(n, -1)
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"fully connected layer expects {w.shape[1]} inputs, got {x.shape[1]}")
    # one input per column: every image of the batch in one call, each summed on its own
    return cnn.fully_connected(w, x.T, bias).T.copy()


# =========================================================================================
# Box helpers (OpenFace's float32 / int arithmetic)
# =========================================================================================
def _to_int_rect(boxes: np.ndarray) -> np.ndarray:
    """``cv::Rect_<float>`` -> ``cv::Rect``: each of x, y, w, h rounded half to even."""
    return np.rint(boxes.astype(np.float64)).astype(np.int64)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, minimum: bool) -> np.ndarray:
    """OpenFace's ``non_maximum_supression``.

    Parameters
    ----------
    boxes : ``(n, 4)`` float32 ``(x, y, w, h)`` pixels.
    scores : ``(n,)`` float32.
    threshold : overlap above which the lower scored box is removed.
    minimum : divide the intersection by the smaller area (True) or by the union (False).

    Returns
    -------
    ``(k,)`` int64 indices kept, highest score first (ties: later index first, as the
    ``std::multimap`` OpenFace sorts with).
    """
    n = boxes.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    r = _to_int_rect(boxes)
    x1, y1 = r[:, 0], r[:, 1]
    x2, y2 = r[:, 0] + r[:, 2], r[:, 1] + r[:, 3]
    area = r[:, 2] * r[:, 3]
    order = np.argsort(scores, kind="stable")[::-1]
    alive = np.ones(n, dtype=bool)
    keep: list[int] = []
    thr = _F32(threshold)
    for pos, i in enumerate(order):
        if not alive[i]:
            continue
        keep.append(int(i))
        rest = order[pos + 1 :]
        rest = rest[alive[rest]]
        if rest.size == 0:
            break
        iw = np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest])
        ih = np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest])
        inter = np.where((iw > 0) & (ih > 0), iw * ih, 0)
        denom = np.minimum(area[i], area[rest]) if minimum else area[i] + area[rest] - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            overlap = inter.astype(_F32) / denom.astype(_F32)
        alive[rest[overlap > thr]] = False
    return np.asarray(keep, dtype=np.int64)


def apply_correction(boxes: np.ndarray, corrections: np.ndarray, add1: bool) -> np.ndarray:
    """OpenFace's ``apply_correction``: regression on the rounded box.

    Parameters
    ----------
    boxes : ``(n, 4)`` float32 ``(x, y, w, h)``.
    corrections : ``(n, 4)`` float32 ``(dx1, dy1, dx2, dy2)`` in box sizes.
    add1 : grow the rounded box by one pixel first (ONet stage).

    Returns
    -------
    ``(n, 4)`` float32 ``(x, y, w, h)``.
    """
    r = _to_int_rect(boxes)
    if add1:
        r[:, 2:] += 1
    x, y = r[:, 0].astype(_F32), r[:, 1].astype(_F32)
    w, h = r[:, 2].astype(_F32), r[:, 3].astype(_F32)
    c = corrections.astype(_F32)
    min_x = x + c[:, 0] * w
    min_y = y + c[:, 1] * h
    max_x = (r[:, 0] + r[:, 2]).astype(_F32) + w * c[:, 2]
    max_y = (r[:, 1] + r[:, 3]).astype(_F32) + h * c[:, 3]
    return np.stack([min_x, min_y, max_x - min_x, max_y - min_y], axis=1).astype(_F32)


def rectify(boxes: np.ndarray) -> np.ndarray:
    """OpenFace's ``rectify``: squares on the longer side, truncated to whole pixels."""
    b = boxes.astype(_F32)
    w, h = b[:, 2], b[:, 3]
    side = np.maximum(w, h)
    # ``float new_min_x = x + 0.5 * (width - max_side)``: double sum stored as float, then (int)
    new_x = (b[:, 0].astype(np.float64) + 0.5 * (w - side).astype(np.float64)).astype(_F32)
    new_y = (b[:, 1].astype(np.float64) + 0.5 * (h - side).astype(np.float64)).astype(_F32)
    return np.stack([np.trunc(new_x), np.trunc(new_y), np.trunc(side), np.trunc(side)],
                    axis=1).astype(_F32)


def _crop_batch(image: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Zero padded crops of ``[x - 1, x + w) x [y - 1, y + h)`` resized to ``size``.

    Parameters
    ----------
    image : ``(H, W, 3)`` float32 BGR.
    boxes : ``(n, 4)`` float32 integral ``(x, y, w, h)``.

    Returns
    -------
    crops : ``(m, size, size, 3)`` float32 normalised R, G, B.
    valid : ``(n,)`` bool, the boxes cropped (others overlap no pixel or are empty).
    """
    hi, wi = image.shape[:2]
    crops = []
    valid = np.zeros(boxes.shape[0], dtype=bool)
    for k, (x, y, w, h) in enumerate(boxes.astype(np.int64)):
        if w < 0 or h < 0:
            continue
        tw, th = w + 1, h + 1
        sx_in, sy_in = max(x - 1, 0), max(y - 1, 0)
        ex_in, ey_in = min(x + w, wi), min(y + h, hi)
        if ex_in <= sx_in or ey_in <= sy_in:
            continue
        tmp = np.zeros((th, tw, 3), dtype=_F32)
        ox, oy = sx_in - (x - 1), sy_in - (y - 1)
        tmp[oy : oy + ey_in - sy_in, ox : ox + ex_in - sx_in] = image[sy_in:ey_in, sx_in:ex_in]
        crops.append(cv2.resize(tmp, (size, size)))
        valid[k] = True
    if not crops:
        return np.zeros((0, size, size, 3), dtype=_F32), valid
    batch = np.stack(crops)
    batch = (batch - _F32(PIXEL_MEAN)) * _F32(PIXEL_SCALE)
    return np.ascontiguousarray(batch[..., ::-1]), valid


def _two_class_probability(logits: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(l0 - l1))`` (``DetectFaces``), float32."""
    e = np.exp((logits[..., 0] - logits[..., 1]).astype(_F32))
    return (1.0 / (1.0 + e.astype(np.float64))).astype(_F32)


# =========================================================================================
# Detector
# =========================================================================================
def load_mtcnn(
    models: ModelsArg = None,
) -> MTCNNData:
    """Find (checksum-verified) and read OpenFace's MTCNN files.

    Parameters
    ----------
    models : folders searched first (see :func:`pyfaceau.modelstore.resolve`).

    Returns
    -------
    MTCNNData

    Raises
    ------
    ModelFileError
        If a file is missing, altered or malformed.
    """
    txt = resolve(MODEL_FILES[0], models)
    # the networks are read next to the .txt (as OpenFace does): verify those copies
    for relpath in MODEL_FILES[1:]:
        candidate = txt.parent / relpath.rsplit("/", 1)[1]
        if candidate.is_file():
            verify_file(candidate, MANIFEST[relpath])
        else:
            resolve(relpath, models)  # raises, listing the folders searched
    return read_mtcnn(txt)


class MTCNNDetector:
    """OpenFace 2.2's MTCNN face detector (``FaceDetectorMTCNN::DetectFaces``).

    Parameters
    ----------
    models : folders searched for the model files first (see
        :func:`pyfaceau.modelstore.resolve`); ignored when ``data`` is given.
    min_face_size : smallest face searched, pixels (OpenFace: 60).
    thresholds : PNet, RNet, ONet probability thresholds (OpenFace: 0.6, 0.7, 0.7).
    data : already parsed networks (:func:`load_mtcnn`), to share between detectors.
    executor : threads for one detection (``concurrent.futures.Executor``): the pyramid
        levels of PNet run side by side, and RNet's and ONet's convolutions split their
        output maps. None (the default): the calling thread only. The detections are the
        same bits either way.
    threads : how many threads ``executor`` offers (ignored without one).

    Examples
    --------
    >>> det = MTCNNDetector()
    >>> faces = det.detect(cv2.imread("face.jpg"))
    >>> faces.boxes  # (n, 4) x1, y1, x2, y2 after OpenFace's correction
    """

    def __init__(
        self,
        models: ModelsArg = None,
        *,
        min_face_size: int = MIN_FACE_SIZE,
        thresholds: tuple[float, float, float] = THRESHOLDS,
        data: MTCNNData | None = None,
        executor: Executor | None = None,
        threads: int = 1,
    ) -> None:
        self.executor = executor
        self.threads = max(1, int(threads)) if executor is not None else 1
        if (isinstance(min_face_size, bool) or int(min_face_size) != min_face_size
                or min_face_size < 1):
            raise InputError(
                f"min_face_size must be a positive whole number of pixels, got {min_face_size!r}"
            )
        if len(thresholds) != 3 or not all(0.0 <= float(t) <= 1.0 for t in thresholds):
            raise InputError(
                f"thresholds must be three probabilities in [0, 1], got {thresholds!r}"
            )
        self.min_face_size = int(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.data = data if data is not None else load_mtcnn(models)
        self.pnet = MTCNNNetwork(self.data.pnet)
        self.rnet = MTCNNNetwork(self.data.rnet)
        self.onet = MTCNNNetwork(self.data.onet)

    # -------------------------------------------------------------------------------------
    def _pnet_level(
        self, img: np.ndarray, scale: float, t1: np.float32
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """PNet's proposals at one pyramid level, after the per-level NMS: ``(boxes (k, 4),
        scores (k,), corrections (k, 4))`` float32, or None when there are none."""
        height, width = img.shape[:2]
        h_pyr, w_pyr = int(math.ceil(height * scale)), int(math.ceil(width * scale))
        if h_pyr < 1 or w_pyr < 1:  # cannot happen with the scale formula; no resize to 0
            return None
        level = cv2.resize(img, (w_pyr, h_pyr))
        level = (level - _F32(PIXEL_MEAN)) * _F32(PIXEL_SCALE)
        out = self.pnet(np.ascontiguousarray(level[None, :, :, ::-1]))[0]
        prob = _two_class_probability(out)
        # OpenFace scans columns outer, rows inner
        xs, ys = np.nonzero(prob.T >= t1)
        if xs.size == 0:
            return None
        s32 = _F32(scale)
        min_x = np.trunc((PNET_STRIDE * xs + 1).astype(_F32) / s32)
        max_x = np.trunc((PNET_STRIDE * xs + FACE_SUPPORT).astype(_F32) / s32)
        min_y = np.trunc((PNET_STRIDE * ys + 1).astype(_F32) / s32)
        max_y = np.trunc((PNET_STRIDE * ys + FACE_SUPPORT).astype(_F32) / s32)
        boxes = np.stack([min_x, min_y, max_x - min_x, max_y - min_y], axis=1).astype(_F32)
        scores = prob[ys, xs]
        corr = out[ys, xs, 2:6]
        keep = nms(boxes, scores, NMS_PNET_SCALE, minimum=False)
        return boxes[keep], scores[keep], corr[keep]

    def detect(self, image: np.ndarray, ignore: np.ndarray | None = None) -> FaceDetections:
        """Faces in an image, as OpenFace's MTCNN reports them.

        Parameters
        ----------
        image : ``(H, W, 3)`` uint8 BGR or ``(H, W)`` uint8 grey.
        ignore : ``(k, 4)`` ``(x1, y1, x2, y2)`` boxes of faces the caller already has (a
            new-face scan: the tracked faces). PNet's proposals that lie mostly inside one
            (:data:`IGNORE_INSIDE` of their area) do not go on to RNet and ONet, where
            most of a detection's work is spent on the faces present. A face elsewhere
            keeps its proposals, and NMS joins only proposals that overlap far more than
            one mostly inside an ignored box and one mostly outside it: its box is the one
            it gets without ``ignore``. An ignored face may still be found from its larger
            proposals.

        Returns
        -------
        FaceDetections
            ``boxes`` ``(n, 4)`` float64 ``(x1, y1, x2, y2)`` pixels after OpenFace's
            landmark-fitting correction (not clipped), ``scores`` ``(n,)`` ONet
            probabilities, ``landmarks`` ``(n, 5, 2)`` ONet's five points. In OpenFace's
            output order (ONet NMS order: highest score first).
        """
        rects, scores, points = self.detect_rects(image, ignore)
        boxes = np.column_stack([rects[:, 0], rects[:, 1], rects[:, 0] + rects[:, 2],
                                 rects[:, 1] + rects[:, 3]]) if len(rects) else np.zeros((0, 4))
        return FaceDetections(boxes=boxes, scores=scores.astype(np.float64), landmarks=points)

    def detect_rects(
        self, image: np.ndarray, ignore: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """As :meth:`detect`, with OpenFace's own ``cv::Rect_<float>`` layout.

        Returns
        -------
        rects : ``(n, 4)`` float64 ``(x, y, width, height)`` (float32 values, as OpenFace).
        scores : ``(n,)`` float32.
        landmarks : ``(n, 5, 2)`` float64 pixels.
        """
        img = _validate_image(image)
        height, width = img.shape[:2]
        t1, t2, t3 = (_F32(t) for t in self.thresholds)

        # ---- PNet over the pyramid ----
        min_dim = min(height, width)
        num_scales = int(math.floor(
            math.log(self.min_face_size / min_dim) / math.log(PYRAMID_FACTOR))) + 1
        levels = [
            (FACE_SUPPORT / self.min_face_size) * PYRAMID_FACTOR ** i
            for i in range(max(num_scales, 0))
        ]
        # Pyramid levels are independent: side by side on the executor, kept in order.
        pool = self.executor if self.threads > 1 else None
        found = run_all(pool, [(self._pnet_level, (img, scale, t1)) for scale in levels])
        found = [f for f in found if f is not None]
        all_boxes = [f[0] for f in found]
        all_scores = [f[1] for f in found]
        all_corr = [f[2] for f in found]
        if not all_boxes:
            return _empty_rects()
        boxes = np.concatenate(all_boxes)
        scores = np.concatenate(all_scores)
        corr = np.concatenate(all_corr)
        keep = nms(boxes, scores, NMS_PNET_ALL, minimum=False)
        boxes = rectify(apply_correction(boxes[keep], corr[keep], add1=False))
        log.debug("MTCNN: %d PNet proposals over %d scales", boxes.shape[0], num_scales)
        if ignore is not None and len(ignore) and boxes.shape[0]:
            boxes = boxes[~_mostly_inside(boxes, np.asarray(ignore, dtype=np.float64))]

        # ---- RNet ----
        crops, valid = _crop_batch(img, boxes, RNET_SIZE)
        boxes = boxes[valid]
        if boxes.shape[0] == 0:
            return _empty_rects()
        out = self.rnet(crops, self.executor, self.threads)
        scores = _two_class_probability(out[:, :2])
        sel = scores >= t2
        boxes, scores, corr = boxes[sel], scores[sel], out[sel, 2:6]
        keep = nms(boxes, scores, NMS_RNET, minimum=False)
        boxes = rectify(apply_correction(boxes[keep], corr[keep], add1=False))
        log.debug("MTCNN: %d RNet proposals", boxes.shape[0])

        # ---- ONet ----
        crops, valid = _crop_batch(img, boxes, ONET_SIZE)
        boxes = boxes[valid]
        if boxes.shape[0] == 0:
            return _empty_rects()
        out = self.onet(crops, self.executor, self.threads)
        scores = _two_class_probability(out[:, :2])
        sel = scores >= t3
        onet_in, scores, corr, pts = boxes[sel], scores[sel], out[sel, 2:6], out[sel, 6:16]
        boxes = apply_correction(onet_in, corr, add1=True)
        keep = nms(boxes, scores, NMS_ONET, minimum=True)
        boxes, scores, onet_in, pts = boxes[keep], scores[keep], onet_in[keep], pts[keep]

        # ---- OpenFace's correction towards the 68 landmarks ----
        b = boxes.astype(np.float64)
        x = (b[:, 2] * CORRECTION_DX + b[:, 0]).astype(_F32)
        y = (b[:, 3] * CORRECTION_DY + b[:, 1]).astype(_F32)
        w = (CORRECTION_SW * b[:, 2]).astype(_F32)
        h = (CORRECTION_SH * b[:, 3]).astype(_F32)
        rects = np.stack([x, y, w, h], axis=1).astype(np.float64)
        return rects, scores, _onet_points(onet_in, pts)


#: A PNet proposal lies in an ignored face when this fraction of its area is inside it.
IGNORE_INSIDE = 0.5


def _mostly_inside(rects: np.ndarray, ignore: np.ndarray) -> np.ndarray:
    """``(n,)`` bool: which ``(x, y, w, h)`` proposals have at least :data:`IGNORE_INSIDE`
    of their area inside one of the ``(x1, y1, x2, y2)`` boxes ``ignore``."""
    r = rects.astype(np.float64)
    x1, y1 = r[:, 0:1], r[:, 1:2]
    x2, y2 = x1 + r[:, 2:3], y1 + r[:, 3:4]
    iw = np.clip(np.minimum(x2, ignore[:, 2]) - np.maximum(x1, ignore[:, 0]), 0, None)
    ih = np.clip(np.minimum(y2, ignore[:, 3]) - np.maximum(y1, ignore[:, 1]), 0, None)
    area = np.maximum(r[:, 2:3] * r[:, 3:4], 1e-9)
    return (iw * ih / area >= IGNORE_INSIDE).any(axis=1)


def _onet_points(boxes: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """ONet's five points relative to its input box: ``(n, 5, 2)`` float64 pixels."""
    b = boxes.astype(np.float64)
    p = pts.astype(np.float64)
    size_x = b[:, 2:3] + 1.0
    size_y = b[:, 3:4] + 1.0
    px = b[:, 0:1] - 1.0 + p[:, 0:5] * size_x
    py = b[:, 1:2] - 1.0 + p[:, 5:10] * size_y
    return np.stack([px, py], axis=2)


def _empty_rects() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros((0, 4)), np.zeros(0, dtype=_F32), np.zeros((0, 5, 2))


def _validate_image(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` float32 BGR from a uint8 BGR or grey image."""
    image = require_image(image, "image", channels=(3, 1))
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 1:
        image = cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    return image.astype(_F32)


def pick_single_face(
    detections: FaceDetections, preference: tuple[int, int] | None = None
) -> int:
    """The face OpenFace tracks among several (``DetectSingleFaceMTCNN``).

    Parameters
    ----------
    detections : MTCNN detections (OpenFace's order).
    preference : a pixel ``(x, y)`` (OpenFace's ``cv::Point``); the detection whose box centre
        is closest is chosen. Without it the widest box is chosen
        (:meth:`FaceDetections.widest`, the rule of pyfaceau's trackers).

    Returns
    -------
    Index into ``detections``; the first on ties.

    Raises
    ------
    IndexError
        If there are no detections.
    """
    if len(detections) == 0:
        raise IndexError("pick_single_face: there are no detections")
    if preference is None or preference[0] == -1 or preference[1] == -1:
        return detections.widest()
    b = detections.boxes.astype(_F32)
    w = b[:, 2] - b[:, 0]
    h = b[:, 3] - b[:, 1]
    cx = w / _F32(2) + b[:, 0]
    cy = h / _F32(2) + b[:, 1]
    dist = np.sqrt((_F32(preference[0]) - cx) ** 2 + (_F32(preference[1]) - cy) ** 2)
    return int(np.argmin(dist))
