"""Everything a :class:`~pyfaceau.pipeline.pipeline.Pipeline` loads from files, loaded once.

:class:`Models` holds the detector, the landmark models (CLNF, validator, PFLD, SVR
refiner) and the AU back ends for one :class:`~pyfaceau.options.Options`. The loaded
objects are read-only during processing and shared by every input session and face track
of the pipeline; what changes per face (tracking state, running medians, rows) lives in
:class:`~pyfaceau.pipeline.track.FaceTrack`.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable

from ..options import Detector, LandmarkMethod, Options, Refinement
from .backend import AUBackend
from .types import LandmarkFrontEnd

__all__ = ["INPUT_KINDS", "Models"]

#: The kinds of input a session is for.
INPUT_KINDS = ("video", "sequence", "image", "stream")


class Models:
    """The loaded models of one configuration; each part is loaded on first use.

    Parameters
    ----------
    options : the configuration (detector, landmark method, refinement, AU models, model
        folders).
    """

    def __init__(self, options: Options, *, preloaded: dict[str, Any] | None = None) -> None:
        self.options = options
        self._lock = threading.RLock()
        # parts given already loaded (e.g. from explicit file paths): "mtcnn", "retinaface",
        # "pfld", "clnf", "validator", "svr", "backend-True" / "backend-False"
        self._loaded: dict[str, Any] = dict(preloaded or {})
        # The threads that work inside one frame (patch responses, part models, CNN
        # layers): the calling thread plus options.cores - 1 workers. No result depends
        # on them (pyfaceau.parallel.run_all).
        cores = options.cores
        self.threads = cores
        self.executor: ThreadPoolExecutor | None = (
            ThreadPoolExecutor(cores - 1, thread_name_prefix="pyfaceau-kernel") if cores > 1 else None
        )

    def close(self) -> None:
        """Stop the kernel threads; the loaded models stay usable on one thread."""
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None

    def _get(self, key: str, load: Callable[[], Any]) -> Any:
        with self._lock:
            if key not in self._loaded:
                self._loaded[key] = load()
            return self._loaded[key]

    # -- back end --------------------------------------------------------------------------
    def backend(self, dynamic: bool) -> AUBackend:
        """The AU back end with OpenFace's dynamic (videos) or static (images) models."""
        o = self.options
        return self._get(
            f"backend-{dynamic}",
            lambda: AUBackend(o.models, dynamic=dynamic, au_model_list=o.au_model_list),
        )

    # -- front end -------------------------------------------------------------------------
    def _clnf(self) -> Any:
        from ..landmarks.clnf.model import CLNF

        return self._get(
            "clnf",
            lambda: CLNF(models=self.options.models, executor=self.executor, threads=self.threads),
        )

    def _validator(self) -> Any:
        from ..landmarks.clnf.validator import load_detection_validator

        return self._get(
            "validator",
            lambda: load_detection_validator(
                self.options.models, executor=self.executor, threads=self.threads
            ),
        )

    def _mtcnn(self) -> Any:
        from ..detection.mtcnn import MTCNNDetector

        return self._get(
            "mtcnn",
            lambda: MTCNNDetector(self.options.models, executor=self.executor, threads=self.threads),
        )

    def _retinaface(self) -> Any:
        from ..detection.retinaface import RetinaFaceDetector

        return self._get("retinaface", lambda: RetinaFaceDetector(models=self.options.models))

    def _pfld(self) -> Any:
        from ..landmarks.pfld import PFLDLandmarker

        return self._get("pfld", lambda: PFLDLandmarker(models=self.options.models))

    def _svr_refiner(self) -> Any:
        from ..refinement.targeted import FAST_SEARCH_WINDOW, TargetedCLNFRefiner

        return self._get(
            "svr",
            lambda: TargetedCLNFRefiner(
                search_window=FAST_SEARCH_WINDOW, models=self.options.models
            ),
        )

    def part(self, name: str) -> Any:
        """A loaded part by name (``"mtcnn"``, ``"retinaface"``, ``"pfld"``, ``"clnf"``,
        ``"validator"``, ``"svr"``), loading it if needed."""
        loaders = {
            "mtcnn": self._mtcnn,
            "retinaface": self._retinaface,
            "pfld": self._pfld,
            "clnf": self._clnf,
            "validator": self._validator,
            "svr": self._svr_refiner,
        }
        if name not in loaders:
            raise KeyError(name)
        return loaders[name]()

    def load(self, kinds: Iterable[str] = INPUT_KINDS) -> "Models":
        """Load every part the configuration needs now (instead of on first use), with
        the AU models for inputs of ``kinds`` (``"video"``, ``"sequence"``, ``"image"``,
        ``"stream"``; default: all)."""
        o = self.options
        for dynamic in sorted({o.dynamic_for(kind) for kind in kinds}):
            self.backend(dynamic)
        if o.landmarks is LandmarkMethod.CSV:
            self._csv_landmarks()
        elif o.landmarks is LandmarkMethod.CLNF:
            self._clnf(), self._validator(), self._mtcnn()
        elif o.landmarks is LandmarkMethod.PFLD:
            self._retinaface(), self._pfld()
            if o.refinement.tracks_with_clnf:
                self._clnf(), self._validator()
            elif o.refinement is Refinement.SVR:
                self._svr_refiner()
        return self

    def _csv_landmarks(self) -> Any:
        from .csv_landmarks import CsvLandmarkFrontEnd

        o = self.options
        assert o.landmarks_csv is not None
        return self._get("csv", lambda: CsvLandmarkFrontEnd(o.landmarks_csv, models=o.models))

    def detector(self) -> Any:
        """The configured full-image face detector (MTCNN or RetinaFace)."""
        o = self.options
        if o.landmarks is LandmarkMethod.CSV:
            raise KeyError("the landmark CSV front end has no face detector")
        return self._mtcnn() if o.detector is Detector.MTCNN else self._retinaface()

    def new_front_end(self, detector: Any = None) -> LandmarkFrontEnd:
        """A fresh landmark tracker (its own state) around the shared models.

        ``detector`` replaces the configured face detector (several faces: a per-face view
        of the shared detector, :class:`pyfaceau.pipeline.faces.TrackDetections`).
        """
        o = self.options
        if o.landmarks is LandmarkMethod.CSV:
            return self._csv_landmarks().fresh()
        if o.landmarks is LandmarkMethod.CLNF:
            from .faithful import OpenFaceLandmarkFrontEnd

            clnf = self._clnf()
            return OpenFaceLandmarkFrontEnd(
                fitter=clnf,
                detector=detector if detector is not None else self._mtcnn(),
                validator=self._validator(),
                pdm=clnf.pdm,
            )
        from .fast import FastLandmarkFrontEnd

        if detector is None:
            detector = self._retinaface()
        if o.refinement.tracks_with_clnf:
            return FastLandmarkFrontEnd(
                detector=detector,
                landmarker=self._pfld(),
                refine="clnf",
                clnf=self._clnf(),
                validator=self._validator(),
                clnf_hierarchical=o.refinement is Refinement.CLNF_PARTS,
            )
        return FastLandmarkFrontEnd(
            detector=detector,
            landmarker=self._pfld(),
            refine=self._svr_refiner() if o.refinement is Refinement.SVR else False,
        )
