"""OpenFace-compatible outputs: the CSV table (column names, order, precision), and the
outputs beside it: aligned faces, the ``.hog`` file and the tracked video."""

from .aligned import AlignedFaceWriter, aligned_face_name
from .hog import HogWriter
from .table import (
    AU_INTENSITY_NAMES,
    AU_PRESENCE_NAMES,
    OPENFACE_COLUMNS,
    FrameTable,
    write_csv,
)
from .tracked import TrackedFace, TrackedVideoWriter, draw_tracked
from .writers import FrameWriters

__all__ = [
    "AU_INTENSITY_NAMES",
    "AU_PRESENCE_NAMES",
    "OPENFACE_COLUMNS",
    "AlignedFaceWriter",
    "FrameTable",
    "FrameWriters",
    "HogWriter",
    "TrackedFace",
    "TrackedVideoWriter",
    "aligned_face_name",
    "draw_tracked",
    "write_csv",
]
