"""OpenFace-compatible outputs: the CSV table (column names, order, precision), and the
outputs beside it: aligned faces, the ``.hog`` file and the tracked video.

The names below are imported from their modules on first use: importing
``pyfaceau.output.atomic`` (as a batch worker does before its start-up) defines no
numba kernel (the tracked video's drawing needs the PDM's).
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "AlignedFaceWriter": "aligned", "aligned_face_name": "aligned",
    "HogWriter": "hog",
    "AU_INTENSITY_NAMES": "table", "AU_PRESENCE_NAMES": "table", "OPENFACE_COLUMNS": "table",
    "FrameTable": "table", "write_csv": "table",
    "TrackedFace": "tracked", "TrackedVideoWriter": "tracked", "draw_tracked": "tracked",
    "FrameWriters": "writers",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
