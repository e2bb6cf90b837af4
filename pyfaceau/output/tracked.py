"""The tracked video (``FeatureExtraction -tracked``): each frame with the face drawn on it.

Drawn as OpenFace 2.2's ``Utilities::Visualizer`` draws it
(``lib/local/Utilities/src/Visualizer.cpp``, ``VisualizationUtils.cpp``), in the same
order: the 68 landmarks (``SetObservationLandmarks``), the head-pose box
(``SetObservationPose`` -> ``DrawBox``), the eye landmarks and gaze lines
(``SetObservationGaze``); each only when the face's confidence is above the visualiser's
boundary 0.4. Sub-pixel positions are drawn with OpenCV's 4 fractional bits, as there.

Deviations: OpenFace also prints its own frame rate ("FPS:..") in the corner, a wall-clock
value that would make the video differ from run to run: not drawn. When several faces are
tracked each is labelled with its ``face_id`` (OpenFace's multi-face program draws no ids).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from .atomic import check_output_path
from .closing import ClosingWriter
from ..errors import InputError
from ..opencv_io import opencv_log_quiet, opencv_path
from .aligned import write_picture
from ..validation import require_bgr8, require_number
from ..pdm.pose import default_intrinsics
from ..pdm.rotation import euler_to_rotation_matrix

__all__ = [
    "TRACKED_PICTURE_SUFFIXES",
    "TRACKED_VIDEO_SUFFIXES",
    "VISUALISATION_BOUNDARY",
    "TrackedFace",
    "TrackedVideoWriter",
    "draw_tracked",
    "head_box_lines",
]

#: Faces with a confidence at or below this are not drawn (``Visualizer.h``,
#: ``visualisation_boundary``).
VISUALISATION_BOUNDARY = 0.4
#: OpenCV's fractional bits for sub-pixel drawing (``Visualizer.cpp``, ``draw_shiftbits``).
DRAW_SHIFT = 4
_DRAW_MULTIPLIER = np.float32(1 << DRAW_SHIFT)
#: Half the side of the head box, mm (``CalculateBox``: "roughly 200mm x 200mm x 200mm").
HEAD_BOX_HALF_SIDE_MM = 100.0
#: Length of a drawn gaze line, mm (``SetObservationGaze``: ``gaze_direction * 50``).
GAZE_LINE_MM = 50.0
#: OpenFace's default codec for the tracked video (``RecorderOpenFaceParameters``: DIVX).
DEFAULT_CODEC = "DIVX"
#: Frame rate OpenFace falls back on when the input has none (``fps_vid_out``).
DEFAULT_FPS = 30.0

# CalculateBox: the cube's 8 corners and 12 edges, in OpenFace's order.
_BOX_CORNERS = np.array(
    [[-1, 1, -1], [1, 1, -1], [1, 1, 1], [-1, 1, 1],
     [1, -1, 1], [1, -1, -1], [-1, -1, -1], [-1, -1, 1]],
    dtype=np.float32,
)
_BOX_EDGES = ((0, 1), (1, 2), (2, 3), (0, 3), (2, 4), (1, 5),
              (0, 6), (3, 7), (6, 5), (5, 4), (4, 7), (7, 6))

# BGR colours (cv::Scalar order).
_LANDMARK_OUTER = (0, 0, 255)
_LANDMARK_INNER = (255, 0, 0)
_LANDMARK_OUTER_OCCLUDED = (0, 0, 155)
_LANDMARK_INNER_OCCLUDED = (155, 0, 0)
_EYE_CONTOUR = (255, 0, 0)
_EYE_IRIS = (0, 0, 255)
_GAZE = (110, 220, 0)
_EYE_POINTS = 28  # points of one eye model


@dataclass
class TrackedFace:
    """What is drawn for one face in one frame.

    Attributes
    ----------
    landmarks : ``(68, 2)`` float pixels (x, y).
    pose : ``(6,)`` ``[Tx, Ty, Tz (mm), Rx, Ry, Rz (rad)]`` (OpenFace's ``pose_*``).
    confidence : OpenFace's ``confidence``; nothing is drawn at or below
        :data:`VISUALISATION_BOUNDARY`.
    face_id : the face's id (drawn when several faces are labelled).
    eye_landmarks : ``(56, 2)`` float pixels, both 28-point eye models (the person's left
        eye first, as the ``eye_lmk_*`` columns), or None.
    eye_landmarks_3d : ``(56, 3)`` float mm, camera space (``eye_lmk_X_*``...), needed
        for the gaze lines' origin (the pupil: the mean of each eye's first 8 points).
    gaze : ``(2, 3)`` unit gaze vectors of the left and right eye (``gaze_0_*``,
        ``gaze_1_*``), or None.
    visibilities : ``(68,)`` bool, landmarks visible in the fitted view (OpenFace draws
        self-occluded ones fainter); None: all visible.
    """

    landmarks: np.ndarray
    pose: np.ndarray
    confidence: float
    face_id: int = 0
    eye_landmarks: np.ndarray | None = None
    eye_landmarks_3d: np.ndarray | None = None
    gaze: np.ndarray | None = None
    visibilities: np.ndarray | None = None


def _project(points: np.ndarray, fx: np.float32, fy: np.float32, cx: np.float32,
             cy: np.float32) -> np.ndarray:
    """``RotationHelpers.h`` ``Project``: pinhole projection in float32, (n, 3) -> (n, 2);
    a point at depth 0 keeps its x, y."""
    p = np.asarray(points, dtype=np.float32)
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    safe = np.where(z != 0, z, np.float32(1))
    px = np.where(z != 0, x * fx / safe + cx, x)
    py = np.where(z != 0, y * fy / safe + cy, y)
    return np.stack([px, py], axis=1).astype(np.float32)


def head_box_lines(
    pose: np.ndarray, intrinsics: tuple[float, float, float, float]
) -> np.ndarray:
    """The 12 projected edges of OpenFace's head box (``CalculateBox``).

    Parameters
    ----------
    pose : ``(6,)`` ``[Tx, Ty, Tz (mm), Rx, Ry, Rz (rad)]``.
    intrinsics : ``(fx, fy, cx, cy)`` pixels.

    Returns
    -------
    ``(12, 2, 2)`` float32: per edge, its two end points (x, y) in pixels.

    Notes
    -----
    Matches OpenFace: a 200 mm cube centred on the head, rotated by
    ``Euler2RotationMatrix(Rx, Ry, Rz)``, moved to ``T``, projected; float32 throughout
    (``cv::Vec6f`` pose).
    """
    p = np.asarray(pose, dtype=np.float32).reshape(6)
    fx, fy, cx, cy = (np.float32(v) for v in intrinsics)
    box = _BOX_CORNERS * np.float32(HEAD_BOX_HALF_SIDE_MM)
    rot = euler_to_rotation_matrix(p[3:6])
    moved = (rot @ box.T).T.astype(np.float32) + p[:3]
    proj = _project(moved, fx, fy, cx, cy)
    return np.stack([proj[[a for a, _ in _BOX_EDGES]], proj[[b for _, b in _BOX_EDGES]]], axis=1)


def _fixed(xy: np.ndarray) -> np.ndarray:
    """Pixel positions to OpenCV's fixed point (``cvRound(v * 16)``, float32 product)."""
    return np.rint(np.asarray(xy, dtype=np.float32) * _DRAW_MULTIPLIER).astype(np.int64)


def _draw_landmarks(canvas: np.ndarray, face: TrackedFace) -> None:
    # Visualizer::SetObservationLandmarks: a red ring with a blue centre per point; sizes
    # scale with the image width (thickness ceil(3 W / 640) and ceil(W / 640)).
    width = canvas.shape[1]
    lm = np.asarray(face.landmarks, dtype=np.float64).reshape(-1, 2)
    pts = _fixed(lm)
    visible = (
        np.ones(len(lm), dtype=bool) if face.visibilities is None
        else np.asarray(face.visibilities, dtype=bool).reshape(-1)
    )
    thick_vis = int(np.ceil(3.0 * width / 640.0))
    thick_occ = int(np.ceil(2.5 * width / 640.0))
    thick_in = int(np.ceil(1.0 * width / 640.0))
    radius = int(_DRAW_MULTIPLIER)
    for (x, y), vis in zip(pts, visible):
        centre = (int(x), int(y))
        outer, inner = (
            (_LANDMARK_OUTER, _LANDMARK_INNER) if vis
            else (_LANDMARK_OUTER_OCCLUDED, _LANDMARK_INNER_OCCLUDED)
        )
        cv2.circle(canvas, centre, radius, outer, thick_vis if vis else thick_occ,
                   cv2.LINE_AA, DRAW_SHIFT)
        cv2.circle(canvas, centre, radius, inner, thick_in, cv2.LINE_AA, DRAW_SHIFT)


def _draw_box(canvas: np.ndarray, face: TrackedFace,
              intrinsics: tuple[float, float, float, float]) -> None:
    # Visualizer::SetObservationPose: colour from red (uncertain) to blue (certain);
    # DrawBox draws an edge only if one of its ends lies inside the image.
    certainty = min(float(face.confidence), 1.0)
    certainty = (certainty - VISUALISATION_BOUNDARY) / (1.0 - VISUALISATION_BOUNDARY)
    colour = (certainty * 255.0, 0.0, (1.0 - certainty) * 255.0)
    h, w = canvas.shape[:2]
    thickness = int(np.ceil(2.0 * w / 640.0))
    for p1, p2 in head_box_lines(face.pose, intrinsics):
        if not (_inside(p1, w, h) or _inside(p2, w, h)):
            continue
        if not np.all(np.isfinite([p1, p2])):
            continue
        # cv::Point2f -> cv::Point: cvRound, no sub-pixel shift here.
        a = tuple(int(v) for v in np.rint(p1))
        b = tuple(int(v) for v in np.rint(p2))
        cv2.line(canvas, a, b, colour, thickness, cv2.LINE_AA)


def _inside(p: np.ndarray, w: int, h: int) -> bool:
    # cv::Point2f::inside(cv::Rect(0, 0, w, h)): x in [0, w), y in [0, h).
    return bool(0 <= p[0] < w and 0 <= p[1] < h)


def _draw_gaze(canvas: np.ndarray, face: TrackedFace,
               intrinsics: tuple[float, float, float, float]) -> None:
    # Visualizer::SetObservationGaze: each 28-point eye model as three closed loops
    # (points 0-7, 8-19, 20-27; 8-19 red, the others blue), then a 50 mm line from each
    # pupil along its gaze vector.
    if face.eye_landmarks is None:
        return
    eyes = np.asarray(face.eye_landmarks, dtype=np.float64).reshape(-1, 2)
    if len(eyes) == 0:
        return
    pts = _fixed(eyes)
    n = len(eyes)
    for i in range(n):
        local = i % _EYE_POINTS
        base = i - local
        nxt = {7: 0, 19: 8, 27: 20}.get(local, local + 1) + base
        nxt = min(nxt, n - 1)
        colour = _EYE_CONTOUR if (local < 8 or local > 19) else _EYE_IRIS
        cv2.line(canvas, (int(pts[i, 0]), int(pts[i, 1])),
                 (int(pts[nxt, 0]), int(pts[nxt, 1])), colour, 1, cv2.LINE_AA, DRAW_SHIFT)
    if face.eye_landmarks_3d is None or face.gaze is None:
        return
    eyes3d = np.asarray(face.eye_landmarks_3d, dtype=np.float32).reshape(-1, 3)
    gaze = np.asarray(face.gaze, dtype=np.float32).reshape(2, 3)
    half = len(eyes3d) // 2
    fx, fy, cx, cy = (np.float32(v) for v in intrinsics)
    for eye in range(2):
        # The pupil: the mean of the eye's first 8 points (the iris ring), summed in float32.
        ring = eyes3d[eye * half: eye * half + 8]
        pupil = np.float32(0) + ring[0]
        for k in range(1, 8):
            pupil = pupil + ring[k]
        pupil = pupil / np.float32(8)
        end = pupil + gaze[eye] * np.float32(GAZE_LINE_MM)
        proj = _project(np.stack([pupil, end]), fx, fy, cx, cy)
        if not np.all(np.isfinite(proj)):
            continue
        a, b = _fixed(proj)
        cv2.line(canvas, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), _GAZE, 2,
                 cv2.LINE_AA, DRAW_SHIFT)


def _draw_label(canvas: np.ndarray, face: TrackedFace) -> None:
    # pyfaceau's own: the face id above the face, white on a dark edge.
    lm = np.asarray(face.landmarks, dtype=np.float64).reshape(-1, 2)
    if not np.all(np.isfinite(lm)) or not lm.any():
        return
    scale = 0.6 * canvas.shape[1] / 640.0
    x = int(np.clip(lm[:, 0].min(), 0, canvas.shape[1] - 1))
    # above the brows by a third of the landmarks' height: about the top of the forehead
    top = lm[:, 1].min() - (lm[:, 1].max() - lm[:, 1].min()) / 3.0
    y = int(np.clip(top, 12 * scale, canvas.shape[0] - 1))
    text = f"face {face.face_id}"
    thickness = max(1, int(round(2 * scale)))
    cv2.putText(canvas, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
                thickness + 2, cv2.LINE_AA)
    cv2.putText(canvas, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                thickness, cv2.LINE_AA)


def draw_tracked(
    image: np.ndarray,
    faces: Sequence[TrackedFace],
    intrinsics: tuple[float, float, float, float] | None = None,
    *,
    label_faces: bool = False,
) -> np.ndarray:
    """One frame of the tracked video: ``image`` with every face drawn as OpenFace does.

    Parameters
    ----------
    image : ``(H, W, 3)`` uint8 BGR frame (not modified).
    faces : the faces of the frame.
    intrinsics : ``(fx, fy, cx, cy)`` pixels; default OpenFace's guess for the image size
        (:func:`pyfaceau.pdm.pose.default_intrinsics`).
    label_faces : write each face's ``face_id`` above it.

    Returns
    -------
    ``(H, W, 3)`` uint8 BGR, a new image.
    """
    canvas = require_bgr8(image, "image").copy()
    if intrinsics is None:
        intrinsics = default_intrinsics(canvas.shape[1], canvas.shape[0])
    for face in faces:
        if not float(face.confidence) > VISUALISATION_BOUNDARY:
            continue
        _draw_landmarks(canvas, face)
        _draw_box(canvas, face, intrinsics)
        _draw_gaze(canvas, face, intrinsics)
        if label_faces:
            _draw_label(canvas, face)
    return canvas


def _letterbox(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` scaled to fit ``size`` ``(width, height)``, centred on black."""
    w, h = size
    scale = min(w / image.shape[1], h / image.shape[0])
    sw, sh = max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))
    out = np.zeros((h, w, 3), np.uint8)
    x, y = (w - sw) // 2, (h - sh) // 2
    out[y:y + sh, x:x + sw] = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
    return out


#: Extensions a tracked video can have (OpenCV's FFmpeg writer with DIVX or mp4v).
TRACKED_VIDEO_SUFFIXES = (".avi", ".mp4", ".m4v", ".mov", ".mkv")
#: Extensions a still's tracked picture can have (colour formats OpenCV writes).
TRACKED_PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


def _codec_for(path: Path) -> str:
    return "mp4v" if path.suffix.lower() in (".mp4", ".m4v", ".mov") else DEFAULT_CODEC


class TrackedVideoWriter(ClosingWriter):
    """Write the tracked video frame by frame.

    Parameters
    ----------
    path : the video file (``.avi``: OpenFace's DIVX codec; ``.mp4``: MPEG-4 ``mp4v``), or
        a picture (``.png``, ``.jpg``, ...: one frame, a still's).
    fps : frame rate of the output (the input's; 30 when unknown (None, NaN) or not
        positive, as OpenFace).
    intrinsics : ``(fx, fy, cx, cy)``; default OpenFace's guess for the frame size.
    codec : a FourCC overriding the choice by extension (OpenFace's ``-oc``).
    label_faces : draw face ids: True always, False never, None (default) from the first
        frame with more than one face on.

    Notes
    -----
    Every frame added is written, whether or not a face was found (as OpenFace); the video
    is opened with the first frame's size, and a frame of another size (an image folder of
    several sizes) is drawn at its own size, then scaled into it on black.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: float = DEFAULT_FPS,
        *,
        intrinsics: tuple[float, float, float, float] | None = None,
        codec: str | None = None,
        label_faces: bool | None = None,
    ) -> None:
        self.path = Path(path)
        unknown = fps is None or (isinstance(fps, float) and math.isnan(fps))
        rate = None if unknown else require_number(fps, "fps")
        self.fps = rate if rate is not None and rate > 0 else DEFAULT_FPS
        self.intrinsics = intrinsics
        self.codec = codec or _codec_for(self.path)
        if len(self.codec) != 4:
            raise InputError(f"codec must be a four-character code, got '{self.codec}'")
        self.label_faces = label_faces
        #: the output is a picture (a still's: ``.png``, ``.jpg``, ...), not a video
        self.picture = self.path.suffix.lower() in TRACKED_PICTURE_SUFFIXES
        self.written = 0
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self._closed = False
        # its folder made and writable now, not at the first frame (one line if not)
        check_output_path(self.path)

    def add(self, image: np.ndarray, faces: Sequence[TrackedFace]) -> np.ndarray:
        """Draw ``faces`` on ``image`` and append the frame; returns the drawn frame.

        Raises
        ------
        InputError
            The writer is closed, or OpenCV cannot open a video writer for the file, the
            codec and the first frame's size.
        """
        if self._closed:
            raise InputError(f"{self.path}: the tracked-video writer is closed")
        frame = require_bgr8(image, "image")
        h, w = frame.shape[:2]
        if self.picture:  # a still's tracked image, as FaceLandmarkImg writes it
            if self.written:
                raise InputError(f"{self.path}: a picture holds one frame; name a video "
                                 f"({', '.join(TRACKED_VIDEO_SUFFIXES)}) for several")
            drawn = draw_tracked(frame, faces, self.intrinsics, label_faces=len(faces) > 1)
            write_picture(self.path, drawn, "the tracked picture")
            self.written += 1
            return drawn
        if self._writer is None:
            with opencv_path(self.path) as name, opencv_log_quiet():  # any file name
                writer = cv2.VideoWriter(name, cv2.VideoWriter_fourcc(*self.codec),
                                         self.fps, (w, h), True)
            if not writer.isOpened():
                raise InputError(
                    f"{self.path}: OpenCV cannot write a {w}x{h} video with codec "
                    f"{self.codec} into a {self.path.suffix or 'file without extension'}"
                    + (" (frames too small for the codec)" if min(w, h) < 16 else "")
                )
            self._writer, self._size = writer, (w, h)
        if self.label_faces is None and len(faces) > 1:
            self.label_faces = True
        drawn = draw_tracked(frame, faces, self.intrinsics, label_faces=bool(self.label_faces))
        if self._size != (w, h):  # an image folder of several sizes: fitted into the first
            drawn = _letterbox(drawn, self._size)
        self._writer.write(drawn)
        self.written += 1
        return drawn

    def close(self) -> None:
        """Finish the video file (idempotent)."""
        self._closed = True
        if self._writer is not None:
            self._writer.release()
            self._writer = None

