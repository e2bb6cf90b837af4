"""Appearance and shape features of the aligned face: dlib's FHOG and OpenFace's geometry."""

from .fhog import fhog, hog_descriptor
from .geometry import geometry_descriptor

__all__ = ["fhog", "geometry_descriptor", "hog_descriptor"]
