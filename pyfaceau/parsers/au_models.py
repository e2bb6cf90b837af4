"""Readers of OpenFace 2.2's Action Unit model files.

Three kinds of file (``FaceAnalyser/src/FaceAnalyser.cpp``: ``Read``, ``ReadAU``,
``ReadRegressor``; ``SVR_static_lin_regressors.cpp``, ``SVR_dynamic_lin_regressors.cpp``,
``SVM_static_lin.cpp``, ``SVM_dynamic_lin.cpp``: ``Read``):

1. The *main* file (``main_dynamic_svms.txt``, ``main_static_svms.txt``): one
   ``Module location`` pair per line, modules ``AUPredictor`` (an AU list), ``PDM`` and
   ``Triangulation``; locations are relative to the main file's folder.
2. The *AU list* (``AU_all_best.txt``, ``AU_all_static.txt``): one ``location names`` pair
   per line, ``names`` a comma-separated list of AU names (``AU01``) the predictor
   produces; locations are relative to the list's folder.
3. The binary *predictor* files: an int32 marker (OpenFace's ``RegressorType``) then

   - ``0`` SVR, static: means (``ReadMatBin``), support vectors (``ReadMatBin``), float64
     bias;
   - ``1`` SVR, dynamic: float64 cut-off, means, support vectors, float64 bias;
   - ``4`` SVM, static / ``5`` SVM, dynamic: means, support vectors, float64 bias, float64
     positive-class value, float64 negative-class value.

   ``ReadMatBin`` is int32 rows, int32 cols, int32 OpenCV type, then row-major values;
   means are ``(1, D)`` and support vectors ``(D, 1)``, both ``CV_64F``.

Every reader is strict: an unknown module or marker, a short read, trailing data, a
non-float64 matrix or a shape mismatch raises :class:`~pyfaceau.errors.ModelFileError`
naming the file. (OpenFace silently skips unknown markers and reads past the end.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelFileError
from ._matrix import BinaryReader

__all__ = [
    "SVR_STATIC",
    "SVR_DYNAMIC",
    "SVM_STATIC",
    "SVM_DYNAMIC",
    "PREDICTOR_KINDS",
    "MainAUFile",
    "AUListEntry",
    "AUPredictorFile",
    "read_main_au_file",
    "read_au_list",
    "read_au_predictor",
]

#: ``RegressorType`` markers (``FaceAnalyser.h``): ``SVR_appearance_static_linear``.
SVR_STATIC = 0
#: ``SVR_appearance_dynamic_linear`` (``FaceAnalyser.h``).
SVR_DYNAMIC = 1
#: ``SVM_linear_stat`` (``FaceAnalyser.h``).
SVM_STATIC = 4
#: ``SVM_linear_dyn`` (``FaceAnalyser.h``).
SVM_DYNAMIC = 5

#: Marker -> short name of the predictor kind.
PREDICTOR_KINDS: dict[int, str] = {
    SVR_STATIC: "svr_static",
    SVR_DYNAMIC: "svr_dynamic",
    SVM_STATIC: "svm_static",
    SVM_DYNAMIC: "svm_dynamic",
}

_MAIN_MODULES = ("AUPredictor", "PDM", "Triangulation")
_CV_64F = 6


@dataclass(frozen=True)
class MainAUFile:
    """Content of a main AU file (``FaceAnalyser::Read``).

    Attributes
    ----------
    au_lists : absolute paths of the AU lists (``AUPredictor`` lines), in file order.
    pdm : path of the PDM (``PDM`` line), or None.
    triangulation : path of the triangulation (``Triangulation`` line), or None.
    path : the file read.
    """

    au_lists: tuple[Path, ...]
    pdm: Path | None
    triangulation: Path | None
    path: Path


@dataclass(frozen=True)
class AUListEntry:
    """One line of an AU list (``FaceAnalyser::ReadAU``).

    Attributes
    ----------
    location : the predictor file, resolved against the list's folder.
    relpath : the location as written in the list (``/``-separated).
    names : AU names the predictor produces, e.g. ``("AU01",)``.
    """

    location: Path
    relpath: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class AUPredictorFile:
    """One binary linear AU predictor (SVR or SVM, static or dynamic).

    Attributes
    ----------
    marker : OpenFace's ``RegressorType`` (0, 1, 4 or 5).
    kind : ``"svr_static"``, ``"svr_dynamic"``, ``"svm_static"`` or ``"svm_dynamic"``.
    means : (D,) float64, the feature means subtracted before the product.
    support_vectors : (D, k) float64, one column per output (k = 1 in OpenFace's files).
    bias : (k,) float64.
    cutoff : dynamic SVR only: the fraction of frames assumed neutral for the offline
        shift (``-1`` means no shift); None for the other kinds.
    pos_class, neg_class : SVM only: the values output when the decision value is
        ``> 0`` / ``<= 0``; None for SVRs.
    names : AU names this predictor produces (from the list line).
    path : the file read.
    """

    marker: int
    kind: str
    means: np.ndarray
    support_vectors: np.ndarray
    bias: np.ndarray
    cutoff: float | None
    pos_class: float | None
    neg_class: float | None
    names: tuple[str, ...]
    path: Path

    @property
    def is_dynamic(self) -> bool:
        """True for the person-normalised (running-median) predictors."""
        return self.marker in (SVR_DYNAMIC, SVM_DYNAMIC)

    @property
    def is_svm(self) -> bool:
        """True for presence classifiers, False for intensity regressors."""
        return self.marker in (SVM_STATIC, SVM_DYNAMIC)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="latin-1")
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot be read ({exc.strerror})") from exc


def read_main_au_file(path: str | Path) -> MainAUFile:
    """Read a main AU file such as ``main_dynamic_svms.txt``.

    Parameters
    ----------
    path : the file.

    Returns
    -------
    MainAUFile with the referenced paths resolved against the file's folder.

    Raises
    ------
    ModelFileError
        If the file cannot be read, a line is not ``Module location``, a module is not
        one of ``AUPredictor``, ``PDM``, ``Triangulation``, or there is no AU list.
    """
    p = Path(path)
    root = p.parent
    lists: list[Path] = []
    pdm: Path | None = None
    tri: Path | None = None
    for lineno, line in enumerate(_read_text(p).splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise ModelFileError(
                f"{p}: line {lineno} must be 'Module location', found {line.strip()!r}"
            )
        module, location = parts
        if module not in _MAIN_MODULES:
            raise ModelFileError(
                f"{p}: line {lineno}: unknown module '{module}' "
                f"(expected one of {', '.join(_MAIN_MODULES)}; not an OpenFace AU main file?)"
            )
        full = root / location
        if module == "AUPredictor":
            lists.append(full)
        elif module == "PDM":
            pdm = full
        else:
            tri = full
    if not lists:
        raise ModelFileError(f"{p}: no 'AUPredictor' line (not an OpenFace AU main file?)")
    return MainAUFile(au_lists=tuple(lists), pdm=pdm, triangulation=tri, path=p)


def read_au_list(path: str | Path) -> list[AUListEntry]:
    """Read an AU list such as ``AU_all_best.txt``.

    Parameters
    ----------
    path : the file.

    Returns
    -------
    One entry per non-blank line, in file order.

    Raises
    ------
    ModelFileError
        If the file cannot be read, a line has no AU name, a name is empty, or the list
        is empty.
    """
    p = Path(path)
    root = p.parent
    entries: list[AUListEntry] = []
    for lineno, line in enumerate(_read_text(p).splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        # OpenFace: the location is the first token, the names everything after the
        # first space, split at commas.
        parts = stripped.split(maxsplit=1)
        if len(parts) != 2:
            raise ModelFileError(
                f"{p}: line {lineno} must be 'location AUxx[,AUyy...]', found {stripped!r}"
            )
        location, names_text = parts
        names = tuple(n.strip() for n in names_text.split(","))
        if any(not n or " " in n for n in names):
            raise ModelFileError(f"{p}: line {lineno}: bad AU name list {names_text!r}")
        entries.append(AUListEntry(location=root / location, relpath=location, names=names))
    if not entries:
        raise ModelFileError(f"{p}: empty AU list")
    return entries


def _mat64(reader: BinaryReader, what: str) -> np.ndarray:
    start = reader.tell()
    rows, cols, cv_type = (int(v) for v in reader.scalars("<i4", 3))
    if cv_type != _CV_64F or rows <= 0 or cols <= 0 or rows * cols > 1 << 26:
        raise ModelFileError(
            f"{reader.path}: bad {what} matrix header at byte {start} "
            f"({rows} x {cols}, type {cv_type}; expected a CV_64F matrix)"
        )
    return reader.scalars("<f8", rows * cols).reshape(rows, cols)


def read_au_predictor(path: str | Path, names: tuple[str, ...] | list[str]) -> AUPredictorFile:
    """Read one binary AU predictor (``FaceAnalyser::ReadRegressor`` and the ``Read`` s).

    Parameters
    ----------
    path : the ``.dat`` file.
    names : the AU names the list gives for it (one per support-vector column).

    Returns
    -------
    AUPredictorFile, arrays float64.

    Raises
    ------
    ModelFileError
        On an unknown marker, a short read, trailing bytes, a non-``CV_64F`` matrix, means
        not ``(1, D)``, support vectors not ``(D, k)`` with ``k == len(names)``, or
        non-finite values.
    """
    reader = BinaryReader(path)
    p = reader.path
    names = tuple(names)
    marker = reader.int32()
    if marker not in PREDICTOR_KINDS:
        raise ModelFileError(
            f"{p}: unknown predictor marker {marker} (expected one of "
            f"{sorted(PREDICTOR_KINDS)}; not an OpenFace AU predictor?)"
        )
    cutoff: float | None = None
    if marker == SVR_DYNAMIC:
        cutoff = reader.float64()
    means = _mat64(reader, "means")
    svs = _mat64(reader, "support vector")
    bias = reader.float64()
    pos_class: float | None = None
    neg_class: float | None = None
    if marker in (SVM_STATIC, SVM_DYNAMIC):
        pos_class = reader.float64()
        neg_class = reader.float64()
    if not reader.at_end():
        raise ModelFileError(
            f"{p}: unexpected data after the predictor at byte {reader.tell()} "
            "(not an OpenFace AU predictor?)"
        )
    if means.shape[0] != 1:
        raise ModelFileError(f"{p}: means must be (1, D), found {means.shape}")
    d = means.shape[1]
    if svs.shape[0] != d:
        raise ModelFileError(
            f"{p}: support vectors must be ({d}, k) to match the means, found {svs.shape}"
        )
    if svs.shape[1] != len(names):
        raise ModelFileError(
            f"{p}: {svs.shape[1]} output(s) but the AU list names {len(names)} ({names})"
        )
    if svs.shape[1] != 1:
        # OpenFace keeps one bias per file, so only single-output predictors are valid.
        raise ModelFileError(f"{p}: expected one support-vector column, found {svs.shape[1]}")
    scalars = [bias] + [v for v in (cutoff, pos_class, neg_class) if v is not None]
    if not (np.isfinite(means).all() and np.isfinite(svs).all() and np.isfinite(scalars).all()):
        raise ModelFileError(f"{p}: non-finite value in the predictor")
    return AUPredictorFile(
        marker=marker,
        kind=PREDICTOR_KINDS[marker],
        means=np.ascontiguousarray(means.reshape(d)),
        support_vectors=np.ascontiguousarray(svs),
        bias=np.array([bias], dtype=np.float64),
        cutoff=cutoff,
        pos_class=pos_class,
        neg_class=neg_class,
        names=names,
        path=p,
    )
