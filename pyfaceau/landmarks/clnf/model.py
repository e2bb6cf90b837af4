"""OpenFace's CLNF landmark model: main face model plus hierarchical part models.

Mirrors ``CLNF::Read`` and ``CLNF::DetectLandmarks``
(``LandmarkDetector/src/LandmarkDetectorModel.cpp``) for the CLNF model OpenFace 2.2's
FeatureExtraction runs with ``-mloc model/main_clnf_general.txt``:

1. the main 68-point model is fitted over its scales (:func:`fitting.fit_scales`);
2. if ``refine_hierarchical`` (OpenFace's default) and the face is large enough
   (``scale > 0.9 * part patch_scaling[0]``), each part model -- the 51-point inner
   face and the two 28-point eye models (``left_eye_28``, ``right_eye_28``) -- is
   initialised by ``CalcParams`` from the main model's landmarks and fitted with its own
   parameters;
3. the parts' landmarks are written back into the 68 (inner face first, then the eyes,
   which overwrite points 36-47), the main PDM is refitted to the 68 points
   (``CalcParams``) and the final landmarks are its projection.

So with OpenFace's default settings the eye models *do* change the 68 landmarks (and
through ``CalcParams`` every one of them), independently of gaze tracking: gaze only
reads the eye models' landmarks afterwards (FeatureExtraction always loads them; the
``eye_lmk_*`` columns are the two eye models' 28 + 28 landmarks). This happens only for
faces with a PDM scale above 0.9 (a face roughly 150 px or more across); smaller faces
keep the main fit, and their part landmarks are the part PDMs fitted to the 68.

Notes
-----
Matches OpenFace in order of operations and float32 precision (measured: landmarks and
eye landmarks within 0.04-0.05 px mean of OpenFace's printed values, which are rounded
to 0.1 px, on default.wmv and the interview clips). Deviates only where BLAS/OpenCV
summation order cannot be reproduced (last float32 bits).
"""

from __future__ import annotations

import os
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from ...parallel import run_all
from ...errors import InputError, ModelFileError
from ...validation import require_gray
from ...modelstore import ModelsArg, resolve
from ...parsers.clnf_model import read_clnf_spec, read_main_model
from ...pdm import PDM, calc_params, load_pdm
from .fitting import FitParameters, KDECache, ScaleFitResult, fit_scales
from .patch_experts import CCNFScale, load_ccnf_scale

__all__ = [
    "DEFAULT_MAIN_MODEL",
    "WINDOW_SIZES_INIT",
    "WINDOW_SIZES_SMALL",
    "MAIN_FIT_PARAMETERS",
    "PART_FIT_PARAMETERS",
    "PART_DEFAULT_PARAMETERS",
    "PART_SCALE_RATIO",
    "FitResult",
    "MainFit",
    "PartModel",
    "CLNF",
]


#: The model FeatureExtraction ran with for the reference data (``-mloc``).
DEFAULT_MAIN_MODEL = "model/main_clnf_general.txt"

#: Window sizes per scale when (re)initialising from a detection or after a failed frame
#: (``window_sizes_init``, LandmarkDetectorParameters.cpp). The 4th is unused (3 scales).
WINDOW_SIZES_INIT = (11, 9, 7, 5)
#: Window sizes per scale while tracking succeeds (``window_sizes_small``): scale 0.25 is
#: skipped.
WINDOW_SIZES_SMALL = (0, 9, 7, 0)

#: The main model's parameters with ``-mloc main_clnf_general.txt``
#: (``FaceModelParameters::init``, LandmarkDetectorParameters.cpp): ``sigma = 1.5``,
#: ``reg_factor = 25``, ``weight_factor = 0`` (no NU weighting for videos),
#: ``num_optimisation_iteration = 5``, ``refine_parameters = true``.
MAIN_FIT_PARAMETERS = FitParameters(
    window_sizes=WINDOW_SIZES_INIT,
    reg_factor=25.0,
    sigma=1.5,
    weight_factor=0.0,
    num_iterations=5,
    refine_parameters=True,
)

#: Part model parameters by part name (``CLNF::Read``, LandmarkDetectorModel.cpp); all
#: with ``refine_parameters = false`` and 5 iterations.
PART_FIT_PARAMETERS: dict[str, FitParameters] = {
    "left_eye": FitParameters((5, 3), 0.1, 2.0, 0.0, 5, False),
    "right_eye": FitParameters((5, 3), 0.1, 2.0, 0.0, 5, False),
    "left_eye_28": FitParameters((3, 5, 9), 0.5, 1.0, 0.0, 5, False),
    "right_eye_28": FitParameters((3, 5, 9), 0.5, 1.0, 0.0, 5, False),
    "mouth": FitParameters((7, 7), 1.0, 2.0, 0.0, 5, False),
    "brow": FitParameters((11, 9), 10.0, 3.5, 0.0, 5, False),
    "inner": FitParameters((9,), 2.5, 1.75, 2.5, 5, False),
}
#: Parameters of a part with any other name: OpenFace's defaults for the CE-CLM model
#: location it falls back to (``sigma = 1.5 * 1.5``, ``reg_factor = 0.9 * 25``).
PART_DEFAULT_PARAMETERS = FitParameters(WINDOW_SIZES_INIT, 22.5, 2.25, 0.0, 5, False)

#: Parts run only when the main scale exceeds this times the part's first patch scaling
#: ("only do this if we don't need to upsample", ``DetectLandmarks``).
PART_SCALE_RATIO = 0.9


@dataclass
class FitResult:
    """The outcome of :meth:`CLNF.fit` (OpenFace's ``CLNF`` state after DetectLandmarks).

    Attributes
    ----------
    landmarks : (68, 2) float64 pixels, columns x, y (float32-rounded values).
    params_global : (6,) float64 ``[scale, rx, ry, rz, tx, ty]``.
    params_local : (34,) float64.
    model_likelihood : float, the main model's likelihood at its last scale.
    converged : OpenFace's ``fit_success`` (False when the face got too small); the
        detection validator decides OpenFace's ``detection_success`` separately.
    landmark_likelihoods : (68,) float32 per-landmark KDE sums of the main fit, or None.
    view : view index the main model used at its last scale.
    parts_used : whether the part models ran and were written back.
    part_landmarks : part name -> (k, 2) float64 landmarks of each part model (the 28
        eye landmarks of ``left_eye_28`` / ``right_eye_28`` are OpenFace's ``eye_lmk_*``
        columns). When the parts did not run (small face) these are, as in OpenFace, the
        part PDM fitted to the main landmarks; empty if ``refine_hierarchical`` is off.
    part_params : part name -> ``(params_global (6,), params_local (m,))`` float64 of the
        part's PDM, whose projection ``part_landmarks`` is (for its 3D shape: gaze).
    """

    landmarks: np.ndarray
    params_global: np.ndarray
    params_local: np.ndarray
    model_likelihood: float
    converged: bool
    landmark_likelihoods: np.ndarray | None = None
    view: int = 0
    parts_used: bool = False
    part_landmarks: dict[str, np.ndarray] = field(default_factory=dict)
    part_params: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


@dataclass(frozen=True)
class MainFit:
    """The main model's fit before the part models (:meth:`CLNF.fit_main`); finished by
    :meth:`CLNF.refine`.

    Attributes
    ----------
    image : (H, W) float32 the grey image fitted.
    fit : the main model's result (its ``model_likelihood`` is the fit's: the part
        models do not change it).
    """

    image: np.ndarray
    fit: ScaleFitResult

    @property
    def model_likelihood(self) -> float:
        return float(self.fit.model_likelihood)


@dataclass
class _Core:
    """A PDM with its CCNF patch experts (what ``CLNF::Read_CLNF`` loads)."""

    pdm: PDM
    scales: list[CCNFScale]
    kde: KDECache

    def fit(
        self,
        image: np.ndarray,
        glob: np.ndarray,
        loc: np.ndarray,
        params: FitParameters,
        executor: Executor | None = None,
        parts: int = 1,
    ) -> ScaleFitResult:
        return fit_scales(
            self.pdm, self.scales, image, glob, loc, params, self.kde, executor, parts
        )


@dataclass
class PartModel:
    """A hierarchical part model.

    Attributes
    ----------
    name : OpenFace's part name (``inner``, ``left_eye_28``, ``right_eye_28``).
    mapping : (k, 2) int64 rows ``(index in the 68, index in the part)``.
    params : its fitting parameters.
    core : its PDM, patch experts and KDE cache.
    """

    name: str
    mapping: np.ndarray
    params: FitParameters
    core: _Core


def _load_core(clnf_relpath: str, models: ModelsArg) -> _Core:
    """Load a CLNF file's PDM and CCNF patch experts (``CLNF::Read_CLNF``)."""
    spec = read_clnf_spec(resolve(clnf_relpath, models), clnf_relpath)
    pdm = load_pdm(resolve(spec.pdm, models))
    if not spec.ccnf_patches:
        raise ModelFileError(
            f"{clnf_relpath}: names no CCNF patch experts; only OpenFace's CLNF models "
            "(e.g. model/main_clnf_general.txt) are supported"
        )
    scales = [load_ccnf_scale(resolve(p, models)) for p in spec.ccnf_patches]
    for s in scales:
        if s.n_points != pdm.n_points:
            raise ModelFileError(
                f"{clnf_relpath}: patch experts have {s.n_points} landmarks, "
                f"the PDM {pdm.n_points}"
            )
    return _Core(pdm=pdm, scales=scales, kde=KDECache())


def _as_f32_image(gray: np.ndarray) -> np.ndarray:
    return require_gray(np.asarray(gray)).astype(np.float32)


class CLNF:
    """OpenFace 2.2's CLNF landmark detector (main model, patch experts, part models).

    Parameters
    ----------
    main_model : manifest path of the main model file.
    models : folders to search for the model files (see
        :func:`pyfaceau.modelstore.resolve`).
    executor : threads that :meth:`fit` may use (``concurrent.futures.Executor``, e.g.
        the pipeline's ``ThreadPoolExecutor``); None (the default) fits on the calling
        thread only. The results are the same bits with or without it.
    threads : how many threads ``executor`` offers (the calling thread included): the
        patch responses of the main model are split into this many landmark ranges, and
        the part models run side by side. Ignored without ``executor``.

    Attributes
    ----------
    pdm : the 68-point PDM.
    scales : the main model's patch experts per scale (0.25, 0.35, 0.5).
    parts : the hierarchical part models, in file order.
    validator_path : manifest path of the detection validator named by the main file.

    Notes
    -----
    An instance keeps caches (Sigma matrices, KDE tables) that fill on first use; it has
    no per-video state, so one instance can serve any number of videos (not concurrently).

    With ``executor``, a fit hands work to other threads (:func:`pyfaceau.parallel.run_all`):
    every piece (a range of landmarks, a part model) is computed alone and written to its
    own place, so no result depends on the number of threads or on their timing; a piece
    no worker has started when the fit needs it runs on the calling thread, so a busy
    (or shared) pool costs no deadlock.
    """

    def __init__(
        self,
        main_model: str = DEFAULT_MAIN_MODEL,
        models: ModelsArg = None,
        *,
        executor: Executor | None = None,
        threads: int = 1,
    ) -> None:
        self.executor = executor
        self.threads = max(1, int(threads)) if executor is not None else 1
        spec = read_main_model(resolve(main_model, models), main_model)
        self._main = _load_core(spec.landmark_detector, models)
        self.validator_path = spec.validator
        self.parts: list[PartModel] = []
        for part in spec.parts:
            pspec = read_main_model(resolve(part.location, models), part.location)
            core = _load_core(pspec.landmark_detector, models)
            mp = part.mapping
            if mp[:, 0].max() >= self.pdm.n_points or mp[:, 1].max() >= core.pdm.n_points:
                raise ModelFileError(
                    f"{main_model}: part '{part.name}' maps a landmark out of range"
                )
            params = PART_FIT_PARAMETERS.get(part.name, PART_DEFAULT_PARAMETERS)
            self.parts.append(PartModel(part.name, part.mapping, params, core))

    @property
    def pdm(self) -> PDM:
        return self._main.pdm

    @property
    def scales(self) -> list[CCNFScale]:
        return self._main.scales

    def params_from_bbox(
        self, bbox: Sequence[float], rotation: Sequence[float] = (0.0, 0.0, 0.0)
    ) -> tuple[np.ndarray, np.ndarray]:
        """Initial parameters from a face box (OpenFace's ``CalcParams(bbox)`` overload).

        Parameters
        ----------
        bbox : ``(x, y, width, height)`` pixels of the face (OpenFace's detector box).
        rotation : (3,) initial Euler angles (multi-view hypotheses), radians.

        Returns
        -------
        params_global : (6,) float64; params_local : (34,) float64 zeros.
        """
        glob = self.pdm.calc_params_from_bbox(bbox, None, rotation)
        return glob, np.zeros(self.pdm.n_modes, dtype=np.float64)

    def _fit_part(
        self, part: PartModel, image: np.ndarray, shape: np.ndarray, main_scale: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """One part model from the main model's shape ((2n,) float32, column layout):
        ``CalcParams`` on its landmarks, then its own fit when the face is large enough.

        Returns ``(params_global, params_local, shape_2d (2k,) float32, fitted)``.
        """
        n = self.pdm.n_points
        ppdm = part.core.pdm
        locs = np.zeros((ppdm.n_points, 2), dtype=np.float64)
        locs[part.mapping[:, 1], 0] = shape[part.mapping[:, 0]]
        locs[part.mapping[:, 1], 1] = shape[part.mapping[:, 0] + n]
        pg, pl = calc_params(ppdm, locs)
        used = bool(main_scale > PART_SCALE_RATIO * part.core.scales[0].patch_scaling)
        if used:
            pres = part.core.fit(image, pg, pl, part.params)
            pg, pl = pres.params_global, pres.params_local
        return pg, pl, ppdm.calc_shape_2d(pg, pl), used

    def fit(
        self,
        gray: np.ndarray,
        params_global: np.ndarray,
        params_local: np.ndarray | None,
        window_sizes: Sequence[int] = WINDOW_SIZES_SMALL,
        *,
        refine_hierarchical: bool = True,
        parameters: FitParameters | None = None,
    ) -> FitResult:
        """Fit the landmarks in one frame (OpenFace's ``CLNF::DetectLandmarks``).

        Parameters
        ----------
        gray : (H, W) uint8 grey image (OpenFace's ``ConvertToGrayscale_8bit``, i.e.
            ``cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)``).
        params_global : (6,) initial ``[scale, rx, ry, rz, tx, ty]`` (previous frame's,
            or :meth:`params_from_bbox`).
        params_local : (34,) initial shape parameters (None: zeros).
        window_sizes : per-scale window sizes: :data:`WINDOW_SIZES_SMALL` while tracking
            succeeds, :data:`WINDOW_SIZES_INIT` after a detection or a failed frame.
        refine_hierarchical : run the part models (OpenFace's default: True).
        parameters : the main model's other fitting parameters (default: OpenFace's for
            ``main_clnf_general``); its ``window_sizes`` are replaced by ``window_sizes``.

        Returns
        -------
        FitResult

        Raises
        ------
        InputError
            If ``gray`` is not a 2D uint8 image or a parameter vector has the wrong size.
        """
        return self.refine(
            self.fit_main(gray, params_global, params_local, window_sizes, parameters=parameters),
            refine_hierarchical=refine_hierarchical,
        )

    def fit_main(
        self,
        gray: np.ndarray,
        params_global: np.ndarray,
        params_local: np.ndarray | None,
        window_sizes: Sequence[int] = WINDOW_SIZES_SMALL,
        *,
        parameters: FitParameters | None = None,
    ) -> MainFit:
        """The first half of :meth:`fit` (same arguments): the main model only. Its
        likelihood is the whole fit's, so the best of several starts can be chosen before
        the part models run on it alone (:meth:`refine`)."""
        image = _as_f32_image(gray)
        windows = tuple(int(w) for w in window_sizes)
        if any(w < 0 for w in windows):
            raise InputError(f"window_sizes: must be >= 0, got {windows}")
        base = parameters if parameters is not None else MAIN_FIT_PARAMETERS
        params = replace(base, window_sizes=windows)
        pdm = self.pdm
        glob = pdm.global_vec(params_global).astype(np.float64)
        loc = pdm.local_vec(params_local).astype(np.float64)
        return MainFit(image, self._main.fit(image, glob, loc, params, self.executor, self.threads))

    def refine(self, main_fit: MainFit, refine_hierarchical: bool = True) -> FitResult:
        """The second half of :meth:`fit`: the part models on ``main_fit`` (when
        ``refine_hierarchical``) and the whole fit's result."""
        image, main = main_fit.image, main_fit.fit
        pdm = self.pdm
        glob, loc = main.params_global, main.params_local
        shape = pdm.calc_shape_2d(glob, loc)  # (2n,) float32, column layout
        n = pdm.n_points

        parts_used = False
        part_shapes: dict[str, np.ndarray] = {}
        part_params: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if refine_hierarchical and self.parts:
            # The parts are independent given the main fit: with an executor they run
            # side by side (each part's own responses on one thread).
            results = run_all(
                self.executor if self.threads > 1 else None,
                [(self._fit_part, (part, image, shape, glob[0])) for part in self.parts],
            )
            fitted: list[np.ndarray] = []
            for part, (pg, pl, pshape, used) in zip(self.parts, results):
                parts_used = parts_used or used
                fitted.append(pshape)
                k = part.core.pdm.n_points
                part_shapes[part.name] = np.stack([pshape[:k], pshape[k:]], axis=1).astype(
                    np.float64
                )
                part_params[part.name] = (
                    np.asarray(pg, dtype=np.float64),
                    np.asarray(pl, dtype=np.float64),
                )
            if parts_used:
                merged = shape.copy()
                for part, pshape in zip(self.parts, fitted):
                    k = part.core.pdm.n_points
                    merged[part.mapping[:, 0]] = pshape[part.mapping[:, 1]]
                    merged[part.mapping[:, 0] + n] = pshape[part.mapping[:, 1] + k]
                lm = np.stack([merged[:n], merged[n:]], axis=1).astype(np.float64)
                glob, loc = calc_params(pdm, lm)
                shape = pdm.calc_shape_2d(glob, loc)

        landmarks = np.stack([shape[:n], shape[n:]], axis=1).astype(np.float64)
        return FitResult(
            landmarks=landmarks,
            params_global=np.asarray(glob, dtype=np.float64),
            params_local=np.asarray(loc, dtype=np.float64),
            model_likelihood=float(main.model_likelihood),
            converged=bool(main.success),
            landmark_likelihoods=main.landmark_likelihoods,
            view=main.view,
            parts_used=parts_used,
            part_landmarks=part_shapes,
            part_params=part_params,
        )
