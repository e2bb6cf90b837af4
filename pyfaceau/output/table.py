"""Per-frame results collected into an OpenFace-compatible table.

Column names and order follow OpenFace 2.2's ``RecorderCSV.cpp``; pyfaceau writes the
subset it computes (gaze and eye landmarks only where the front end has OpenFace's eye
models). Numbers are printed with OpenFace's precision so files can be compared line by
line.
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence, Union

import numpy as np

from ..errors import InputError
from .atomic import atomic_output

if TYPE_CHECKING:
    import pandas as pd

    TableLike = Union["FrameTable", pd.DataFrame]

__all__ = [
    "AU_INTENSITY_NAMES",
    "AU_PRESENCE_NAMES",
    "EYE_COLUMNS",
    "OPENFACE_COLUMNS",
    "FrameTable",
    "format_csv",
    "iter_csv_chunks",
    "openface_columns",
    "FACE_LANDMARK_IMG_FORMATS",
    "face_landmark_img_rows",
    "face_landmark_img_table",
    "is_split_csv_of",
    "split_csv_base",
    "row_keys",
    "split_csv_paths",
    "write_csv",
    "write_split_csvs",
    "remove_stale_split_csvs",
]

#: AUs with an intensity model (``AU_all_best.txt``), in OpenFace's column order.
AU_INTENSITY_NAMES = (
    "AU01 AU02 AU04 AU05 AU06 AU07 AU09 AU10 AU12 AU14 AU15 AU17 AU20 AU23 AU25 AU26 AU45"
).split()
#: AUs with a presence model (``main_dynamic_svms.txt``), in OpenFace's column order.
AU_PRESENCE_NAMES = (
    "AU01 AU02 AU04 AU05 AU06 AU07 AU09 AU10 AU12 AU14 AU15 AU17 AU20 AU23 AU25 AU26 AU28 AU45"
).split()

_N = 68
_N_MODES = 34
_N_EYE = 56  # two 28-point eye models
GAZE_COLUMNS = [f"gaze_{e}_{a}" for e in (0, 1) for a in "xyz"] + ["gaze_angle_x", "gaze_angle_y"]
EYE_LANDMARK_COLUMNS = [f"eye_lmk_{a}_{i}" for a in "xy" for i in range(_N_EYE)]
EYE_LANDMARK_3D_COLUMNS = [f"eye_lmk_{a}_{i}" for a in "XYZ" for i in range(_N_EYE)]
#: The gaze and eye-landmark columns, written only when the front end has eye models.
EYE_COLUMNS = GAZE_COLUMNS + EYE_LANDMARK_COLUMNS + EYE_LANDMARK_3D_COLUMNS
POSE_COLUMNS = ["pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"]
LANDMARK_COLUMNS = [f"x_{i}" for i in range(_N)] + [f"y_{i}" for i in range(_N)]
LANDMARK_3D_COLUMNS = [f"{a}_{i}" for a in "XYZ" for i in range(_N)]
PARAM_COLUMNS = ["p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty"] + [
    f"p_{i}" for i in range(_N_MODES)
]
AU_COLUMNS = [f"{a}_r" for a in AU_INTENSITY_NAMES] + [f"{a}_c" for a in AU_PRESENCE_NAMES]


def openface_columns(
    intensity_names: Sequence[str] = AU_INTENSITY_NAMES,
    presence_names: Sequence[str] = AU_PRESENCE_NAMES,
) -> list[str]:
    """OpenFace's CSV columns, in its order, for an AU model set with these outputs
    (``RecorderCSV::WriteHeader``: ``AUxx_r`` for each intensity, then ``AUxx_c``)."""
    return (
        ["frame", "face_id", "timestamp", "confidence", "success"]
        + EYE_COLUMNS
        + POSE_COLUMNS
        + LANDMARK_COLUMNS
        + LANDMARK_3D_COLUMNS
        + PARAM_COLUMNS
        + [f"{a}_r" for a in intensity_names]
        + [f"{a}_c" for a in presence_names]
    )


#: Every column pyfaceau writes with OpenFace's default AU models, in OpenFace's order.
OPENFACE_COLUMNS = openface_columns()

#: Group names accepted by :meth:`FrameTable.add`: columns, and whether the value is an
#: array of points (written axis by axis).
_GROUPS = {
    "pose": (POSE_COLUMNS, False),
    "landmarks": (LANDMARK_COLUMNS, True),
    "landmarks_3d": (LANDMARK_3D_COLUMNS, True),
    "params_global": (PARAM_COLUMNS[:6], False),
    "params_local": (PARAM_COLUMNS[6:], False),
    "gaze": (GAZE_COLUMNS, False),
    "eye_landmarks": (EYE_LANDMARK_COLUMNS, True),
    "eye_landmarks_3d": (EYE_LANDMARK_3D_COLUMNS, True),
}

#: printf formats as OpenFace's RecorderCSV writes each group.
_FORMATS = {
    "frame": "%d",
    "face_id": "%d",
    "timestamp": "%.3f",
    "confidence": "%.2f",
    "success": "%d",
    "gaze_angle": "%.3f",
    "gaze": "%.6f",
    "pose_T": "%.1f",
    "pose_R": "%.3f",
    "landmark": "%.1f",
    "p_t": "%.3f",
    "p": "%.3f",
    "au": "%.2f",
}


def _format_of(column: str) -> str:
    if column in _FORMATS:
        return _FORMATS[column]
    if column.startswith("gaze_angle"):
        return _FORMATS["gaze_angle"]
    if column.startswith("gaze_"):
        return _FORMATS["gaze"]
    if column.startswith("eye_lmk_"):
        return _FORMATS["landmark"]
    if column.startswith("pose_T"):
        return _FORMATS["pose_T"]
    if column.startswith("pose_R"):
        return _FORMATS["pose_R"]
    if column[:2] in ("x_", "y_", "X_", "Y_", "Z_"):
        return _FORMATS["landmark"]
    if column.startswith("p_"):
        return _FORMATS["p"]
    if column.startswith("AU"):
        return _FORMATS["au"]
    return "%g"


#: Rows per storage block of a :class:`FrameTable` (the table grows a block at a time).
TABLE_BLOCK_ROWS = 1024


class FrameTable:
    """Collects one row per frame, in processing order; builds a DataFrame or a CSV.

    Parameters
    ----------
    columns : the columns, in output order: :func:`openface_columns` of the AU model
        set, or a subset of it (kept in the given order).

    Notes
    -----
    Rows live in float64 blocks of :data:`TABLE_BLOCK_ROWS` rows (8 bytes per value and
    nothing per row besides); whole-column updates (:meth:`set_column_block`,
    :meth:`fill_missing`) write into the blocks, :meth:`drop` only hides columns, and the
    CSV writer formats block by block, so finishing a video never copies the table.
    float64 stays: the CSV must print exactly what OpenFace's precision gives for the
    computed value, and a float32 copy would move values across rounding ties.
    """

    def __init__(self, columns: Iterable[str]) -> None:
        self._all_columns = list(columns)
        unknown = [c for c in self._all_columns if _format_of(c) == "%g"]
        if unknown:
            raise InputError(f"unknown output columns: {unknown[:5]}")
        self._index = {c: i for i, c in enumerate(self._all_columns)}
        self._keep = np.arange(len(self._all_columns))
        self._blocks: list[np.ndarray] = []
        self._n = 0
        # Per group: positions of its columns in a row, and which of the group's values go
        # there (a row is filled with two fancy-index operations per group).
        self._targets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for key, (names, _) in _GROUPS.items():
            pairs = [(self._index[n], j) for j, n in enumerate(names) if n in self._index]
            cols = np.array([p[0] for p in pairs], dtype=np.intp)
            src = np.array([p[1] for p in pairs], dtype=np.intp)
            self._targets[key] = (cols, src)

    @property
    def columns(self) -> list[str]:
        """The columns kept, in output order."""
        return [self._all_columns[i] for i in self._keep]

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        """Bytes held by the rows."""
        return sum(b.nbytes for b in self._blocks)

    def add(self, values: dict[str, float | np.ndarray | Sequence[float]]) -> None:
        """Add a row. ``values`` maps column names or group names to numbers.

        Group names: ``"pose"`` (6,), ``"landmarks"`` (68, 2), ``"landmarks_3d"`` (68, 3),
        ``"params_global"`` (6,), ``"params_local"`` (34,), ``"gaze"`` (8,) (both eyes'
        vectors, then the two angles), ``"eye_landmarks"`` (56, 2), ``"eye_landmarks_3d"``
        (56, 3). Columns not given are NaN.
        """
        if self._n == len(self._blocks) * TABLE_BLOCK_ROWS:
            self._blocks.append(np.full((TABLE_BLOCK_ROWS, len(self._all_columns)), np.nan))
        row = self._blocks[-1][self._n % TABLE_BLOCK_ROWS]
        for key, value in values.items():
            group = _GROUPS.get(key)
            if group is None:
                i = self._index.get(key)
                if i is not None:
                    row[i] = np.atleast_1d(np.asarray(value, float))[0]
                continue
            arr = np.asarray(value, float)
            # point arrays (n, 2|3) are written axis by axis: x_0..x_n, y_0..y_n, ...
            flat = arr.T.ravel() if group[1] else arr.ravel()
            cols, src = self._targets[key]
            # a shorter array fills the first columns only, as zip() did
            keep = src < flat.size
            row[cols[keep]] = flat[src[keep]]
        self._n += 1

    def blocks(self) -> Iterator[np.ndarray]:
        """The rows, block by block: ``(k, n_columns)`` float64 arrays of the kept columns
        (copies of at most :data:`TABLE_BLOCK_ROWS` rows)."""
        for b, block in enumerate(self._blocks):
            rows = min(TABLE_BLOCK_ROWS, self._n - b * TABLE_BLOCK_ROWS)
            yield block[:rows][:, self._keep]

    def column(self, name: str) -> np.ndarray:
        """One column, ``(n_rows,)`` float64."""
        i = self._index[name]
        if not self._n:
            return np.zeros(0)
        return np.concatenate([b[:, i] for b in self._blocks])[: self._n]

    def values(self) -> np.ndarray:
        """The rows as one ``(n_rows, n_columns)`` float64 array (NaN: not given)."""
        if not self._n:
            return np.zeros((0, len(self._keep)))
        return np.concatenate(list(self.blocks()))

    def _column_positions(self, names: Sequence[str]) -> list[tuple[int, int]]:
        kept = set(self._keep.tolist())
        return [(self._index[n], j) for j, n in enumerate(names)
                if n in self._index and self._index[n] in kept]

    def set_column_block(self, names: Sequence[str], values: np.ndarray) -> None:
        """Overwrite whole columns (e.g. post-processed AUs), ``values`` ``(n_rows, len(names))``."""
        values = np.asarray(values, float)
        if values.shape != (self._n, len(names)):
            raise ValueError(f"expected {(self._n, len(names))}, got {values.shape}")
        pairs = self._column_positions(names)
        if not pairs:
            return
        cols = [p[0] for p in pairs]
        src = [p[1] for p in pairs]
        for b, block in enumerate(self._blocks):
            lo = b * TABLE_BLOCK_ROWS
            hi = min(lo + TABLE_BLOCK_ROWS, self._n)
            block[: hi - lo, cols] = values[lo:hi][:, src]

    def fill_missing(self, names: Sequence[str], value: float) -> None:
        """Replace NaN by ``value`` in the columns ``names`` (those kept)."""
        cols = [p[0] for p in self._column_positions(names)]
        if not cols:
            return
        for b, block in enumerate(self._blocks):
            rows = min(TABLE_BLOCK_ROWS, self._n - b * TABLE_BLOCK_ROWS)
            part = block[:rows, cols]
            part[np.isnan(part)] = value
            block[:rows, cols] = part

    def drop(self, names: Iterable[str]) -> None:
        """Remove the columns ``names`` (those kept)."""
        gone = {self._index[n] for n in names if n in self._index}
        self._keep = np.array([i for i in self._keep if i not in gone], dtype=np.intp)

    def to_dataframe(self) -> pd.DataFrame:
        """The table, one row per frame; integer columns as int."""
        import pandas as pd  # imported here: the CSV path does not need it

        df = pd.DataFrame(self.values(), columns=self.columns, copy=False)
        for c in _INT_COLUMNS:
            if c in df:
                df[c] = df[c].fillna(0).astype(np.int64)
        return df


#: Columns held as integers in a DataFrame (``%d`` in the CSV).
_INT_COLUMNS = ("frame", "face_id", "success")


# ------------------------------------------------------------------------------------
# CSV formatting, vectorised
# ------------------------------------------------------------------------------------
#: Rows formatted at a time (bounds the memory of the byte matrix: rows x columns x
#: field width bytes, about 10 MB for 1024 rows of 714 columns).
CSV_CHUNK_ROWS = 1024
#: Values whose scaled magnitude reaches this are printed by Python's ``%`` instead
#: (beyond it float64 no longer holds every integer exactly).
_EXACT_LIMIT = 2.0**52
#: Relative distance to a rounding tie within which Python's ``%`` decides: the scaled
#: value's own float64 error is below 2**-52 relative, so outside this band the rounding
#: direction of ``rint`` is the one of the exact binary value, as printf's.
_TIE_BAND = 1e-9

_COMMA, _NEWLINE, _MINUS, _POINT, _ZERO = (ord(c) for c in ",\n-.0")
_NAN = np.frombuffer(b"nan", dtype=np.uint8)


def _spec_of(fmt: str) -> tuple[str, int]:
    """``"%d"`` -> ("d", 0); ``"%.3f"`` -> ("f", 3); anything else -> ("py", 0)."""
    if fmt == "%d":
        return "d", 0
    if fmt.startswith("%.") and fmt.endswith("f") and fmt[2:-1].isdigit():
        return "f", int(fmt[2:-1])
    return "py", 0


def _digits(q: np.ndarray, width: int, out: np.ndarray, *, leading_zeros: bool = False) -> None:
    """Write non-negative int64 ``q`` as ``width`` ASCII digits into ``out``
    (``q.shape + (width,)`` uint8); leading zeros become 0 bytes (dropped later) unless
    ``leading_zeros``; the units digit is always written."""
    # int32 divisions are about twice as fast; the values almost always fit
    v = q.astype(np.int32) if q.size and q.max() < 2**31 else q
    rest = v.copy()
    for pos in range(width - 1, -1, -1):
        digit = (rest % 10).astype(np.uint8)
        rest //= 10
        digit += _ZERO
        if not leading_zeros and pos < width - 1:
            digit[v < 10 ** (width - 1 - pos)] = 0
        out[..., pos] = digit


def _format_group(x: np.ndarray, kind: str, decimals: int, fmt: str) -> np.ndarray:
    """Fields of a block of values ``x`` ``(n, k)`` with one printf format, as bytes
    ``(n, k, width)`` uint8 (0 = no byte). Identical to ``fmt % v`` per value, and "nan"
    for NaN (the writer's rule)."""
    nan = np.isnan(x)
    if kind == "d":
        # "%d" % v truncates toward zero, and never prints "-0"
        t = np.trunc(x)
        slow = ~nan & ~(np.abs(t) < _EXACT_LIMIT)
        ok = ~nan & ~slow
        q = np.where(ok, np.abs(t), 0).astype(np.int64)
        neg = ok & (t < 0)
    elif kind == "f":
        # "%.Nf" rounds the exact binary value half to even: rint of |x| * 10**N gives
        # that except within a hair of a tie, where Python's % decides
        y = np.abs(x) * (10.0**decimals)
        r = np.rint(y)
        with np.errstate(invalid="ignore"):
            tie = np.abs(np.abs(y - np.floor(y)) - 0.5) <= _TIE_BAND * np.maximum(y, 1.0)
        slow = ~nan & (~(y < _EXACT_LIMIT) | tie)
        ok = ~nan & ~slow
        q = np.where(ok, r, 0).astype(np.int64)
        neg = ok & np.signbit(x)  # "%.1f" % -0.04 == "-0.0"
    else:
        slow = ~nan
        ok = np.zeros_like(nan)
        q = np.zeros(x.shape, dtype=np.int64)
        neg = ok
    scale = 10**decimals
    whole = q // scale
    int_width = max(1, len(str(int(whole.max()))) if whole.size else 1)
    # the few values printed by Python's % (ties, huge values, other formats), as a
    # zero-padded byte matrix in the order of ``out[slow]``
    slow_bytes = np.array([(fmt % v).encode() for v in x[slow].tolist()], dtype=bytes)
    width = 1 + int_width + (1 + decimals if decimals else 0)
    width = max(width, 3, slow_bytes.dtype.itemsize)
    out = np.zeros(x.shape + (width,), dtype=np.uint8)
    out[..., 0] = np.where(neg, _MINUS, 0)
    _digits(whole, int_width, out[..., 1 : 1 + int_width])
    if decimals:
        out[..., 1 + int_width] = _POINT
        frac = out[..., 2 + int_width : 2 + int_width + decimals]
        _digits(q % scale, decimals, frac, leading_zeros=True)
    out[nan | slow] = 0
    out[nan, :3] = _NAN
    if slow_bytes.size:
        k = slow_bytes.dtype.itemsize
        out[slow, :k] = slow_bytes.view(np.uint8).reshape(-1, k)
    return out


def _format_rows(values: np.ndarray, groups: list[tuple[np.ndarray, str, int, str]]) -> bytes:
    n, m = values.shape
    if n == 0:
        return b""
    blocks = [(cols, _format_group(values[:, cols], kind, dec, fmt)) for cols, kind, dec, fmt in groups]
    width = max(b.shape[2] for _, b in blocks) + 1
    lines = np.zeros((n, m, width), dtype=np.uint8)
    for cols, b in blocks:
        lines[:, cols, : b.shape[2]] = b
        lines[:, cols, -1] = _COMMA
    lines[:, -1, -1] = _NEWLINE
    flat = lines.reshape(-1)
    return flat[flat != 0].tobytes()


def _columns_and_blocks(table: TableLike) -> tuple[list[str], Iterator[np.ndarray]]:
    if isinstance(table, FrameTable):
        return list(table.columns), table.blocks()
    return [str(c) for c in table.columns], iter([table.to_numpy(dtype=float)])


def iter_csv_chunks(
    table: TableLike,
    chunk_rows: int = CSV_CHUNK_ROWS,
    formats: dict[str, str] | None = None,
) -> Iterator[bytes]:
    """The CSV of ``table`` as OpenFace writes it, in pieces of ``chunk_rows`` rows
    (the header first).

    Parameters
    ----------
    table : a :class:`FrameTable` or a DataFrame with OpenFace's column names.
    chunk_rows : rows formatted at a time.
    formats : printf formats of some columns instead of ``FeatureExtraction``'s (e.g.
        :data:`FACE_LANDMARK_IMG_FORMATS`).

    Yields
    ------
    bytes, ASCII: the header line, then lines of at most ``chunk_rows`` rows.

    Notes
    -----
    Each value is printed with its column's printf format (OpenFace's ``RecorderCSV``
    precision), byte for byte what ``fmt % value`` gives, and NaN as ``nan``; the digits
    are computed with NumPy for whole blocks of columns instead of one ``%`` per value.
    """
    columns, blocks = _columns_and_blocks(table)
    yield (",".join(columns) + "\n").encode()
    by_format: dict[str, list[int]] = {}
    for j, c in enumerate(columns):
        by_format.setdefault((formats or {}).get(c) or _format_of(c), []).append(j)
    groups = [(np.array(cols, dtype=np.intp), *_spec_of(fmt), fmt) for fmt, cols in by_format.items()]
    for values in blocks:
        for start in range(0, values.shape[0], chunk_rows):
            yield _format_rows(values[start : start + chunk_rows], groups)


def format_csv(table: TableLike, formats: dict[str, str] | None = None) -> bytes:
    """The whole CSV of ``table`` (see :func:`iter_csv_chunks`)."""
    return b"".join(iter_csv_chunks(table, formats=formats))


def write_csv(
    table: TableLike, path: str | os.PathLike, formats: dict[str, str] | None = None
) -> Path:
    """Write ``table`` (a :class:`FrameTable` or a DataFrame) as OpenFace writes its CSV
    (same names, order and precision).

    The file is written next to its target and renamed into place
    (:func:`~pyfaceau.output.atomic.atomic_output`), so an existing file is replaced only
    by a complete one and nothing is left behind on a failure.
    """
    out = Path(path)
    with atomic_output(out, "wb") as f:
        for chunk in iter_csv_chunks(table, formats=formats):
            f.write(chunk)
    return out


def row_keys(table: TableLike) -> set[tuple[int, int]]:
    """The ``(frame, face_id)`` of every row of ``table`` (face 0 without a ``face_id``)."""
    column = table.column if isinstance(table, FrameTable) else (lambda c: table[c].to_numpy())
    frames = np.asarray(column("frame")).astype(np.int64)
    has_ids = "face_id" in list(table.columns)
    ids = np.asarray(column("face_id")).astype(np.int64) if has_ids else np.zeros_like(frames)
    return set(zip(frames.tolist(), ids.tolist()))


def split_csv_paths(base: str | os.PathLike, face_ids: Iterable[int]) -> list[Path]:
    """The per-person CSVs of ``--split``: ``BASE_face0.csv``, ``BASE_face1.csv``, ...
    (``base``'s folder, stem and suffix; ``.csv`` when it has none)."""
    b = Path(base)
    return [b.with_name(f"{b.stem}_face{int(i)}{b.suffix or '.csv'}") for i in face_ids]


def split_csv_base(name: str) -> str | None:
    """The CSV name ``name`` is a per-person CSV of (:func:`split_csv_paths`:
    ``clip_face2.csv`` -> ``clip.csv``), or None."""
    m = re.fullmatch(r"(.+)_face(0|[1-9]\d*)(\.[^.]+)", name)  # as written: no leading 0
    return None if m is None else m.group(1) + m.group(3)


def is_split_csv_of(base: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Whether ``path`` is named as one of ``base``'s per-person CSVs
    (:func:`split_csv_paths`, any face id), in ``base``'s folder."""
    b, p = Path(base), Path(path)
    return (os.path.abspath(p.parent) == os.path.abspath(b.parent)
            and split_csv_base(p.name) == b.stem + (b.suffix or ".csv"))


def write_split_csvs(table: TableLike, base: str | os.PathLike) -> list[Path]:
    """Write one CSV per person (``face_id``) of ``table``, each as :func:`write_csv`
    writes it, named by :func:`split_csv_paths`; returns the paths in ``face_id`` order
    (none for an empty table)."""
    if isinstance(table, FrameTable):  # one face: every row is face 0's
        return [write_csv(table, p) for p in split_csv_paths(base, [0])] if len(table) else []
    groups = list(table.groupby("face_id", sort=True))
    paths = split_csv_paths(base, [face_id for face_id, _ in groups])
    for (_, rows), path in zip(groups, paths):
        write_csv(rows.reset_index(drop=True), path)
    return paths


def remove_stale_split_csvs(base: str | os.PathLike, kept: Iterable[str | os.PathLike]) -> list[Path]:
    """Remove the per-person CSVs named as :func:`split_csv_paths` names them for ``base``
    (``BASE_face<N>.csv``) that are not in ``kept``: an earlier ``--split`` run's people
    that this run did not find, which would otherwise pass for its output. Returns the
    files removed."""
    b = Path(base)
    keep = {os.path.abspath(k) for k in kept}
    removed = []
    for path in sorted(b.parent.glob(f"{glob.escape(b.stem)}_face*")):
        if is_split_csv_of(base, path) and os.path.abspath(path) not in keep and (
            path.is_file() and not path.is_symlink()
        ):
            try:
                path.unlink()
            except OSError:
                continue  # left as it is: not worth failing a finished run
            removed.append(path)
    return removed


#: printf formats where OpenFace's ``FaceLandmarkImg`` writes a column otherwise than
#: ``FeatureExtraction`` (its ``RecorderCSV`` for images): the face index, the confidence
#: with 3 decimals, AU presence with 1.
FACE_LANDMARK_IMG_FORMATS = {"face": "%d", "confidence": "%.3f"} | {
    f"{au}_c": "%.1f" for au in AU_PRESENCE_NAMES
}


def face_landmark_img_table(table: TableLike) -> "pd.DataFrame":
    """A still's table in OpenFace ``FaceLandmarkImg``'s layout (711 columns with the eye
    models): ``face`` (the face's index), ``confidence``, then every column from
    ``gaze_0_x`` on as in the video layout; one row per detected face (the ``success = 0``
    row written when no face is found is left out, as ``FaceLandmarkImg`` writes none).
    Write it with ``formats=FACE_LANDMARK_IMG_FORMATS``.
    """
    import pandas as pd

    rows = face_landmark_img_rows(table)
    rest = list(rows.columns[list(rows.columns).index("success") + 1 :])
    out = pd.DataFrame({"face": rows["face_id"].to_numpy(), "confidence": rows["confidence"].to_numpy()})
    return pd.concat([out, rows[rest].reset_index(drop=True)], axis=1)


def face_landmark_img_rows(table: TableLike) -> "pd.DataFrame":
    """The rows of a still's table (video layout) that ``FaceLandmarkImg`` writes: one per
    detected face with landmarks, not the ``success = 0`` row of an image without one."""
    df = table.to_dataframe() if isinstance(table, FrameTable) else table
    found = (df["success"] == 1) | (df["x_0"] != 0) if "x_0" in df else df["success"] == 1
    return df[found.to_numpy()]
