"""The two matrix encodings OpenFace's model files are built from.

OpenFace (``LandmarkDetectorUtils.cpp``: ``ReadMat``, ``ReadMatBin``, ``SkipComments``)
stores matrices either as text (``rows cols type`` then the values, whitespace separated)
or as binary (int32 rows, int32 cols, int32 OpenCV type, then the raw row-major values).
The type is an OpenCV depth code for a one-channel matrix.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import ModelFileError

__all__ = ["CV_DTYPES", "TextReader", "BinaryReader"]

#: OpenCV one-channel type code -> NumPy dtype (little-endian, as OpenFace writes them).
CV_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<u1"),  # CV_8UC1
    1: np.dtype("<i1"),  # CV_8SC1
    2: np.dtype("<u2"),  # CV_16UC1
    3: np.dtype("<i2"),  # CV_16SC1
    4: np.dtype("<i4"),  # CV_32SC1
    5: np.dtype("<f4"),  # CV_32FC1
    6: np.dtype("<f8"),  # CV_64FC1
}


class TextReader:
    """Token reader for OpenFace's text model files.

    Mirrors C++ ``ifstream >>`` reads: tokens are separated by any whitespace. Comment
    lines (first non-blank character ``#``) are skipped where OpenFace calls
    ``SkipComments``, i.e. by :meth:`skip_comments`, and also wherever a token is read,
    since OpenFace's files only have comments between records.

    Parameters
    ----------
    path : path of the file (used in error messages and to read the text).
    text : the text itself, if already read.
    """

    def __init__(self, path: str | Path, text: str | None = None) -> None:
        self.path = Path(path)
        if text is None:
            try:
                text = self.path.read_text(encoding="latin-1")
            except OSError as exc:
                raise ModelFileError(f"{self.path}: cannot be read ({exc.strerror})") from exc
        tokens: list[str] = []
        for line in text.splitlines():
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            tokens.extend(stripped.split())
        self._tokens = tokens
        self._pos = 0

    # -- primitive reads -------------------------------------------------------------
    def at_end(self) -> bool:
        """True when every token has been consumed."""
        return self._pos >= len(self._tokens)

    def skip_comments(self) -> None:
        """Kept for symmetry with OpenFace; comments are dropped when the file is read."""

    def token(self) -> str:
        """The next token; raises on end of file."""
        if self._pos >= len(self._tokens):
            raise ModelFileError(f"{self.path}: file ends early (truncated?)")
        tok = self._tokens[self._pos]
        self._pos += 1
        return tok

    def expect(self, word: str) -> None:
        """Consume a token and check it equals ``word``."""
        tok = self.token()
        if tok != word:
            raise ModelFileError(f"{self.path}: expected '{word}', found '{tok}'")

    def int(self) -> int:
        tok = self.token()
        try:
            return int(tok)
        except ValueError:
            raise ModelFileError(f"{self.path}: expected an integer, found '{tok}'") from None

    def float(self) -> float:
        tok = self.token()
        try:
            return float(tok)
        except ValueError:
            raise ModelFileError(f"{self.path}: expected a number, found '{tok}'") from None

    def floats(self, n: int) -> np.ndarray:
        """The next ``n`` tokens as float64, shape ``(n,)``."""
        if self._pos + n > len(self._tokens):
            raise ModelFileError(f"{self.path}: file ends early (truncated?)")
        chunk = self._tokens[self._pos : self._pos + n]
        self._pos += n
        try:
            return np.array(chunk, dtype=np.float64)
        except ValueError:
            raise ModelFileError(f"{self.path}: non-numeric value in a matrix") from None

    def mat(self) -> np.ndarray:
        """A text matrix (``ReadMat``): ``rows cols type`` then values, shape ``(rows, cols)``.

        Values are returned in the matrix's own dtype (float64 for CV_64F, float32 for
        CV_32F, int32 for CV_32S ...).
        """
        rows, cols, cv_type = self.int(), self.int(), self.int()
        if rows < 0 or cols < 0 or cv_type not in CV_DTYPES:
            raise ModelFileError(
                f"{self.path}: bad matrix header ({rows} x {cols}, type {cv_type})"
            )
        values = self.floats(rows * cols)
        return values.reshape(rows, cols).astype(CV_DTYPES[cv_type])


class BinaryReader:
    """Reader for OpenFace's binary model files (``ReadMatBin`` and raw scalars).

    Parameters
    ----------
    path : path of the file (used in error messages).
    data : the bytes, if already read.
    """

    def __init__(self, path: str | Path, data: bytes | None = None) -> None:
        self.path = Path(path)
        if data is None:
            try:
                data = self.path.read_bytes()
            except OSError as exc:
                raise ModelFileError(f"{self.path}: cannot be read ({exc.strerror})") from exc
        self._buf: BinaryIO = io.BytesIO(data)
        self._size = len(data)

    def at_end(self) -> bool:
        return self._buf.tell() >= self._size

    def tell(self) -> int:
        return self._buf.tell()

    def bytes(self, n: int) -> bytes:
        data = self._buf.read(n)
        if len(data) != n:
            raise ModelFileError(
                f"{self.path}: file ends early at byte {self._size} (truncated?)"
            )
        return data

    def scalars(self, dtype: str | np.dtype, n: int) -> np.ndarray:
        dt = np.dtype(dtype)
        return np.frombuffer(self.bytes(dt.itemsize * n), dtype=dt).copy()

    def int32(self) -> int:
        return int(self.scalars("<i4", 1)[0])

    def float32(self) -> float:
        return float(self.scalars("<f4", 1)[0])

    def float64(self) -> float:
        return float(self.scalars("<f8", 1)[0])

    def mat(self) -> np.ndarray:
        """A binary matrix (``ReadMatBin``), shape ``(rows, cols)`` in its own dtype."""
        rows, cols, cv_type = self.int32(), self.int32(), self.int32()
        if rows < 0 or cols < 0 or cv_type not in CV_DTYPES or rows * cols > 1 << 28:
            raise ModelFileError(
                f"{self.path}: bad matrix header ({rows} x {cols}, type {cv_type})"
            )
        return self.scalars(CV_DTYPES[cv_type], rows * cols).reshape(rows, cols)
