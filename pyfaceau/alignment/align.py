"""OpenFace's face alignment for AU analysis (``FaceAnalyser/src/Face_utils.cpp``).

FaceAnalyser aligns every frame to a similarity-normalised mean face before extracting
HOG features: the landmarks' 24 rigid points are aligned, with scale, to the PDM's mean
shape times ``sim_scale`` (``AlignShapesWithScale``), the image is warped with
``warpAffine`` (bilinear), and pixels outside the face are zeroed with the mask of a
piece-wise affine warp (``PAW``) over the landmarks, eyebrows raised to include the
forehead (``AlignFaceMask``).

All computations mirror OpenFace's float32 arithmetic so that the mask edge and the warp
matrix reproduce OpenFace's pixels.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .. import jit
from ..errors import InputError
from ..validation import require_image, require_landmarks
from ..pdm.pdm import PDM, ArrayLike
from ..pdm.rotation import align_shapes_with_scale

__all__ = [
    "align_face",
    "alignment_warp_matrix",
    "face_mask",
    "RIGID_POINTS",
    "EYEBROW_POINTS",
    "EYEBROW_RAISE",
    "AU_SIM_SCALE",
    "AU_SIM_SIZE",
]

#: The landmarks that are stable under expression (face outline, nose, eye corners and
#: lower lids), used to estimate the similarity transform (``extract_rigid_points``,
#: Face_utils.cpp).
RIGID_POINTS: tuple[int, ...] = (
    1, 2, 3, 4, 12, 13, 14, 15, 27, 28, 29, 31, 32, 33, 34, 35, 36, 39, 40, 41, 42, 45, 46, 47,
)
#: Landmarks moved up before building the mask "to include more of upper face": the two
#: top jaw points and the eyebrows (``AlignFaceMask``, Face_utils.cpp).
EYEBROW_POINTS: tuple[int, ...] = (0, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26)
#: How far they move, in mean-shape units at ``sim_scale`` 0.7: ``(30 / 0.7) * sim_scale``
#: pixels (Face_utils.cpp).
EYEBROW_RAISE = 30.0 / 0.7
#: FaceAnalyser's AU alignment: scale of the mean shape and output size
#: (``FaceAnalyserParameters``: ``sim_scale_au = 0.7``, ``sim_size_au = 112``).
AU_SIM_SCALE = 0.7
AU_SIM_SIZE = 112

_F32 = np.float32


def _check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    return require_landmarks(landmarks, 68).astype(_F32)


def alignment_warp_matrix(
    landmarks: np.ndarray,
    params_global: ArrayLike,
    pdm: PDM,
    scale: float = AU_SIM_SCALE,
    size: int = AU_SIM_SIZE,
    rigid: bool = True,
) -> np.ndarray:
    """The similarity warp of OpenFace's ``AlignFace`` / ``AlignFaceMask``.

    Parameters
    ----------
    landmarks : (68, 2) pixels.
    params_global : (6,) ``[scale, rx, ry, rz, tx, ty]``; only ``tx, ty`` are used (the
        face centre), as in OpenFace. FaceAnalyser takes them from ``CalcParams`` on the
        landmarks (:func:`pyfaceau.pdm.calc_params`).
    pdm : the PDM whose mean shape is the alignment target.
    scale : ``sim_scale``, mean-shape mm to output pixels.
    size : output width and height, pixels.
    rigid : align only :data:`RIGID_POINTS` (OpenFace's AU alignment) or all 68 points.

    Returns
    -------
    (2, 3) float32 affine matrix from image to aligned-face pixels.
    """
    lm = _check_landmarks(landmarks)
    g = pdm.global_vec(params_global)
    n = pdm.n_points
    # cv::Mat_<float> * double: the product is formed in double and stored as float.
    target = (pdm.mean_shape[: 2 * n, 0].astype(np.float64) * float(scale)).astype(_F32)
    dst = np.stack([target[:n], target[n:]], axis=1)
    src = lm
    if rigid:
        idx = list(RIGID_POINTS)
        src, dst = src[idx], dst[idx]
    a = align_shapes_with_scale(src, dst)
    t = (a @ np.array([g[4], g[5]], dtype=_F32)).astype(_F32)
    half = _F32(size // 2)  # out_width / 2 is an integer division in OpenFace
    warp = np.empty((2, 3), dtype=_F32)
    warp[:, :2] = a
    warp[0, 2] = -t[0] + half
    warp[1, 2] = -t[1] + half
    return warp


def face_mask(
    landmarks: np.ndarray, triangulation: np.ndarray, width: int, height: int
) -> np.ndarray:
    """The pixel mask of OpenFace's ``PAW`` over a triangulated shape.

    A pixel centre ``(x, y)`` (integer coordinates, the PAW's ``min_x = min_y = 0``) is
    inside if it lies in any triangle, edges included, by PAW's float32 same-side tests.

    Parameters
    ----------
    landmarks : (n, 2) float pixels of the shape in the output image.
    triangulation : (t, 3) int vertex indices (``tris_68_full.txt``).
    width, height : mask size; OpenFace builds it with ``max = size - 1`` and
        ``int(max - min + 1.5)`` pixels, i.e. ``size`` pixels.

    Returns
    -------
    (height, width) uint8, 1 inside the face, 0 outside.
    """
    pts = np.ascontiguousarray(landmarks, dtype=_F32)
    tris = np.ascontiguousarray(triangulation, dtype=np.int64)
    # PAW(dest, tri, 0, 0, cols - 1, rows - 1): w = (int)(max_x - min_x + 1.5).
    w = int(_F32(width - 1) - _F32(0) + _F32(1.5))
    h = int(_F32(height - 1) - _F32(0) + _F32(1.5))
    mask = np.zeros((h, w), dtype=np.uint8)
    _face_mask_kernel(pts, tris, mask)
    return mask


@jit.njit(cache=True, nogil=True)
def _same_side(x0, y0, x1, y1, x2, y2, x3, y3) -> bool:  # noqa: ANN001 - float32 scalars
    """PAW's ``sameSide`` in float32: is (x0, y0) on the side of line (2, 3) that 1 is on."""
    x = (x3 - x2) * (y0 - y2) - (x0 - x2) * (y3 - y2)
    y = (x3 - x2) * (y1 - y2) - (x1 - x2) * (y3 - y2)
    return (x * y) >= np.float32(0.0)


@jit.njit(cache=True, nogil=True)
def _face_mask_kernel(pts: np.ndarray, tris: np.ndarray, mask: np.ndarray) -> None:
    """Kernel of :func:`face_mask`: set ``mask`` to 1 inside any triangle (float32 tests).

    PAW's ``findTriangle`` tests each pixel against each triangle whose bounding box holds
    it (float compares). Here each triangle visits only the pixels of its bounding box
    (integer pixel centres are exact in float32, so ``ceil``/``floor`` of the box give the
    same pixels as the compares), and a pixel already inside an earlier triangle is not
    tested again (it can only be set to 1): the same mask, about 8x faster.
    """
    h, w = mask.shape
    for t in range(tris.shape[0]):
        x1 = pts[tris[t, 0], 0]
        y1 = pts[tris[t, 0], 1]
        x2 = pts[tris[t, 1], 0]
        y2 = pts[tris[t, 1], 1]
        x3 = pts[tris[t, 2], 0]
        y3 = pts[tris[t, 2], 1]
        min_x = min(x1, x2, x3)
        max_x = max(x1, x2, x3)
        min_y = min(y1, y2, y3)
        max_y = max(y1, y2, y3)
        if not (min_x <= max_x and min_y <= max_y):
            continue  # a NaN bound: no pixel passes findTriangle's compares
        lo_x = max(min_x, np.float32(0.0))
        hi_x = min(max_x, np.float32(w - 1))
        lo_y = max(min_y, np.float32(0.0))
        hi_y = min(max_y, np.float32(h - 1))
        if lo_x > hi_x or lo_y > hi_y:
            continue
        for row in range(int(math.ceil(lo_y)), int(math.floor(hi_y)) + 1):
            y0 = np.float32(row)
            for col in range(int(math.ceil(lo_x)), int(math.floor(hi_x)) + 1):
                if mask[row, col]:
                    continue
                x0 = np.float32(col)
                if (
                    _same_side(x0, y0, x1, y1, x2, y2, x3, y3)
                    and _same_side(x0, y0, x2, y2, x1, y1, x3, y3)
                    and _same_side(x0, y0, x3, y3, x1, y1, x2, y2)
                ):
                    mask[row, col] = 1


def align_face(
    image_bgr: np.ndarray,
    landmarks: np.ndarray,
    params_global: ArrayLike,
    pdm: PDM,
    triangulation: np.ndarray,
    scale: float = AU_SIM_SCALE,
    size: int = AU_SIM_SIZE,
    rigid: bool = True,
    *,
    mask: bool = True,
) -> np.ndarray:
    """OpenFace's ``AlignFaceMask`` as FaceAnalyser calls it for AUs (or ``AlignFace``).

    Parameters
    ----------
    image_bgr : (H, W, 3) uint8 BGR frame (a (H, W) grey image also works).
    landmarks : (68, 2) float pixels.
    params_global : (6,) ``[scale, rx, ry, rz, tx, ty]`` from ``CalcParams`` on the
        landmarks (only ``tx, ty`` are used).
    pdm : the PDM (``AU_predictors/In-the-wild_aligned_PDM_68.txt``).
    triangulation : (111, 3) int (``tris_68_full.txt``).
    scale : ``sim_scale`` (0.7 for AUs).
    size : output width and height (112 for AUs).
    rigid : align on the rigid points only (True for AUs).
    mask : zero the pixels outside the face (``AlignFaceMask``); False gives
        ``AlignFace``'s unmasked warp.

    Returns
    -------
    (size, size, 3) uint8 aligned face (``(size, size)`` for a grey input).

    Notes
    -----
    Matches OpenFace: ``warpAffine`` with ``INTER_LINEAR`` and a zero constant border;
    the mask uses the landmarks mapped by the same warp, with points 0, 16 and 17-26
    raised by ``(30 / 0.7) * scale`` pixels; the mask multiplies each channel.
    """
    img = require_image(np.asarray(image_bgr), "image_bgr", channels=(3, 1))
    if size <= 0:
        raise InputError(f"size must be positive, got {size}")
    lm = _check_landmarks(landmarks)
    warp = alignment_warp_matrix(lm, params_global, pdm, scale, size, rigid)
    aligned = cv2.warpAffine(img, warp, (size, size), flags=cv2.INTER_LINEAR)
    if not mask:
        return aligned
    # The landmarks in the aligned image (OpenCV gemm: double sums, float result).
    dest = (lm.astype(np.float64) @ warp[:, :2].T.astype(np.float64)).astype(_F32)
    dest[:, 0] = dest[:, 0] + warp[0, 2]
    dest[:, 1] = dest[:, 1] + warp[1, 2]
    raise_px = EYEBROW_RAISE * float(scale)
    for i in EYEBROW_POINTS:
        # float -= double: formed in double, stored as float.
        dest[i, 1] = _F32(float(dest[i, 1]) - raise_px)
    tris = np.asarray(triangulation)
    if tris.ndim != 2 or tris.shape[1] != 3 or tris.min() < 0 or tris.max() >= 68:
        raise InputError(f"triangulation: expected (t, 3) indices into 68 points, got {tris.shape}")
    m = face_mask(dest, tris, size, size)
    if aligned.ndim == 3:
        return aligned * m[:, :, None]
    return aligned * m
