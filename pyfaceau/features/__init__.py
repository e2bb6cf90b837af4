"""Appearance and shape features of the aligned face: dlib's FHOG and OpenFace's geometry."""

from .fhog import fhog, hog_descriptor
from .geometry import geometry_descriptor
from .hog_file import read_hog_file, write_hog_file

__all__ = ["fhog", "geometry_descriptor", "hog_descriptor", "read_hog_file", "write_hog_file"]
