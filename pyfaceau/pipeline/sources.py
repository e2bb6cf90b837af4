"""Frame sources: a video file, a folder of images (a sequence) or a single image.

Frames come out as OpenCV BGR ``uint8`` ``(H, W, 3)``, whatever the file holds (grey,
16-bit, with alpha), with OpenFace's timestamps: ``frame_index / fps`` for videos and 0 for
image sequences (as FeatureExtraction writes them for ``-fdir``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..errors import InputError

__all__ = ["Frame", "FrameSource", "open_source", "to_bgr8", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


@dataclass(frozen=True)
class Frame:
    """One decoded frame.

    Attributes
    ----------
    index : 0-based position in the source (the CSV's ``frame`` is ``index + 1``).
    timestamp : seconds.
    image : ``(H, W, 3)`` uint8 BGR.
    """

    index: int
    timestamp: float
    image: np.ndarray


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
        img = np.clip(img * 255.0 if float(np.nanmax(img)) <= 1.0 else img, 0, 255)
        img = np.nan_to_num(img).astype(np.uint8)
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


def _read_image(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"{path}: cannot be decoded as an image")
    return to_bgr8(img, str(path))


class FrameSource:
    """Iterable over the frames of a video, an image folder or an image.

    Use :func:`open_source`. Attributes: ``path``, ``kind`` (``"video"``, ``"sequence"``,
    ``"image"``), ``fps`` (0 for image sequences), ``frame_count`` (may be an estimate for
    videos), ``width``, ``height``.
    """

    def __init__(self, path: Path, kind: str) -> None:
        self.path = path
        self.kind = kind
        self._images: list[Path] = []
        self.fps = 0.0
        if kind == "video":
            cap = cv2.VideoCapture(str(path))
            ok, first = cap.read() if cap.isOpened() else (False, None)
            if not ok or first is None:
                cap.release()
                raise InputError(f"{path}: cannot be decoded as a video (corrupt or unsupported)")
            self.fps = float(cap.get(cv2.CAP_PROP_FPS)) or 30.0
            self.frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            self.height, self.width = first.shape[:2]
            cap.release()
        else:
            self._images = (
                [path]
                if kind == "image"
                else sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            )
            if not self._images:
                raise InputError(f"{path}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            first = _read_image(self._images[0])
            self.frame_count = len(self._images)
            self.height, self.width = first.shape[:2]

    def __len__(self) -> int:
        return self.frame_count

    def __iter__(self) -> Iterator[Frame]:
        if self.kind == "video":
            cap = cv2.VideoCapture(str(self.path))
            try:
                index = 0
                while True:
                    ok, image = cap.read()
                    if not ok or image is None:
                        break
                    yield Frame(index, index / self.fps, to_bgr8(image))
                    index += 1
            finally:
                cap.release()
        else:
            for index, p in enumerate(self._images):
                yield Frame(index, 0.0, _read_image(p))


def open_source(path: str | os.PathLike) -> FrameSource:
    """Open a video file, a folder of images or an image file.

    Raises
    ------
    InputError
        If the path does not exist or cannot be decoded.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    if p.is_dir():
        return FrameSource(p, "sequence")
    if p.suffix.lower() in IMAGE_SUFFIXES:
        return FrameSource(p, "image")
    return FrameSource(p, "video")
