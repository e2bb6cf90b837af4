"""``FullPythonAUPipeline``: the fast path as one object (RetinaFace + PFLD, CLNF
refinement, the AU back end)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..detection.retinaface import RetinaFaceDetector
from ..errors import InputError
from ..landmarks.pfld import PFLDLandmarker
from ..output.table import write_csv
from ..refinement.targeted import FAST_SEARCH_WINDOW, TargetedCLNFRefiner
from .backend import AUBackend, BackendSession, FrameResult
from .fast import FastLandmarkFrontEnd
from .session import single_threaded_blas
from .sources import Frame, open_source, to_bgr8

__all__ = ["FullPythonAUPipeline"]

log = logging.getLogger(__name__)

ModelsArg = str | os.PathLike | Sequence[str | os.PathLike] | None


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
    use_clnf_refinement : refine PFLD's landmarks with OpenFace's CLNF (False: PFLD alone).
    refinement : ``"clnf"`` (default): track all 68 landmarks with OpenFace's CLNF (CCNF
        patch experts, NU-RLMS under the PDM), which brings the AUs close to OpenFace's
        (pooled r 0.978 on the sample videos); ``"svr"``: the targeted refinement of the 9
        AU-critical landmarks with the SVR patch experts (:class:`TargetedCLNFRefiner`),
        faster but far less accurate (pooled r 0.785).
    use_batched_predictor : run the AU models of the frames the offline post-processing
        re-predicts once, batched, at the end of :meth:`process_video` (same output).
    verbose : show a progress bar and log the frame rate in :meth:`process_video`.
    models : model folders searched first for files not given explicitly.

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
        self.verbose = verbose
        self.use_clnf_refinement = use_clnf_refinement
        self.refinement = refinement if use_clnf_refinement else None
        self.use_batched_predictor = use_batched_predictor
        self.refiner = (
            TargetedCLNFRefiner(
                patch_expert_file, FAST_SEARCH_WINDOW, pdm_file=pdm_file, models=models
            )
            if self.refinement == "svr"
            else None
        )
        refine: TargetedCLNFRefiner | str | bool = False
        if self.refinement == "clnf":
            refine = "clnf"
        elif self.refiner is not None:
            refine = self.refiner
        self.front_end = FastLandmarkFrontEnd(
            detector=RetinaFaceDetector(retinaface_model, models=models),
            landmarker=PFLDLandmarker(pfld_model, models=models),
            refine=refine,
            models=models,
        )
        self.backend = AUBackend(
            models,
            pdm_file=pdm_file,
            triangulation_file=triangulation_file,
            au_models_dir=au_models_dir,
            batched=use_batched_predictor,
        )
        self._stream: BackendSession | None = None
        self._stream_size: tuple[int, int] | None = None

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
        source = open_source(video_path)
        session = self.backend.new_session(source.width, source.height)
        self.front_end.reset()
        frames = tqdm(source, total=len(source), unit="frame", desc=Path(video_path).name,
                      disable=not self.verbose, dynamic_ncols=True)
        t0 = time.perf_counter()
        with single_threaded_blas():
            for frame in frames:
                session.add(frame, self.front_end.track(frame.image))
            df = session.finish()
        elapsed = time.perf_counter() - t0
        if self.verbose:
            log.info("%s: %d frames at %.1f frames/s", video_path, len(df), len(df) / max(elapsed, 1e-9))
        if output_csv is not None:
            write_csv(df, output_csv)
        return df

    def process_frame(self, image: np.ndarray, frame_num: int, timestamp: float | None = None) -> FrameResult:
        """One frame of a stream (e.g. a camera), with online AU values.

        Frames given one after the other form a stream: landmarks are tracked and the
        person normalisation (running medians) accumulates across calls; :meth:`reset`
        starts a new stream. The values are OpenFace's online predictions (no offline
        post-processing, which needs the whole video): raw model outputs, not clipped.

        Parameters
        ----------
        image : ``(H, W, 3)`` uint8 BGR (grey, BGRA and 16-bit images are converted).
        frame_num : 0-based index of the frame in its stream (the result's ``frame`` is
            ``frame_num + 1``, as in OpenFace's CSV).
        timestamp : seconds; default 0.
        """
        if frame_num < 0:
            raise InputError(f"frame_num must be >= 0, got {frame_num}")
        img = to_bgr8(image, "image")
        size = img.shape[1], img.shape[0]
        if self._stream is None or self._stream_size != size:
            if self._stream is not None:
                log.warning("image size changed from %s to %s: a new stream starts", self._stream_size, size)
            self._stream = self.backend.new_session(*size, batched=False)
            self._stream_size = size
            self.front_end.reset()
        return self._stream.add(Frame(frame_num, timestamp or 0.0, img), self.front_end.track(img))

    def reset(self) -> None:
        """Start a new stream for :meth:`process_frame`."""
        self._stream = None
        self._stream_size = None
        self.front_end.reset()
