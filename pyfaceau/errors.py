"""Exceptions raised by pyfaceau.

Every error a user can cause (a missing or damaged model file, an unreadable video, a bad
argument) is one of these, with a one-line message that says what was expected and how to
fix it.
"""

from __future__ import annotations

__all__ = ["PyFaceAUError", "ModelFileError", "InputError"]


class PyFaceAUError(Exception):
    """Base class of pyfaceau's own errors."""


class ModelFileError(PyFaceAUError, ValueError):
    """A model file is missing, truncated, altered or not in the expected format."""


class InputError(PyFaceAUError, ValueError):
    """An input (video, image, landmark CSV, array argument) cannot be used."""
