"""Frame sources: a video file, a folder of images (a sequence) or a single image.

Frames come out as OpenCV BGR ``uint8`` ``(H, W, 3)``, whatever the file holds (grey,
16-bit, with alpha), with OpenFace's timestamps: ``frame_index / fps`` for videos and 0 for
image sequences (as FeatureExtraction writes them for ``-fdir``).
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..errors import IncompleteInputWarning, InputError
from ..opencv_io import opencv_log_quiet, opencv_path

__all__ = [
    "FRAME_COUNT_SLACK",
    "Frame",
    "FrameSource",
    "IMAGE_SUFFIXES",
    "announced_frame_count",
    "input_kind",
    "input_path",
    "open_source",
    "read_image",
    "to_bgr8",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


@dataclass(frozen=True)
class Frame:
    """One decoded frame.

    Attributes
    ----------
    index : 0-based position in the source (the CSV's ``frame`` is ``index + 1``).
    timestamp : seconds.
    image : ``(H, W, 3)`` uint8 BGR.
    decoded : False for an image of a folder that could not be decoded (``image`` is then
        black, of the folder's first size); its row has ``success = 0``.
    """

    index: int
    timestamp: float
    image: np.ndarray
    decoded: bool = True


def to_bgr8(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Convert any image OpenCV can decode to ``(H, W, 3)`` uint8 BGR.

    16-bit images are scaled to 8 bits (divided by 256), floats in [0, 1] multiplied by
    255, grey replicated to three channels, alpha dropped.
    """
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        raise InputError(f"{name}: expected an image array (H, W) or (H, W, C)")
    img = image
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype in (np.float32, np.float64):
        finite = np.isfinite(img)
        top = float(img.max(initial=0.0, where=finite))  # NaN and inf count as black
        img = np.clip(img * 255.0 if top <= 1.0 else img, 0, 255)
        img = np.where(finite, img, 0.0).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise InputError(f"{name}: unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    channels = img.shape[2]
    if channels == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR)
    if channels == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if channels == 3:
        return np.ascontiguousarray(img)
    raise InputError(f"{name}: unsupported number of channels {channels}")


#: Frames a container's announced count may exceed what a complete file decodes to: ASF
#: (``.wmv``) estimates the count from its duration (``changeLighting.wmv`` announces 90
#: and holds 88). A shortfall beyond this is reported as a truncated or corrupt video.
FRAME_COUNT_SLACK = 2


def _is_hidden(path: Path) -> bool:
    """Hidden files and macOS's AppleDouble companions (``._x.jpg``) are not images."""
    return path.name.startswith(".")


def announced_frame_count(cap: "cv2.VideoCapture") -> int:
    """The number of frames an open video's container announces; 0 when it announces
    none that makes sense (a damaged header can give a negative or NaN count)."""
    count = float(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0.0
    return int(count) if math.isfinite(count) and 0 < count < 2**62 else 0


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to ``(H, W, 3)`` uint8 BGR (see :func:`to_bgr8`).

    The bytes are read by Python and decoded by ``cv2.imdecode`` (OpenCV's decoders), so
    any file name the operating system accepts works. As OpenFace's ``cv::imread(path,
    IMREAD_COLOR)``, a photo's EXIF orientation is applied (a phone's portrait picture
    comes upright); unlike it, 16-bit, grey and float images keep their depth and
    channels until :func:`to_bgr8` (the same 8-bit result where OpenFace reads them).

    Raises
    ------
    InputError
        If the file cannot be read or decoded.
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    img = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR) if data.size else None
    if img is None:
        raise InputError(f"{path}: cannot be decoded as an image")
    return to_bgr8(img, str(path))


class FrameSource:
    """Iterable over the frames of a video, an image folder or an image.

    Use :func:`open_source`. Attributes: ``path``, ``kind`` (``"video"``, ``"sequence"``,
    ``"image"``), ``fps`` (0 for image sequences), ``frame_count`` (the count a video's
    container announces, which may be an estimate), ``width``, ``height`` (of the first
    frame), ``frames_read`` (frames decoded so far).

    Notes
    -----
    Nothing is dropped silently: a video that ends more than :data:`FRAME_COUNT_SLACK`
    frames before the count its container announces (truncated, or a frame that cannot
    be decoded: OpenFace's ``SequenceCapture`` also stops there) and an image of a folder
    that cannot be decoded (a ``success = 0`` frame, ``Frame.decoded`` False) each give an
    :class:`~pyfaceau.errors.IncompleteInputWarning`; make it an error with
    ``warnings.simplefilter("error", IncompleteInputWarning)``. Hidden files and macOS's
    ``._*`` files in a folder are skipped.
    """

    def __init__(self, path: Path, kind: str) -> None:
        self.path = path
        self.kind = kind
        self._images: list[Path] = []
        self.fps = 0.0
        self.frames_read = 0
        if kind == "video":
            with opencv_path(path) as name, opencv_log_quiet():
                cap = cv2.VideoCapture(name)
                ok, first = cap.read() if cap.isOpened() else (False, None)
                if not ok or first is None:
                    empty = cap.isOpened() and cap.get(cv2.CAP_PROP_FRAME_COUNT) == 0
                    cap.release()
                    if empty:
                        raise InputError(f"{path}: a video without frames")
                    raise InputError(f"{path}: cannot be decoded as a video (corrupt or unsupported)")
                fps = float(cap.get(cv2.CAP_PROP_FPS))
                # a damaged header can give any number: 30 frames/s, as for none
                self.fps = fps if math.isfinite(fps) and fps > 0 else 30.0
                self.frame_count = announced_frame_count(cap)
                cap.release()
            self.height, self.width = first.shape[:2]
        elif kind == "image":
            self._images = [path]
            self.frame_count = 1
            self.height, self.width = read_image(path).shape[:2]
        else:
            self._images = sorted(  # a dangling link too: a success = 0 row and a warning
                p for p in path.iterdir()
                if p.suffix.lower() in IMAGE_SUFFIXES and not _is_hidden(p)
                and (p.is_file() or (p.is_symlink() and not p.exists()))
            )
            if not self._images:
                raise InputError(f"{path}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            self.frame_count = len(self._images)
            self.height = self.width = 0
            for p in self._images:  # the first image that decodes gives the frame size
                try:
                    self.height, self.width = read_image(p).shape[:2]
                    break
                except InputError:
                    continue
            else:
                raise InputError(f"{path}: none of its {len(self._images)} images can be decoded")

    def __len__(self) -> int:
        return self.frame_count

    def __iter__(self) -> Iterator[Frame]:
        self.frames_read = 0
        if self.kind == "video":
            yield from self._video_frames()
        else:
            yield from self._image_frames()

    def _video_frames(self) -> Iterator[Frame]:
        with opencv_path(self.path) as name:
            cap = cv2.VideoCapture(name)
            try:
                index = 0
                while True:
                    ok, image = cap.read()
                    if not ok or image is None:
                        break
                    yield Frame(index, index / self.fps, to_bgr8(image))
                    index += 1
                    self.frames_read = index
            finally:
                cap.release()
        if index < self.frame_count - FRAME_COUNT_SLACK:
            warnings.warn(
                f"{self.path}: the video ends after {index} of the {self.frame_count} frames "
                f"its container announces (truncated or corrupt); the output holds the "
                f"{index} frames read",
                IncompleteInputWarning,
                stacklevel=3,
            )

    def _image_frames(self) -> Iterator[Frame]:
        size_warned = False
        for index, p in enumerate(self._images):
            try:
                image = read_image(p)
            except InputError as exc:
                warnings.warn(f"{exc}: its row has success = 0", IncompleteInputWarning, stacklevel=3)
                blank = np.zeros((self.height, self.width, 3), np.uint8)
                self.frames_read = index + 1
                yield Frame(index, 0.0, blank, decoded=False)
                continue
            if image.shape[:2] != (self.height, self.width) and not size_warned:
                size_warned = True
                warnings.warn(
                    f"{self.path}: the images differ in size ({p.name}: {image.shape[1]} x "
                    f"{image.shape[0]}, the first: {self.width} x {self.height}); each gets "
                    "the default camera of its own size",
                    UserWarning,
                    stacklevel=3,
                )
            self.frames_read = index + 1
            yield Frame(index, 0.0, image)


def input_path(path: object) -> Path:
    """``path`` (str, bytes: any name the operating system accepts, or path-like) as a
    Path, checked without opening it; :class:`InputError` for anything else, an empty
    name, a path that does not exist, or neither a file nor a folder (a FIFO or a device,
    whose reading could wait forever)."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise InputError(f"input: expected a path (video, image folder or image), got "
                         f"{type(path).__name__}")
    name = os.fsdecode(path)
    if not name:
        raise InputError("input: the path is empty")
    p = Path(name)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    if not p.is_dir() and not p.is_file():
        raise InputError(f"{p}: not a regular file or folder")
    return p


def open_source(path: str | bytes | os.PathLike) -> FrameSource:
    """Open a video file, a folder of images or an image file.

    Raises
    ------
    InputError
        If the path does not exist or cannot be decoded.
    """
    p = input_path(path)
    return FrameSource(p, input_kind(p))


def input_kind(path: Path) -> str:
    """What ``path`` is read as: ``"sequence"`` (a folder), ``"image"`` (an image file's
    suffix, :data:`IMAGE_SUFFIXES`) or ``"video"``."""
    if path.is_dir():
        return "sequence"
    return "image" if path.suffix.lower() in IMAGE_SUFFIXES else "video"
