"""Person-specific normalisation: OpenFace's running histogram median."""

from .median import (
    GEOM_MAX_VAL,
    GEOM_MIN_VAL,
    GEOM_N_BINS,
    HOG_MAX_VAL,
    HOG_MIN_VAL,
    HOG_N_BINS,
    HistogramMedian,
)

__all__ = [
    "HistogramMedian",
    "HOG_N_BINS",
    "HOG_MIN_VAL",
    "HOG_MAX_VAL",
    "GEOM_N_BINS",
    "GEOM_MIN_VAL",
    "GEOM_MAX_VAL",
]
