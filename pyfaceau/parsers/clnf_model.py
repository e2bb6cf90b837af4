"""OpenFace's CLNF model description files (plain text, one module per line).

Two kinds, as read by ``CLNF::Read`` and ``CLNF::Read_CLNF``
(``LandmarkDetector/src/LandmarkDetectorModel.cpp``):

* a *main* file (``main_clnf_general.txt``, ``model_inner/main_clnf_inner.txt`` ...)::

      LandmarkDetector clnf_general.txt
      LandmarkDetector_part model_inner/main_clnf_inner.txt inner 17 0 18 1 ...
      FaceDetConversion haarAlign.txt
      DetectionValidator detection_validation/validator_cnn.txt

  ``LandmarkDetector_part LOCATION NAME (index_in_main index_in_part)*`` adds a
  hierarchical part model (itself a main file) and the landmark correspondence.

* a *CLNF* file (``clnf_general.txt``)::

      PDM pdms/In-the-wild_aligned_PDM_68.txt
      Triangulations tris_68.txt
      PatchesCCNF patch_experts/ccnf_patches_0.25_general.txt   (one line per scale)

Locations are relative to the folder of the file that names them; the readers return
them joined with that folder as ``/``-separated relative paths (the form
:func:`pyfaceau.modelstore.resolve` takes) when the file is given by such a path.

OpenFace silently skips lines it does not know; these readers raise
:class:`~pyfaceau.errors.ModelFileError` instead, naming the file and the line.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelFileError

__all__ = ["PartModelSpec", "MainModelSpec", "CLNFSpec", "read_main_model", "read_clnf_spec"]

_MAIN_MODULES = (
    "LandmarkDetector",
    "LandmarkDetector_part",
    "FaceDetConversion",
    "DetectionValidator",
)
_CLNF_MODULES = (
    "PDM",
    "Triangulations",
    "PatchesIntensity",
    "PatchesCCNF",
    "PatchesCEN",
    "EarlyTermination",
)


@dataclass(frozen=True)
class PartModelSpec:
    """A hierarchical part model line of a main file.

    Attributes
    ----------
    location : the part's own main file (relative path, see module notes).
    name : the part's name (``inner``, ``left_eye_28``, ``right_eye_28`` ...); OpenFace
        picks the part's fitting parameters by this name.
    mapping : (k, 2) int64, rows ``(index in the main model, index in the part model)``.
    """

    location: str
    name: str
    mapping: np.ndarray


@dataclass(frozen=True)
class MainModelSpec:
    """The content of a main model file.

    Attributes
    ----------
    path : the file read.
    landmark_detector : the CLNF file (PDM and patch experts).
    parts : the hierarchical part models, in file order.
    face_det_conversion : the ``FaceDetConversion`` file, if named (unused by OpenFace 2.2).
    validator : the ``DetectionValidator`` file, if named.
    """

    path: Path
    landmark_detector: str
    parts: tuple[PartModelSpec, ...] = ()
    face_det_conversion: str | None = None
    validator: str | None = None


@dataclass(frozen=True)
class CLNFSpec:
    """The content of a CLNF file.

    Attributes
    ----------
    path : the file read.
    pdm : the PDM file.
    triangulations : the triangulation file, if named.
    ccnf_patches : CCNF patch expert files, one per scale, in file (scale) order.
    svr_patches, cen_patches : other patch expert kinds (not used by the CLNF model).
    early_termination : CE-CLM early termination file, if named.
    """

    path: Path
    pdm: str
    triangulations: str | None = None
    ccnf_patches: tuple[str, ...] = ()
    svr_patches: tuple[str, ...] = ()
    cen_patches: tuple[str, ...] = ()
    early_termination: str | None = None


def _lines(path: Path) -> list[tuple[int, list[str]]]:
    try:
        text = path.read_text(encoding="latin-1")
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot be read ({exc.strerror})") from exc
    out = []
    for no, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if tokens and not tokens[0].startswith("#"):
            out.append((no, tokens))
    return out


def _join(base: str, location: str) -> str:
    """``location`` relative to the folder of ``base`` (``/``-separated, normalised)."""
    return posixpath.normpath(posixpath.join(posixpath.dirname(base), location))


def _base(path: str | Path, relpath: str | None) -> tuple[Path, str]:
    p = Path(path)
    return p, (relpath if relpath is not None else p.as_posix())


def read_main_model(path: str | Path, relpath: str | None = None) -> MainModelSpec:
    """Read a main model file (``main_clnf_general.txt`` ...).

    Parameters
    ----------
    path : the file on disk.
    relpath : its manifest path (e.g. ``"model/main_clnf_general.txt"``); locations in
        the result are joined to its folder. Default: ``path`` itself.

    Returns
    -------
    MainModelSpec

    Raises
    ------
    ModelFileError
        On an unknown module, a missing location, a malformed part mapping, or no
        ``LandmarkDetector`` line.
    """
    p, base = _base(path, relpath)
    detector: str | None = None
    parts: list[PartModelSpec] = []
    conversion: str | None = None
    validator: str | None = None
    for no, tokens in _lines(p):
        module = tokens[0]
        if module not in _MAIN_MODULES:
            raise ModelFileError(f"{p}: line {no}: unknown module '{module}'")
        if len(tokens) < 2:
            raise ModelFileError(f"{p}: line {no}: '{module}' without a location")
        loc = _join(base, tokens[1])
        if module == "LandmarkDetector":
            if len(tokens) != 2:
                raise ModelFileError(f"{p}: line {no}: unexpected values after the location")
            detector = loc
        elif module == "LandmarkDetector_part":
            if len(tokens) < 3:
                raise ModelFileError(f"{p}: line {no}: part model without a name")
            values = tokens[3:]
            if len(values) == 0 or len(values) % 2:
                raise ModelFileError(
                    f"{p}: line {no}: the landmark mapping must be pairs of indices"
                )
            try:
                mapping = np.array([int(v) for v in values], dtype=np.int64).reshape(-1, 2)
            except ValueError:
                raise ModelFileError(f"{p}: line {no}: non-integer landmark index") from None
            if (mapping < 0).any():
                raise ModelFileError(f"{p}: line {no}: negative landmark index")
            parts.append(PartModelSpec(location=loc, name=tokens[2], mapping=mapping))
        elif module == "FaceDetConversion":
            conversion = loc
        else:
            validator = loc
    if detector is None:
        raise ModelFileError(f"{p}: no 'LandmarkDetector' line (not a main model file?)")
    return MainModelSpec(
        path=p,
        landmark_detector=detector,
        parts=tuple(parts),
        face_det_conversion=conversion,
        validator=validator,
    )


def read_clnf_spec(path: str | Path, relpath: str | None = None) -> CLNFSpec:
    """Read a CLNF file (``clnf_general.txt`` ...).

    Parameters
    ----------
    path : the file on disk.
    relpath : its manifest path (e.g. ``"model/clnf_general.txt"``); locations in the
        result are joined to its folder. Default: ``path`` itself.

    Returns
    -------
    CLNFSpec

    Raises
    ------
    ModelFileError
        On an unknown module, a line that is not ``MODULE LOCATION``, or no ``PDM``.
    """
    p, base = _base(path, relpath)
    found: dict[str, list[str]] = {m: [] for m in _CLNF_MODULES}
    for no, tokens in _lines(p):
        module = tokens[0]
        if module not in _CLNF_MODULES:
            raise ModelFileError(f"{p}: line {no}: unknown module '{module}'")
        if len(tokens) != 2:
            raise ModelFileError(f"{p}: line {no}: expected '{module} LOCATION'")
        found[module].append(_join(base, tokens[1]))
    for single in ("PDM", "Triangulations", "EarlyTermination"):
        if len(found[single]) > 1:
            raise ModelFileError(f"{p}: '{single}' named more than once")
    if not found["PDM"]:
        raise ModelFileError(f"{p}: no 'PDM' line (not a CLNF model file?)")
    return CLNFSpec(
        path=p,
        pdm=found["PDM"][0],
        triangulations=(found["Triangulations"] or [None])[0],
        ccnf_patches=tuple(found["PatchesCCNF"]),
        svr_patches=tuple(found["PatchesIntensity"]),
        cen_patches=tuple(found["PatchesCEN"]),
        early_termination=(found["EarlyTermination"] or [None])[0],
    )
