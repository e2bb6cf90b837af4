"""Exceptions raised by pyfaceau.

Every error a user can cause (a missing or damaged model file, an unreadable video, a bad
argument) is one of these, with a one-line message that says what was expected and how to
fix it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PyFaceAUError", "ModelFileError", "InputError", "require_bgr8"]


class PyFaceAUError(Exception):
    """Base class of pyfaceau's own errors."""


class ModelFileError(PyFaceAUError, ValueError):
    """A model file is missing, truncated, altered or not in the expected format."""


class InputError(PyFaceAUError, ValueError):
    """An input (video, image, landmark CSV, array argument) cannot be used."""


def require_bgr8(image: object, name: str = "image_bgr") -> np.ndarray:
    """``image`` itself if it is a non-empty ``(H, W, 3)`` uint8 BGR array, else
    :class:`InputError` naming the argument and what it got."""
    if (
        not isinstance(image, np.ndarray)
        or image.ndim != 3
        or image.shape[2] != 3
        or image.dtype != np.uint8
        or image.shape[0] < 1
        or image.shape[1] < 1
    ):
        got = getattr(image, "shape", type(image).__name__)
        dt = getattr(image, "dtype", "")
        raise InputError(f"{name}: expected an (H, W, 3) uint8 BGR image, got {got} {dt}".rstrip())
    return image
