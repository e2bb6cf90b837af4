"""RetinaFace (MobileNet-0.25) face detector on onnxruntime.

Pre-processing, prior boxes, decoding, filtering and NMS follow ``MODEL_NOTES.md`` section 1
(the ``Retinaface/`` wrapper of the pytorch_face_landmark project, config ``cfg_mnet``).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..errors import InputError, ModelFileError
from ..validation import require_bgr8
from ..modelstore import ModelsArg, resolve
from ..onnx import check_session_io, open_onnx_session
from .types import FaceDetections

__all__ = [
    "RetinaFaceDetector",
    "make_priors",
    "nms_plus_one",
]

log = logging.getLogger(__name__)

#: Model file of the manifest.
MODEL_FILE = "retinaface_mobilenet025.onnx"

# Constants of the pytorch_face_landmark ``Retinaface/`` code (``data/config.py`` cfg_mnet,
# ``Retinaface.py``), MODEL_NOTES.md 1.2-1.6.
#: Per-channel mean subtracted from the BGR pixel values (B, G, R).
MEAN_BGR = (104.0, 117.0, 123.0)
#: Feature-map strides of the three prior levels.
STEPS = (8, 16, 32)
#: Prior box sizes per level, pixels (smaller first).
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
#: Decoding variances (centre, size).
VARIANCES = (0.1, 0.2)
#: ``confidence_threshold``: priors below this score are dropped before NMS.
CONFIDENCE_THRESHOLD = 0.05
#: ``top_k``: at most this many priors enter NMS.
TOP_K = 5000
#: ``nms_threshold``: IoU above which a lower-scored box is suppressed.
NMS_THRESHOLD = 0.3
#: ``keep_top_k``: at most this many boxes survive NMS.
KEEP_TOP_K = 750
#: ``vis_thres``: boxes above this score are reported as faces.
VIS_THRESHOLD = 0.5
#: Longer image side above which the image is downscaled before detection
#: (MODEL_NOTES.md 1.8: removes false positives seen on large photos).
DEFAULT_MAX_SIDE = 1280


def make_priors(height: int, width: int) -> np.ndarray:
    """RetinaFace prior boxes for an input of ``height x width`` pixels.

    Returns
    -------
    ``(P, 4)`` float64 ``(cx, cy, w, h)`` normalised by the image size, in the order of
    the network's prior axis (level, row, column, min size); MODEL_NOTES.md 1.4.
    """
    out = []
    for step, sizes in zip(STEPS, MIN_SIZES):
        fh, fw = math.ceil(height / step), math.ceil(width / step)
        cy, cx = np.meshgrid(
            (np.arange(fh) + 0.5) * step / height, (np.arange(fw) + 0.5) * step / width,
            indexing="ij",
        )
        level = np.empty((fh, fw, len(sizes), 4), dtype=np.float64)
        level[..., 0] = cx[..., None]
        level[..., 1] = cy[..., None]
        level[..., 2] = np.asarray(sizes, dtype=np.float64) / width
        level[..., 3] = np.asarray(sizes, dtype=np.float64) / height
        out.append(level.reshape(-1, 4))
    return np.concatenate(out, axis=0)


def nms_plus_one(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy NMS with the "+1 pixel" area convention (py-faster-rcnn's ``py_cpu_nms``).

    Parameters
    ----------
    boxes : ``(n, 4)`` float ``(x1, y1, x2, y2)`` pixels.
    scores : ``(n,)`` float.
    threshold : a box is dropped when its IoU with a kept, higher-scored box is
        ``> threshold``.

    Returns
    -------
    ``(k,)`` int64 indices of the kept boxes, best score first.
    """
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1 + 1.0) * (y2 - y1 + 1.0)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size > 0:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1.0)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1.0)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[iou <= threshold]
    return np.asarray(keep, dtype=np.int64)


class RetinaFaceDetector:
    """RetinaFace MobileNet-0.25 (WIDER FACE) on onnxruntime.

    Parameters
    ----------
    model_path : the ``.onnx`` file; default: ``retinaface_mobilenet025.onnx`` found and
        checksum-verified by :func:`pyfaceau.modelstore.resolve`.
    score_threshold : reported faces have a score above this (``vis_thres``, 0.5).
    max_side : if the image's longer side is larger, the image is downscaled to this
        longer side before detection and the results scaled back (MODEL_NOTES.md 1.8);
        None runs every image at full resolution as the original code does.
    intra_op_threads : onnxruntime threads inside an operator (1 or 2, see MODEL_NOTES 3).
    models : folders searched first for the default model file.

    Notes
    -----
    Matches the reference wrapper (``Retinaface/Retinaface.py``): BGR minus
    (104, 117, 123), no resizing (up to ``max_side``), score > 0.05, top 5000, NMS 0.3 with
    the +1 convention, keep 750, report score > 0.5, boxes not clipped. Priors are cached
    per input size. Decoding is done only for the priors above 0.05 (same result).
    """

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        *,
        score_threshold: float = VIS_THRESHOLD,
        max_side: int | None = DEFAULT_MAX_SIDE,
        intra_op_threads: int = 1,
        models: ModelsArg = None,
    ) -> None:
        path = Path(model_path) if model_path is not None else resolve(MODEL_FILE, models)
        if max_side is not None and max_side < 32:
            raise InputError(f"max_side: expected None or >= 32 pixels, got {max_side}")
        if not 0.0 <= score_threshold <= 1.0:
            raise InputError(f"score_threshold: expected a value in [0, 1], got {score_threshold}")
        self.model_path = path
        self.score_threshold = float(score_threshold)
        self.max_side = max_side
        self._session = open_onnx_session(path, intra_op_threads)
        check_session_io(self._session, path, {"input": 4}, {"loc": 4, "conf": 2, "landms": 10})
        self._out_names = ["loc", "conf", "landms"]
        self._priors: dict[tuple[int, int], np.ndarray] = {}
        self._mean = np.asarray(MEAN_BGR, dtype=np.float32)
        log.debug("RetinaFace loaded from %s", path)

    # -- public API ------------------------------------------------------------------
    def detect(self, image_bgr: np.ndarray) -> FaceDetections:
        """Faces in an image.

        Parameters
        ----------
        image_bgr : ``(H, W, 3)`` uint8 BGR image.

        Returns
        -------
        FaceDetections
            boxes ``(n, 4)``, scores ``(n,)``, landmarks ``(n, 5, 2)`` in pixels of
            ``image_bgr``, best score first.
        """
        img = require_bgr8(image_bgr)
        h, w = img.shape[:2]
        if self.max_side is None or max(h, w) <= self.max_side:
            return self._detect_raw(img)
        factor = max(h, w) / float(self.max_side)
        nw, nh = max(1, round(w / factor)), max(1, round(h / factor))
        small = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
        dets = self._detect_raw(small)
        factor_xy = np.array([w / nw, h / nh])
        return FaceDetections(
            dets.boxes * np.tile(factor_xy, 2), dets.scores, dets.landmarks * factor_xy
        )

    def detect_region(
        self, image_bgr: np.ndarray, box: np.ndarray, size: int = 160
    ) -> FaceDetections:
        """Faces inside a square region of an image, detected at a low resolution.

        The region ``box`` (``(x1, y1, x2, y2)`` pixels, may extend past the image, zero
        padded) is resized to ``size x size`` and detected; results are mapped back to
        the image. Used by the fast front end to confirm a tracked face cheaply.

        Returns
        -------
        FaceDetections in pixels of ``image_bgr``.
        """
        img = require_bgr8(image_bgr)
        x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
        if not (x2 > x1 and y2 > y1):
            raise InputError(f"box: expected x2 > x1 and y2 > y1, got {box}")
        sx, sy = size / (x2 - x1), size / (y2 - y1)
        m = np.array([[sx, 0.0, -x1 * sx], [0.0, sy, -y1 * sy]])
        crop = cv2.warpAffine(
            img, m, (size, size), flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT, borderValue=0,
        )
        dets = self._detect_raw(crop)
        scale = np.array([1.0 / sx, 1.0 / sy])
        offset = np.array([x1, y1])
        boxes = dets.boxes * np.tile(scale, 2) + np.tile(offset, 2)
        lm = dets.landmarks * scale + offset
        return FaceDetections(boxes, dets.scores, lm)

    # -- internals -------------------------------------------------------------------
    def priors(self, height: int, width: int) -> np.ndarray:
        """Cached :func:`make_priors` for an input size."""
        key = (int(height), int(width))
        pri = self._priors.get(key)
        if pri is None:
            if len(self._priors) > 16:
                self._priors.clear()
            pri = make_priors(*key)
            self._priors[key] = pri
        return pri

    def _detect_raw(self, img: np.ndarray) -> FaceDetections:
        h, w = img.shape[:2]
        blob = (img.astype(np.float32) - self._mean).transpose(2, 0, 1)[None]
        loc, conf, landms = self._session.run(
            self._out_names, {"input": np.ascontiguousarray(blob)}
        )
        priors = self.priors(h, w)
        if loc.shape[1] != priors.shape[0]:
            raise ModelFileError(
                f"{self.model_path}: network gave {loc.shape[1]} priors for a {w}x{h} input, "
                f"expected {priors.shape[0]}; use the model file from the pyfaceau manifest"
            )
        scores = conf[0, :, 1].astype(np.float64)
        idx = np.flatnonzero(scores > CONFIDENCE_THRESHOLD)
        if idx.size == 0:
            return FaceDetections.empty(with_landmarks=True)
        idx = idx[np.argsort(-scores[idx], kind="stable")][:TOP_K]
        pri = priors[idx]
        d = loc[0, idx].astype(np.float64)
        v0, v1 = VARIANCES
        cxy = pri[:, :2] + d[:, :2] * v0 * pri[:, 2:]
        wh = pri[:, 2:] * np.exp(d[:, 2:] * v1)
        xy1 = cxy - wh / 2.0
        boxes = np.concatenate([xy1, xy1 + wh], axis=1) * np.array([w, h, w, h], dtype=np.float64)
        lmd = landms[0, idx].astype(np.float64).reshape(-1, 5, 2)
        lms = (pri[:, None, :2] + lmd * v0 * pri[:, None, 2:]) * np.array([w, h], dtype=np.float64)
        sc = scores[idx]
        keep = nms_plus_one(boxes, sc, NMS_THRESHOLD)[:KEEP_TOP_K]
        keep = keep[sc[keep] > self.score_threshold]
        return FaceDetections(boxes[keep], sc[keep], lms[keep])
