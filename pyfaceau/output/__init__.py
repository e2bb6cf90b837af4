"""OpenFace-compatible output tables: column names, order, precision and CSV writing."""

from .table import (
    AU_INTENSITY_NAMES,
    AU_PRESENCE_NAMES,
    OPENFACE_COLUMNS,
    FrameTable,
    write_csv,
)

__all__ = ["AU_INTENSITY_NAMES", "AU_PRESENCE_NAMES", "OPENFACE_COLUMNS", "FrameTable", "write_csv"]
