"""Build the sequence tracker of each configuration from the model files.

- :func:`build_openface_tracker`: OpenFace's FeatureExtraction (MTCNN, CLNF with its part
  models, 11 rotation hypotheses, validator on every frame);
- :func:`build_fast_tracker`: the fast path (RetinaFace, PFLD) with ``refine`` =
  ``"clnf"`` (CLNF tracking), ``"svr"`` (PFLD + targeted SVR refinement of 9 landmarks,
  the refiner given by the caller) or ``"none"`` (PFLD alone).

Each returns a :class:`~pyfaceau.landmarks.tracking.LandmarkTracker`: load it once, share
it between faces and threads, and give every face its own ``tracker.new_state()``. Models
already loaded may be passed in (``detector=``, ``clnf=``, ...) so that several
configurations share them.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Sequence

from ..errors import InputError
from ..modelstore import ModelsArg, resolve
from .tracking import (
    CLNF_VALIDATE_INTERVAL,
    CLNF_VERIFY_INTERVAL,
    FAST_CLNF_POLICY,
    FAST_PFLD_POLICY,
    VERIFY_INTERVAL,
    CLNFStep,
    LandmarkTracker,
    PFLDInitialiser,
    PFLDStep,
    TrackingParameters,
    openface_tracker,
)

__all__ = [
    "PDM_RELPATH",
    "FAST_CLNF_ITERATIONS",
    "REFINE_CHOICES",
    "build_openface_tracker",
    "build_fast_tracker",
]


#: The PDM of ``clnf_general.txt`` (``PDM pdms/In-the-wild_aligned_PDM_68.txt``).
PDM_RELPATH = "model/pdms/In-the-wild_aligned_PDM_68.txt"
#: Fast path with CLNF: NU-RLMS iterations per pass on tracked frames (OpenFace: 5). One
#: fewer costs about 0.001 of pooled AU r (0.978 against 0.979) and saves a fifth of the
#: fitting (docs/accuracy.md, section 3).
FAST_CLNF_ITERATIONS = 4
#: The fast path's landmark refinements.
REFINE_CHOICES = ("clnf", "svr", "none")


def build_openface_tracker(
    models: ModelsArg = None,
    *,
    fitter: object | None = None,
    detector: object | None = None,
    validator: object | None = None,
    pdm: object | None = None,
    parameters: TrackingParameters | None = None,
) -> LandmarkTracker:
    """OpenFace 2.2's landmark detection and tracking (FeatureExtraction's settings).

    Parameters
    ----------
    models : folders searched first for the model files
        (:func:`pyfaceau.modelstore.resolve`).
    fitter : the CLNF (default: OpenFace's ``main_clnf_general.txt``,
        :class:`~pyfaceau.landmarks.clnf.model.CLNF`).
    detector : face detector (default: :class:`~pyfaceau.detection.mtcnn.MTCNNDetector`).
    validator : detection validator (default: ``validator_cnn.txt``).
    pdm : the PDM that places the model in a box (default: the fitter's ``pdm``, else
        ``In-the-wild_aligned_PDM_68.txt``).
    parameters : tracking parameters (default: OpenFace's).
    """
    if fitter is None:
        from .clnf.model import CLNF

        fitter = CLNF(models=models)
    if detector is None:
        from ..detection.mtcnn import MTCNNDetector

        detector = MTCNNDetector(models)
    if validator is None:
        from .clnf.validator import load_detection_validator

        validator = load_detection_validator(models)
    if pdm is None:
        pdm = getattr(fitter, "pdm", None)
    if pdm is None:
        from ..pdm import load_pdm

        pdm = load_pdm(resolve(PDM_RELPATH, models))
    return openface_tracker(fitter, detector, validator, pdm, parameters)


def build_fast_tracker(
    models: ModelsArg = None,
    *,
    refine: str | object = "clnf",
    refiner: object | None = None,
    detector: object | None = None,
    landmarker: object | None = None,
    clnf: object | None = None,
    validator: object | bool = True,
    clnf_hierarchical: bool = False,
    clnf_iterations: int = FAST_CLNF_ITERATIONS,
    verify_interval: int | None = None,
    validate_interval: int = CLNF_VALIDATE_INTERVAL,
    redetect_interval: int = 0,
    intra_op_threads: int = 1,
) -> LandmarkTracker:
    """The fast path: RetinaFace + PFLD, with CLNF tracking or a PFLD tracker.

    Parameters
    ----------
    models : folders searched first for the model files.
    refine : ``"clnf"`` (default): PFLD initialises OpenFace's CLNF on detections, CLNF
        tracks (validator every ``validate_interval`` tracked frames, region verification
        every ``verify_interval``); ``"svr"``: PFLD tracks, its 9 AU-critical landmarks
        refined by ``refiner``; ``"none"``: PFLD alone; or a refiner object for PFLD
        (the same as ``"svr"`` with ``refiner=`` it).
    refiner : with ``"svr"``, the loaded refiner
        (:class:`~pyfaceau.refinement.TargetedCLNFRefiner` with
        ``search_window=FAST_SEARCH_WINDOW``; ``refine_in_image(frame, landmarks)``). Not
        loaded here: :mod:`pyfaceau.refinement` is a sibling stage of the landmarks.
    detector : a :class:`~pyfaceau.detection.retinaface.RetinaFaceDetector` (default: new).
    landmarker : a :class:`~pyfaceau.landmarks.pfld.PFLDLandmarker` (default: new).
    clnf : with ``"clnf"``, the CLNF (default: new).
    validator : with ``"clnf"``, OpenFace's detection validator (True: load
        ``validator_cnn.txt``; False: none).
    clnf_hierarchical : with ``"clnf"``, also fit the part models (inner face, both eyes)
        as OpenFace does on large faces (slower; gives gaze).
    clnf_iterations : with ``"clnf"``, NU-RLMS iterations per pass on tracked frames.
    verify_interval : region verification every this many tracked frames (0: never;
        default :data:`~pyfaceau.landmarks.tracking.CLNF_VERIFY_INTERVAL` with CLNF,
        :data:`~pyfaceau.landmarks.tracking.VERIFY_INTERVAL` with PFLD).
    validate_interval : with ``"clnf"``, validate every this many tracked frames.
    redetect_interval : full-frame detection every this many frames even while tracking
        (0: never).
    intra_op_threads : onnxruntime threads of the default networks.

    Raises
    ------
    InputError
        On an unknown ``refine`` or a negative interval.
    """
    use_clnf = refine == "clnf"
    if isinstance(refine, str) and refine not in REFINE_CHOICES:
        raise InputError(f"refine: expected one of {', '.join(REFINE_CHOICES)}, got {refine!r}")
    if verify_interval is None:
        verify_interval = CLNF_VERIFY_INTERVAL if use_clnf else VERIFY_INTERVAL
    if verify_interval < 0 or redetect_interval < 0 or validate_interval < 0:
        raise InputError(
            "verify_interval, redetect_interval, validate_interval: expected counts >= 0"
        )
    if clnf_iterations < 1:
        raise InputError(f"clnf_iterations: expected >= 1, got {clnf_iterations}")
    if detector is None:
        from ..detection.retinaface import RetinaFaceDetector

        detector = RetinaFaceDetector(models=models, intra_op_threads=intra_op_threads)
    if landmarker is None:
        from .pfld import PFLDLandmarker

        landmarker = PFLDLandmarker(models=models, intra_op_threads=intra_op_threads)

    if use_clnf:
        from .clnf.model import CLNF, MAIN_FIT_PARAMETERS

        if clnf is None:
            clnf = CLNF(models=models)
        if validator is True:
            from .clnf.validator import load_detection_validator

            validator = load_detection_validator(models)
        elif validator is False:
            validator = None
        step = CLNFStep(
            clnf,
            refine_hierarchical=bool(clnf_hierarchical),
            tracking_parameters=replace(MAIN_FIT_PARAMETERS, num_iterations=int(clnf_iterations)),
        )
        policy = replace(
            FAST_CLNF_POLICY,
            verify_every=int(verify_interval),
            validate_every=int(validate_interval),
            redetect_every=int(redetect_interval),
        )
        return LandmarkTracker(
            step, PFLDInitialiser(landmarker, step, clnf.pdm), detector, validator, policy
        )

    if refine == "svr":
        if refiner is None:
            raise InputError(
                "refine='svr': pass the loaded refiner (refiner=TargetedCLNFRefiner(...))"
            )
    elif refine == "none":
        refiner = None
    else:
        refiner = refine
    policy = replace(
        FAST_PFLD_POLICY, verify_every=int(verify_interval), redetect_every=int(redetect_interval)
    )
    return LandmarkTracker(
        PFLDStep(landmarker, refiner), PFLDInitialiser(landmarker), detector, None, policy
    )
