"""Running a whole input (video, image folder or image) through a front end and the back end."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

import pandas as pd
from threadpoolctl import threadpool_limits

from ..errors import InputError
from ..output.table import write_csv
from .backend import AUBackend
from .sources import open_source
from .types import LandmarkFrontEnd, LandmarkResult

__all__ = ["make_front_end", "process", "single_threaded_blas"]

ModelsArg = str | os.PathLike | Sequence[str | os.PathLike] | None


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run the BLAS libraries (NumPy's, and the one OpenCV's ``gemm`` uses) on one thread.

    OpenFace does the same (``openblas_set_num_threads(1)`` in ``CNN::Read``). The
    products here are small: a second thread adds no speed, doubles the CPU time (its
    workers spin between calls) and makes float32 results depend on the core count.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def make_front_end(
    mode: str,
    models: ModelsArg = None,
    *,
    landmarks_csv: str | os.PathLike | None = None,
    refine: bool | str = "clnf",
) -> LandmarkFrontEnd:
    """Build a landmark front end.

    Parameters
    ----------
    mode : ``"faithful"`` (OpenFace's MTCNN + CLNF), ``"fast"`` (RetinaFace + PFLD,
        refined) or ``"csv"`` (landmarks from an OpenFace CSV).
    models : model folders searched first.
    landmarks_csv : the CSV, for ``mode="csv"``.
    refine : with ``"fast"``: ``"clnf"`` (default) tracks all 68 landmarks with OpenFace's
        CLNF (AUs close to OpenFace's), True refines only the 9 AU-critical landmarks with
        OpenFace's SVR patch experts (faster, far less accurate), False keeps PFLD's
        landmarks.
    """
    if mode == "csv":
        if landmarks_csv is None:
            raise InputError("mode 'csv' needs a landmark CSV")
        from .csv_landmarks import CsvLandmarkFrontEnd

        return CsvLandmarkFrontEnd(landmarks_csv)
    if mode == "fast":
        from .fast import FastLandmarkFrontEnd

        return FastLandmarkFrontEnd(models=models, refine=refine)
    if mode == "faithful":
        from .faithful import OpenFaceLandmarkFrontEnd

        return OpenFaceLandmarkFrontEnd(models=models)
    raise InputError(f"unknown mode '{mode}' (faithful, fast or csv)")


def _every_face(source, front_end, backend: AUBackend) -> pd.DataFrame:
    """A still image, as OpenFace's FaceLandmarkImg: one row per detected face
    (``face_id`` 0, 1, ... in the detector's order), each face on its own; one
    ``success = 0`` row when there is none."""
    frame = next(iter(source))
    faces = front_end.detect_all(frame.image) or [LandmarkResult.failed()]
    tables = []
    for face_id, result in enumerate(faces):
        session = backend.new_session(source.width, source.height)
        session.add(frame, result)
        tables.append(session.finish().assign(face_id=face_id))
    return pd.concat(tables, ignore_index=True)


def process(
    input_path: str | os.PathLike,
    front_end: LandmarkFrontEnd,
    *,
    output_csv: str | os.PathLike | None = None,
    models: ModelsArg = None,
    dynamic: bool | None = None,
    backend: AUBackend | None = None,
    on_frame: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Measure AUs on every frame of ``input_path``.

    Parameters
    ----------
    input_path : a video file, a folder of images (processed as a sequence) or an image.
    front_end : the landmark front end (see :func:`make_front_end`); reset first.
    output_csv : if given, the table is written there (atomically) as OpenFace's CSV.
    dynamic : dynamic AU models with person normalisation; default True for videos and
        sequences, False for a single image (as OpenFace's FaceLandmarkImg).
    backend : a loaded :class:`AUBackend` to reuse (its ``dynamic`` setting wins).
    on_frame : called after each frame with (frames done, frames expected).

    Returns
    -------
    pandas.DataFrame with OpenFace's column names, one row per frame; for a single image
    one row per detected face (``face_id`` 0, 1, ..., as OpenFace's FaceLandmarkImg) when
    the front end can detect every face (the faithful and fast ones).
    """
    source = open_source(input_path)
    if backend is None:
        use_dynamic = dynamic if dynamic is not None else source.kind != "image"
        backend = AUBackend(models, dynamic=use_dynamic)
    front_end.reset()
    total = len(source)
    with single_threaded_blas():
        if source.kind == "image" and callable(getattr(front_end, "detect_all", None)):
            df = _every_face(source, front_end, backend)
            if on_frame is not None:
                on_frame(1, 1)
        else:
            session = backend.new_session(source.width, source.height)
            for done, frame in enumerate(source, start=1):
                session.add(frame, front_end.track(frame.image))
                if on_frame is not None:
                    on_frame(done, total)
            df = session.finish()
    if output_csv is not None:
        write_csv(df, Path(output_csv))
    return df
