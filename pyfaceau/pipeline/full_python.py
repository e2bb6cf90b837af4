"""``FullPythonAUPipeline``: the seed's API for the fast path, a thin layer over
:class:`~pyfaceau.pipeline.pipeline.Pipeline` with ``Options.fast()``."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..options import ModelsArg, Options, Refinement
from ..validation import require_index, require_number
from .backend import AUBackend, FrameResult
from .models import Models
from .pipeline import Pipeline, StreamSession

__all__ = ["FullPythonAUPipeline"]

log = logging.getLogger(__name__)


class FullPythonAUPipeline:
    """The fast path: RetinaFace + PFLD (+ CLNF refinement) + OpenFace's AU back end.

    Every path is optional; a file not given is found in the model store
    (``models``, ``$PYFACEAU_MODELS``, the user data folder) and checked against its SHA-256.

    Parameters
    ----------
    retinaface_model, pfld_model : the two ONNX networks.
    pdm_file : OpenFace's PDM (``In-the-wild_aligned_PDM_68.txt``), used by the SVR refiner
        and the back end.
    au_models_dir : a folder with OpenFace's ``AU_predictors`` layout.
    triangulation_file : OpenFace's ``tris_68_full.txt`` (the alignment mask).
    patch_expert_file : OpenFace's ``svr_patches_0.25_general.txt`` (``refinement="svr"``).
    use_clnf_refinement : refine PFLD's landmarks (with ``refinement``); False: PFLD alone
        (``refinement`` must then keep its default; another value is an error).
    refinement : ``"clnf"`` (default): track all 68 landmarks with OpenFace's CLNF (pooled
        AU r 0.978 against OpenFace on the sample videos); ``"svr"``: the targeted
        refinement of the 9 AU-critical landmarks (:class:`TargetedCLNFRefiner`), faster
        but far less accurate (pooled r 0.788, `docs/accuracy.md`).
    use_batched_predictor : no effect, kept for the seed's callers: :meth:`process_video`
        always runs the AU models of the frames the offline post-processing re-predicts
        once, batched, at the end (:meth:`pyfaceau.Pipeline.process`; the same output as
        one frame at a time, ``tests/test_backend_parity.py``).
    verbose : show a progress bar and log the frame rate in :meth:`process_video`.
    models : model folders searched first for files not given explicitly.

    Notes
    -----
    New code should use ``pyfaceau.Pipeline(pyfaceau.Options.fast(refinement=...))``;
    this class builds exactly that, with the explicit files given here.

    Examples
    --------
    >>> pipe = FullPythonAUPipeline()                              # doctest: +SKIP
    >>> df = pipe.process_video("video.mp4", output_csv="out.csv") # doctest: +SKIP
    """

    def __init__(
        self,
        retinaface_model: str | os.PathLike | None = None,
        pfld_model: str | os.PathLike | None = None,
        pdm_file: str | os.PathLike | None = None,
        au_models_dir: str | os.PathLike | None = None,
        triangulation_file: str | os.PathLike | None = None,
        patch_expert_file: str | os.PathLike | None = None,
        use_clnf_refinement: bool = True,
        use_batched_predictor: bool = True,
        verbose: bool = True,
        *,
        refinement: str = "clnf",
        models: ModelsArg = None,
    ) -> None:
        if refinement not in ("clnf", "svr"):
            raise InputError(f"refinement: expected 'clnf' or 'svr', got {refinement!r}")
        if not use_clnf_refinement and refinement != "clnf":
            raise InputError(
                f"use_clnf_refinement=False (PFLD alone) contradicts refinement={refinement!r}"
            )
        self.verbose = verbose
        self.use_clnf_refinement = use_clnf_refinement
        self.refinement = refinement if use_clnf_refinement else None
        self.use_batched_predictor = use_batched_predictor
        options = Options.fast(Refinement(self.refinement or "none"), models=models)
        preloaded: dict[str, object] = {}
        if retinaface_model is not None:
            from ..detection.retinaface import RetinaFaceDetector

            preloaded["retinaface"] = RetinaFaceDetector(retinaface_model, models=models)
        if pfld_model is not None:
            from ..landmarks.pfld import PFLDLandmarker

            preloaded["pfld"] = PFLDLandmarker(pfld_model, models=models)
        if self.refinement == "svr" and (patch_expert_file is not None or pdm_file is not None):
            from ..refinement.targeted import FAST_SEARCH_WINDOW, TargetedCLNFRefiner

            preloaded["svr"] = TargetedCLNFRefiner(
                patch_expert_file, FAST_SEARCH_WINDOW, pdm_file=pdm_file, models=models
            )
        if pdm_file is not None or triangulation_file is not None or au_models_dir is not None:
            preloaded["backend-True"] = AUBackend(
                models,
                pdm_file=pdm_file,
                triangulation_file=triangulation_file,
                au_models_dir=au_models_dir,
            )
        self.pipeline = Pipeline.with_models(Models(options, preloaded=preloaded)).load()
        self._stream: StreamSession | None = None

    @property
    def options(self) -> Options:
        """The pipeline's options (``Options.fast(refinement)``)."""
        return self.pipeline.options

    @property
    def refiner(self) -> object | None:
        """The SVR refiner with ``refinement="svr"``, else None."""
        return self.pipeline.models.part("svr") if self.refinement == "svr" else None

    def process_video(
        self, video_path: str | os.PathLike, output_csv: str | os.PathLike | None = None
    ) -> pd.DataFrame:
        """AUs of every frame of a video (or image folder), after OpenFace's offline
        post-processing.

        Returns
        -------
        pandas.DataFrame with OpenFace's column names, one row per frame; also written to
        ``output_csv`` when given.
        """
        from tqdm import tqdm

        bar = None

        def on_frame(done: int, total: int) -> None:
            nonlocal bar
            if bar is None:
                bar = tqdm(total=total or None, unit="frame", desc=Path(video_path).name,
                           dynamic_ncols=True, file=sys.stderr)
            bar.update(1)

        t0 = time.perf_counter()
        try:
            df = self.pipeline.process(
                video_path, output_csv, on_frame=on_frame if self.verbose else None
            )
        finally:
            if bar is not None:
                bar.close()
        if self.verbose:
            elapsed = time.perf_counter() - t0
            log.info("%s: %d frames at %.1f frames/s", video_path, len(df), len(df) / max(elapsed, 1e-9))
        return df

    def process_frame(
        self, image: np.ndarray, frame_num: int, timestamp: float | None = None
    ) -> FrameResult:
        """One frame of a stream (e.g. a camera), with online AU values.

        Frames given one after the other form a stream: landmarks are tracked and the
        person normalisation (running medians) accumulates across calls; :meth:`reset`
        starts a new stream. The values are OpenFace's online predictions (no offline
        post-processing, which needs the whole video): raw model outputs, not clipped.
        Memory does not grow with the stream's length.

        Parameters
        ----------
        image : ``(H, W, 3)`` uint8 BGR (grey, BGRA and 16-bit images are converted).
        frame_num : 0-based index of the frame in its stream (the result's ``frame`` is
            ``frame_num + 1``, as in OpenFace's CSV).
        timestamp : seconds; default 0.
        """
        frame_num = require_index(frame_num, "frame_num")
        timestamp = require_number(timestamp, "timestamp", allow_none=True)
        if self._stream is None:
            self._stream = self.pipeline.open_stream()
        return self._stream.add(image, timestamp, frame_index=frame_num)[0]

    def reset(self) -> None:
        """Start a new stream for :meth:`process_frame`."""
        self._stream = None
