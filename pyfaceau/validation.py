"""Argument checks shared by the public functions of every stage.

One place for the checks (as scikit-image's ``_shared.utils``): each returns the argument,
converted where that is harmless, or raises :class:`~pyfaceau.errors.InputError` with a
one-line message naming the argument, what was expected and what it got. Kernels behind
a public function may then assume valid input.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import InputError

__all__ = [
    "MIN_LANDMARK_EXTENT",
    "require_bgr8",
    "require_image",
    "require_gray",
    "require_landmarks",
    "require_index",
    "require_number",
    "require_numeric_columns",
    "require_writable_folder",
]

#: Smallest extent (pixels) of a landmark set, in x and in y, that a fit can use: below
#: it the PDM's scale is 0 and OpenFace's maths divides by it (a failed frame's landmarks
#: are all 0).
MIN_LANDMARK_EXTENT = 1.0


def _describe(value: object) -> str:
    shape = getattr(value, "shape", None)
    if shape is None:
        return type(value).__name__
    return f"shape {tuple(shape)}, dtype {getattr(value, 'dtype', '?')}"


def require_image(
    image: object,
    name: str = "image",
    *,
    channels: Sequence[int] = (1, 3),
    dtypes: Sequence[type] = (np.uint8,),
) -> np.ndarray:
    """``image`` if it is a non-empty ``(H, W)`` or ``(H, W, C)`` array with ``C`` in
    ``channels`` (1 = an ``(H, W)`` grey image) and a dtype in ``dtypes``.

    Raises
    ------
    InputError
        Naming ``name``, the expected layout and what was given.
    """
    want_dt = " or ".join(np.dtype(d).name for d in dtypes)
    layouts = ["(H, W)" if c == 1 else f"(H, W, {c})" for c in channels]
    if not isinstance(image, np.ndarray):
        raise InputError(
            f"{name}: expected a numpy array, a {' or '.join(layouts)} {want_dt} image, "
            f"got {type(image).__name__}"
        )
    ok = image.ndim in (2, 3)
    if ok:
        c = 1 if image.ndim == 2 else image.shape[2]
        ok = (
            c in channels
            and image.dtype in [np.dtype(d) for d in dtypes]
            and image.shape[0] >= 1
            and image.shape[1] >= 1
        )
    if not ok:
        raise InputError(
            f"{name}: expected a non-empty {' or '.join(layouts)} {want_dt} image, "
            f"got {_describe(image)}"
        )
    return image  # type: ignore[return-value]


def require_bgr8(image: object, name: str = "image_bgr") -> np.ndarray:
    """``image`` itself if it is a non-empty ``(H, W, 3)`` uint8 BGR array, else
    :class:`InputError` naming the argument and what it got."""
    return require_image(image, name, channels=(3,))


def require_gray(
    image: object, name: str = "gray", dtypes: Sequence[type] = (np.uint8,)
) -> np.ndarray:
    """``image`` if it is a non-empty ``(H, W)`` grey image of one of ``dtypes``; the
    message says how to convert a BGR image."""
    if isinstance(image, np.ndarray) and image.ndim == 3:
        raise InputError(
            f"{name}: expected an (H, W) grey image, got {_describe(image)}; convert with "
            "cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)"
        )
    return require_image(image, name, channels=(1,), dtypes=dtypes)


def require_landmarks(
    landmarks: object,
    n: int = 68,
    name: str = "landmarks",
    *,
    dims: int = 2,
    fitted: bool = True,
) -> np.ndarray:
    """``landmarks`` as an ``(n, dims)`` float64 array of finite pixel coordinates.

    Parameters
    ----------
    fitted : also require a face-sized set: an extent of at least
        :data:`MIN_LANDMARK_EXTENT` pixels in x and in y (a failed frame's all-zero
        landmarks are rejected). False for functions that take a failed frame's landmarks
        on purpose (pose on a ``success = 0`` row, as OpenFace writes it).

    Raises
    ------
    InputError
        Wrong shape, non-numeric, NaN or infinite values, or (``fitted``) a degenerate set.
    """
    try:
        lm = np.asarray(landmarks, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected ({n}, {dims}) numbers, got {_describe(landmarks)}") from None
    if lm.shape != (n, dims):
        raise InputError(f"{name}: expected ({n}, {dims}) pixels, got {lm.shape}")
    if not np.isfinite(lm).all():
        raise InputError(f"{name}: has NaN or infinite values")
    if fitted:
        extent = lm[:, :2].max(axis=0) - lm[:, :2].min(axis=0)
        if extent.min() < MIN_LANDMARK_EXTENT:
            raise InputError(
                f"{name}: degenerate (extent {extent[0]:.3g} x {extent[1]:.3g} px); expected "
                "a fitted face (a failed frame's landmarks are all 0)"
            )
    return lm


def require_index(value: object, name: str, minimum: int = 0) -> int:
    """``value`` as an int if it is an integer (Python or NumPy, not bool) ``>= minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise InputError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


def require_number(
    value: object, name: str, *, minimum: float | None = None, allow_none: bool = False
) -> float | None:
    """``value`` as a finite float (``None`` passes when ``allow_none``), ``>= minimum``
    when given."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InputError(f"{name}: expected a number, got {value!r}")
    v = float(value)
    if not np.isfinite(v) or (minimum is not None and v < minimum):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise InputError(f"{name}: expected a finite number{bound}, got {value!r}")
    return v


def require_numeric_columns(table: object, columns: Sequence[str], name: str) -> None:
    """Every one of ``columns`` of the pandas DataFrame ``table`` (a CSV as read) holds
    numbers, else :class:`InputError` naming ``name``, the column and the first row that
    is not one (counting the header as row 1)."""
    import pandas as pd

    for column in columns:
        values = table[column]  # type: ignore[index]
        if not pd.api.types.is_numeric_dtype(values):
            bad = (pd.to_numeric(values, errors="coerce").isna() & values.notna()).to_numpy()
            raise InputError(f"{name}: {column} is not a number in row "
                             f"{int(np.argmax(bad)) + 2} (counting the header as row 1)")


def require_writable_folder(folder: str | os.PathLike, what: str = "folder") -> Path:
    """``folder`` made if needed (with its parents) and writable, as a Path; else
    :class:`InputError` in one line (``what`` names it: "the output folder")."""
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise InputError(f"{folder}: not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{folder}: cannot create {what} ({exc.strerror or exc})") from None
    if not os.access(out, os.W_OK):
        raise InputError(f"{folder}: {what} is not writable")
    return out
