"""Exceptions and warnings raised by pyfaceau.

Every error a user can cause (a missing or damaged model file, an unreadable video, a bad
argument) is one of these, with a one-line message that says what was expected and how to
fix it. The checks of array arguments live in :mod:`pyfaceau.validation`.
"""

from __future__ import annotations

__all__ = [
    "PyFaceAUError",
    "ModelFileError",
    "InputError",
    "ClosedError",
    "IncompleteInputWarning",
]


class PyFaceAUError(Exception):
    """Base class of pyfaceau's own errors."""


class ModelFileError(PyFaceAUError, ValueError):
    """A model file is missing, truncated, altered or not in the expected format."""


class InputError(PyFaceAUError, ValueError):
    """An input (video, image, landmark CSV, array argument) cannot be used."""


class ClosedError(PyFaceAUError, RuntimeError):
    """A :class:`~pyfaceau.Pipeline` (or a stream of it) used after ``close()``."""


class IncompleteInputWarning(UserWarning):
    """Part of an input could not be read: a video ends before the frame count its
    container announces, or an image of a folder cannot be decoded. The output holds what
    was read; ``warnings.simplefilter("error", IncompleteInputWarning)`` (the CLI's
    ``--strict``) makes it an error."""
