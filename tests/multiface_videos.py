"""Composed multi-face test videos: sample clips side by side, written losslessly.

Used by ``tests/test_multiface.py`` and, once, to make the OpenFace references in
``tests/data/multiface/`` (see the README there). Deterministic: the same pixels every run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "samples"

#: FFV1 in AVI: lossless, and readable by OpenCV's and OpenFace's FFmpeg.
LOSSLESS_FOURCC = "FFV1"

#: The composed videos of the tests: name -> (clips left to right, frames, black spans
#: ``(tile, first frame, end frame)`` 0-based, end excluded). The acceptance pair
#: (Clinton, Roberts) was not used to tune the multi-face tracking (tuned on Pacino,
#: Cooper).
COMPOSED = {
    "pair": (("0417_02_003_bill_clinton.avi", "1192_01_006_julia_roberts.avi"), 150, ()),
    "pair_gap": (
        ("0417_02_003_bill_clinton.avi", "1192_01_006_julia_roberts.avi"),
        150,
        ((1, 55, 95),),
    ),
}


def read_frames(path: Path, n: int) -> list[np.ndarray]:
    """The first ``n`` frames of a video (BGR uint8); fewer if the video is shorter."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < n:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    return frames


def write_lossless(path: Path, frames: Sequence[np.ndarray], fps: float = 30.0) -> None:
    """Write BGR frames as FFV1 in AVI; raises if the writer cannot open."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*LOSSLESS_FOURCC), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path} with fourcc {LOSSLESS_FOURCC}")
    for f in frames:
        writer.write(f)
    writer.release()


def compose(
    clips: Sequence[str], n: int, black: Sequence[tuple[int, int, int]] = ()
) -> tuple[list[np.ndarray], int]:
    """Frames of ``clips`` side by side (first ``n`` frames of each, same height), with
    the black spans applied; returns (frames, tile width)."""
    tiles = [read_frames(SAMPLES / c, n) for c in clips]
    n = min(len(t) for t in tiles)
    width = tiles[0][0].shape[1]
    frames = []
    for i in range(n):
        row = [t[i].copy() for t in tiles]
        for tile, start, stop in black:
            if start <= i < stop:
                row[tile][:] = 0
        frames.append(np.hstack(row))
    return frames, width


def make_composed(name: str, folder: Path) -> tuple[Path, int, int]:
    """Write the composed video ``name`` (see :data:`COMPOSED`) into ``folder``;
    returns (path, tile width, number of tiles)."""
    clips, n, black = COMPOSED[name]
    frames, width = compose(clips, n, black)
    path = folder / f"{name}.avi"
    write_lossless(path, frames)
    return path, width, len(clips)


def cut_tile(video: Path, tile: int, width: int, out: Path) -> Path:
    """Tile ``tile`` (of width ``width``) of a composed video, written losslessly."""
    frames = read_frames(video, 10**9)
    write_lossless(out, [f[:, tile * width : (tile + 1) * width] for f in frames])
    return out
