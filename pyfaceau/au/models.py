"""OpenFace 2.2's linear AU models: loading and prediction.

OpenFace (``FaceAnalyser::Read`` / ``ReadAU`` / ``ReadRegressor``,
``FaceAnalyser/src/FaceAnalyser.cpp``) reads a main file (``main_dynamic_svms.txt`` by
default, ``main_static_svms.txt`` with ``-au_static`` and for images), which names an AU
list (``AU_all_best.txt`` / ``AU_all_static.txt``), which names one binary predictor per
AU. Predictors of one kind are stacked into one matrix product (``SVR_*_lin_regressors``,
``SVM_*_lin``): for a row descriptor ``x = [hog (4464), geometry (238)]``

- static: ``(x - means) @ support_vectors + biases``;
- dynamic: ``(x - means - running_median) @ support_vectors + biases``;
- SVMs output ``pos_class`` where the decision value is ``> 0``, else ``neg_class``.

Each kind keeps the means of the first file read (OpenFace only warns when a later file's
differ). Outputs are returned in OpenFace's CSV column order: names sorted (``AU01`` ..
``AU45``), 17 intensities and 18 presences (``AU28`` has no intensity model).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import InputError, ModelFileError
from ..modelstore.store import MANIFEST, ModelsArg, resolve, verify_file
from ..parsers.au_models import (
    SVM_DYNAMIC,
    SVM_STATIC,
    SVR_DYNAMIC,
    SVR_STATIC,
    AUPredictorFile,
    read_au_list,
    read_au_predictor,
    read_main_au_file,
)

__all__ = [
    "MAIN_DYNAMIC",
    "MAIN_STATIC",
    "LinearAUGroup",
    "AUModels",
    "load_au_models",
]

logger = logging.getLogger(__name__)

#: Default main file for videos (``FaceAnalyserParameters::init``, FaceAnalyserParameters.cpp).
#: Descriptor length OpenFace's AU models read: the 112x112 aligned face's FHOG
#: (12 x 12 cells x 31) and the 68-point geometry descriptor (3 * 68 + 34).
DESCRIPTOR_LENGTH = 12 * 12 * 31 + 3 * 68 + 34
_AU_NAME = re.compile(r"AU\d\d")

MAIN_DYNAMIC = "AU_predictors/main_dynamic_svms.txt"
#: Main file with ``-au_static`` and for images (FaceAnalyserParameters.cpp).
MAIN_STATIC = "AU_predictors/main_static_svms.txt"

#: The model folders (:data:`pyfaceau.modelstore.ModelsArg`), or a resolver ``relpath -> Path``.
AUModelsArg = ModelsArg | Callable[[str], Path]


@dataclass(frozen=True)
class LinearAUGroup:
    """All predictors of one kind, stacked (one OpenFace ``SVR_*`` / ``SVM_*`` object).

    Attributes
    ----------
    kind : ``"svr_static"``, ``"svr_dynamic"``, ``"svm_static"`` or ``"svm_dynamic"``.
    names : (k,) AU names, in list order.
    means : (D,) float64, the first file's means (zeros when k == 0).
    support_vectors : (D, k) float64.
    biases : (k,) float64.
    cutoffs : (k,) float64 (dynamic SVRs; NaN otherwise).
    pos_class, neg_class : (k,) float64 (SVMs; NaN otherwise).
    paths : the files read.
    """

    kind: str
    names: tuple[str, ...]
    means: np.ndarray
    support_vectors: np.ndarray
    biases: np.ndarray
    cutoffs: np.ndarray
    pos_class: np.ndarray
    neg_class: np.ndarray
    paths: tuple[Path, ...] = field(default=())

    @property
    def size(self) -> int:
        """Number of outputs ``k``."""
        return len(self.names)

    @property
    def dynamic(self) -> bool:
        return self.kind.endswith("dynamic")

    @property
    def svm(self) -> bool:
        return self.kind.startswith("svm")


def _stack(kind: str, files: list[AUPredictorFile], n_features: int) -> LinearAUGroup:
    k = len(files)
    names: list[str] = []
    for f in files:
        names.extend(f.names)
    if k == 0:
        empty = np.zeros(0, dtype=np.float64)
        return LinearAUGroup(
            kind=kind,
            names=(),
            means=np.zeros(n_features),
            support_vectors=np.zeros((n_features, 0)),
            biases=empty,
            cutoffs=empty,
            pos_class=empty,
            neg_class=empty,
        )
    means = files[0].means
    for f in files[1:]:
        if not np.array_equal(f.means, means):
            # OpenFace prints "Something went wrong ..." and keeps the first means.
            logger.warning("%s: means differ from %s; using the first (as OpenFace)",
                           f.path, files[0].path)
    nan = np.full(k, np.nan)
    cut = np.array([f.cutoff for f in files], dtype=np.float64) if kind == "svr_dynamic" else nan
    pos = np.array([f.pos_class for f in files], dtype=np.float64) if kind.startswith("svm") else nan
    neg = np.array([f.neg_class for f in files], dtype=np.float64) if kind.startswith("svm") else nan
    sv = np.ascontiguousarray(np.concatenate([f.support_vectors for f in files], axis=1))
    for a in (means, sv, cut, pos, neg):
        a.setflags(write=False)
    biases = np.concatenate([f.bias for f in files])
    biases.setflags(write=False)
    return LinearAUGroup(
        kind=kind,
        names=tuple(names),
        means=means,
        support_vectors=sv,
        biases=biases,
        cutoffs=cut,
        pos_class=pos,
        neg_class=neg,
        paths=tuple(f.path for f in files),
    )


@dataclass(frozen=True)
class AUModels:
    """OpenFace's AU predictors, ready to predict in CSV column order.

    Attributes
    ----------
    svr_static, svr_dynamic, svm_static, svm_dynamic : the four stacked groups.
    intensity_names : sorted names of the intensity outputs (17 by default, ``AU01``...).
    presence_names : sorted names of the presence outputs (18, with ``AU28``).
    dynamic : OpenFace's ``dynamic`` flag: offline re-prediction with the final medians
        and the cut-off shift (True for ``main_dynamic_svms.txt``).
    n_features : descriptor length D (4702 = 4464 HOG + 238 geometry).
    main_file : the main file read.
    pdm_path, triangulation_path : the other files the main file names.
    """

    svr_static: LinearAUGroup
    svr_dynamic: LinearAUGroup
    svm_static: LinearAUGroup
    svm_dynamic: LinearAUGroup
    intensity_names: tuple[str, ...]
    presence_names: tuple[str, ...]
    dynamic: bool
    n_features: int
    main_file: Path | None = None
    pdm_path: Path | None = None
    triangulation_path: Path | None = None

    def __post_init__(self) -> None:
        reg = self.svr_static.names + self.svr_dynamic.names
        cls = self.svm_static.names + self.svm_dynamic.names
        object.__setattr__(self, "_reg_order", np.argsort(np.array(reg, dtype=object), kind="stable"))
        object.__setattr__(self, "_cls_order", np.argsort(np.array(cls, dtype=object), kind="stable"))
        cut = np.concatenate([self.svr_static.cutoffs, self.svr_dynamic.cutoffs])
        ic = cut[self._reg_order] if len(cut) else cut
        ic.setflags(write=False)
        object.__setattr__(self, "intensity_cutoffs", ic)
        dyn = np.array([False] * self.svr_static.size + [True] * self.svr_dynamic.size)
        object.__setattr__(self, "intensity_is_dynamic", dyn[self._reg_order] if len(dyn) else dyn)
        dync = np.array([False] * self.svm_static.size + [True] * self.svm_dynamic.size)
        object.__setattr__(self, "presence_is_dynamic", dync[self._cls_order] if len(dync) else dync)
        self._blocks()  # build the merged products once

    #: (n_intensity,) cut-offs in ``intensity_names`` order (NaN: static model).
    intensity_cutoffs: np.ndarray = field(init=False, repr=False)
    #: (n_intensity,) bool, dynamic intensity models.
    intensity_is_dynamic: np.ndarray = field(init=False, repr=False)
    #: (n_presence,) bool, dynamic presence models.
    presence_is_dynamic: np.ndarray = field(init=False, repr=False)

    @property
    def has_dynamic(self) -> bool:
        """True if any model needs the running medians."""
        return self.svr_dynamic.size > 0 or self.svm_dynamic.size > 0

    def _check(self, features: np.ndarray, median: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        x = np.asarray(features, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise InputError(
                f"AU models: features must be (N, {self.n_features}), got {np.shape(features)}"
            )
        m = None
        if median is not None:
            m = np.asarray(median, dtype=np.float64).reshape(-1)
            if m.shape[0] != self.n_features:
                raise InputError(
                    f"AU models: median must have {self.n_features} values, got {m.shape[0]}"
                )
        return x, m

    def _blocks(self) -> list[tuple[np.ndarray, bool, np.ndarray, np.ndarray, list[tuple[str, int, int]]]]:
        """Groups sharing means and centring, merged into one product each.

        Returns a list of ``(means, dynamic, W (D, k), b (k,), parts)`` where ``parts``
        names the group of each column range. OpenFace's groups all have the same means,
        so static SVR + SVM and dynamic SVR + SVM each become one product.
        """
        cached = self.__dict__.get("_block_cache")
        if cached is not None:
            return cached
        blocks: list = []
        for groups in ((self.svr_static, self.svm_static), (self.svr_dynamic, self.svm_dynamic)):
            live = [g for g in groups if g.size]
            if not live:
                continue
            if len(live) == 2 and not np.array_equal(live[0].means, live[1].means):
                split = [[g] for g in live]
            else:
                split = [live]
            for members in split:
                w = np.ascontiguousarray(np.concatenate([g.support_vectors for g in members], axis=1))
                b = np.concatenate([g.biases for g in members])
                parts, start = [], 0
                for g in members:
                    parts.append((g.kind, start, start + g.size))
                    start += g.size
                blocks.append((members[0].means, members[0].dynamic, w, b, parts))
        object.__setattr__(self, "_block_cache", blocks)
        return blocks

    def predict(
        self, features: np.ndarray, median: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Raw intensities and presence values of OpenFace's linear models.

        ``PredictCurrentAUs`` and ``PredictCurrentAUsClass``: for each descriptor row
        ``x``, static models use ``(x - means) @ SV + b``, dynamic ones
        ``(x - means - median) @ SV + b``; SVMs then give ``pos_class`` where the value is
        ``> 0`` and ``neg_class`` otherwise. Intensities are not clipped.

        Parameters
        ----------
        features : (N, D) or (D,) float64 descriptors ``[hog, geometry]``.
        median : (D,) float64 ``[hog median, geometry median]`` (needed by dynamic models).

        Returns
        -------
        intensity : (N, n_intensity) float64 in ``intensity_names`` order.
        presence : (N, n_presence) float64 in ``presence_names`` order.
        """
        x, m = self._check(features, median)
        out: dict[str, np.ndarray] = {}
        for means, dynamic, w, b, parts in self._blocks():
            xc = x - means[None, :]
            if dynamic:
                if m is None:
                    raise InputError("AU models: the dynamic models need the running median")
                xc -= m[None, :]
            d = xc @ w + b[None, :]
            for kind, s, e in parts:
                out[kind] = d[:, s:e]
        n = x.shape[0]
        reg = [out[k] for k in ("svr_static", "svr_dynamic") if k in out]
        cls = []
        for g in (self.svm_static, self.svm_dynamic):
            if g.kind in out:
                cls.append(np.where(out[g.kind] > 0, g.pos_class[None, :], g.neg_class[None, :]))
        intensity = np.concatenate(reg, axis=1)[:, self._reg_order] if reg else np.zeros((n, 0))
        presence = np.concatenate(cls, axis=1)[:, self._cls_order] if cls else np.zeros((n, 0))
        return intensity, presence

    def predict_intensity(self, features: np.ndarray, median: np.ndarray | None = None) -> np.ndarray:
        """Raw intensities only; see :meth:`predict`. (N, n_intensity) float64."""
        return self.predict(features, median)[0]

    def predict_presence(self, features: np.ndarray, median: np.ndarray | None = None) -> np.ndarray:
        """Presence values only; see :meth:`predict`. (N, n_presence) float64."""
        return self.predict(features, median)[1]


def _verified_path(path: Path, models_root: Path | None) -> Path:
    """Check a referenced file against the manifest when it is a known model file."""
    if not path.is_file():
        raise ModelFileError(f"{path}: AU model file not found (named by its AU list)")
    if models_root is not None:
        try:
            rel = path.resolve().relative_to(models_root.resolve()).as_posix()
        except ValueError:
            rel = None
        if rel is not None and rel in MANIFEST:
            verify_file(path, MANIFEST[rel])
    return path


def load_au_models(
    models: AUModelsArg = None,
    *,
    dynamic: bool = True,
    main_file: str | os.PathLike | None = None,
) -> AUModels:
    """Load OpenFace's AU models as FeatureExtraction does.

    Parameters
    ----------
    models : where to find the model files: a folder, an ``os.pathsep``-separated string
        or a list of folders (searched before ``$PYFACEAU_MODELS`` and the user data
        folder, see :func:`pyfaceau.modelstore.resolve`), or a callable ``relpath -> Path``.
    dynamic : True (default, OpenFace's default for videos): ``main_dynamic_svms.txt``
        (``AU_all_best.txt``, static and dynamic models) with the offline
        re-prediction and cut-off shift; False: ``main_static_svms.txt``
        (``AU_all_static.txt``), as OpenFace's ``-au_static`` and image mode.
    main_file : read this main file instead (a custom model set); ``dynamic`` then only
        sets the post-processing flag.

    Returns
    -------
    AUModels

    Raises
    ------
    ModelFileError
        If a file is missing, altered (checksum) or not in OpenFace's format, an AU is
        predicted twice, or the predictors disagree on the descriptor length.
    """
    models_root: Path | None = None
    if main_file is not None:
        main_path = Path(main_file)
    else:
        rel = MAIN_DYNAMIC if dynamic else MAIN_STATIC
        main_path = Path(models(rel)) if callable(models) else resolve(rel, models)
        # the folder the manifest paths are relative to, for checking referenced files
        models_root = main_path.parents[len(Path(rel).parts) - 1]
    main = read_main_au_file(main_path)
    by_marker: dict[int, list[AUPredictorFile]] = {
        SVR_STATIC: [], SVR_DYNAMIC: [], SVM_STATIC: [], SVM_DYNAMIC: []
    }
    for list_path in main.au_lists:
        for entry in read_au_list(_verified_path(list_path, models_root)):
            pred = read_au_predictor(_verified_path(entry.location, models_root), entry.names)
            by_marker[pred.marker].append(pred)
    all_preds = [p for v in by_marker.values() for p in v]
    dims = {p.means.shape[0] for p in all_preds}
    if len(dims) != 1:
        raise ModelFileError(
            f"{main_path}: the AU predictors disagree on the descriptor length ({sorted(dims)})"
        )
    n_features = dims.pop()
    if n_features != DESCRIPTOR_LENGTH:
        raise ModelFileError(
            f"{main_path}: the AU predictors expect {n_features}-value descriptors; pyfaceau "
            f"computes OpenFace's {DESCRIPTOR_LENGTH} (112x112 FHOG + 68-point geometry)"
        )
    for kinds, what in (((SVR_STATIC, SVR_DYNAMIC), "intensity"), ((SVM_STATIC, SVM_DYNAMIC), "presence")):
        seen: dict[str, Path] = {}
        for kind in kinds:
            for p in by_marker[kind]:
                for name in p.names:
                    if name in seen:
                        raise ModelFileError(
                            f"{p.path}: {what} of {name} is also predicted by {seen[name]}"
                        )
                    seen[name] = p.path
    groups = {
        kind: _stack(name, by_marker[kind], n_features)
        for kind, name in (
            (SVR_STATIC, "svr_static"),
            (SVR_DYNAMIC, "svr_dynamic"),
            (SVM_STATIC, "svm_static"),
            (SVM_DYNAMIC, "svm_dynamic"),
        )
    }
    reg_names = tuple(sorted(groups[SVR_STATIC].names + groups[SVR_DYNAMIC].names))
    cls_names = tuple(sorted(groups[SVM_STATIC].names + groups[SVM_DYNAMIC].names))
    odd = [n for n in reg_names + cls_names if not _AU_NAME.fullmatch(n)]
    if odd:
        raise ModelFileError(
            f"{main_path}: AU names must look like AU01 (OpenFace's CSV columns), found {odd[0]!r}"
        )
    if not reg_names and not cls_names:
        raise ModelFileError(f"{main_path}: no AU predictor found")
    return AUModels(
        svr_static=groups[SVR_STATIC],
        svr_dynamic=groups[SVR_DYNAMIC],
        svm_static=groups[SVM_STATIC],
        svm_dynamic=groups[SVM_DYNAMIC],
        intensity_names=reg_names,
        presence_names=cls_names,
        dynamic=bool(dynamic),
        n_features=n_features,
        main_file=main.path,
        pdm_path=main.pdm,
        triangulation_path=main.triangulation,
    )
