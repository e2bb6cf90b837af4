"""The AU back end: from a frame and its 68 landmarks to OpenFace 2.2's outputs.

Mirrors what OpenFace's FeatureExtraction does after landmark detection: ``CalcParams`` on
the 2D landmarks, ``AlignFaceMask``, FHOG, the geometry descriptor, ``FaceAnalyser``'s
running medians and AU models, and at the end of the video the offline post-processing.

Notes
-----
Matches OpenFace (``FaceAnalyser::AddNextFrame``): the AU features come from the PDM fitted
to the 2D landmarks by ``calc_params``, never from the landmark fitter's own parameters.
Pose, 3D landmarks and ``p_*`` come from the landmark fitter's parameters when the front
end has them (OpenFace's CLNF), otherwise from ``calc_params``.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..alignment import align_face
from ..alignment.align import AU_SIM_SIZE
from ..au import AUAnalyser, load_au_models
from ..features.fhog import hog_descriptor
from ..features.geometry import geometry_descriptor
from ..modelstore import MANIFEST, ModelsArg, resolve
from ..gaze import eye_gaze, gaze_angle
from ..output.table import (
    AU_INTENSITY_NAMES,
    AU_PRESENCE_NAMES,
    EYE_COLUMNS,
    FrameTable,
    openface_columns,
)
from ..parsers.triangulation import read_triangulation
from ..pdm import calc_params, landmarks_3d_camera, load_pdm, pose_from_params
from ..pdm.pose import default_intrinsics
from .sources import Frame
from .types import LandmarkResult

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Camera", "FrameResult", "AUBackend", "BackendSession"]

log = logging.getLogger(__name__)

#: Model files the back end reads (OpenFace's ``AU_predictors`` folder).
PDM_FILE = "AU_predictors/In-the-wild_aligned_PDM_68.txt"
TRIANGULATION_FILE = "AU_predictors/tris_68_full.txt"

@dataclass(frozen=True)
class Camera:
    """Pinhole intrinsics in pixels."""

    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def openface_default(cls, width: int, height: int) -> "Camera":
        """OpenFace's guess when no calibration is given (``SequenceCapture``):
        fx = fy = (500 * W / 640 + 500 * H / 480) / 2, principal point at the centre."""
        return cls(*default_intrinsics(width, height))


@dataclass
class FrameResult:
    """Everything pyfaceau computed for one face in one frame (online AU values: before
    the video's offline post-processing).

    Attributes
    ----------
    frame : 1-based frame number (OpenFace's ``frame``).
    timestamp : seconds.
    success, confidence : as OpenFace's columns.
    landmarks : ``(68, 2)`` float64 pixels.
    face_id : the face's id in its input (0 for the one face of a video).
    pose : ``(6,)`` ``[Tx, Ty, Tz (mm), Rx, Ry, Rz (rad)]``, zeros when not successful.
    landmarks_3d : ``(68, 3)`` float64 millimetres, camera coordinates.
    params_global : ``(6,)`` ``[scale, rx, ry, rz, tx, ty]`` (OpenFace's ``p_scale`` ...).
    params_local : ``(34,)`` PDM shape parameters (``p_0`` ...).
    gaze : ``(8,)`` ``[gaze_0_x, gaze_0_y, gaze_0_z, gaze_1_x, ..., gaze_angle_x,
        gaze_angle_y]`` (unit vectors, radians) when the front end has eye models (the
        faithful path, ``--refine clnf-parts``; zeros on a failed frame, as OpenFace's
        CSV), else None.
    eye_landmarks : ``(56, 2)`` float64 pixels (both 28-point eye models; zeros before
        any eye fit), or None as ``gaze``.
    au_intensity : ``(n_intensity,)`` online intensities in ``intensity_names`` order
        (OpenFace's raw model outputs; 0 when not successful).
    au_presence : ``(n_presence,)`` online presence (0/1) in ``presence_names`` order.
    intensity_names, presence_names : the AU model set's outputs (``AU01`` ...).
    aligned_face : ``(112, 112, 3)`` uint8 when asked for and successful, else None.
    hog : ``(4464,)`` float64 HOG descriptor of the aligned face (12 x 12 cells x 31,
        ``hog_descriptor``) when the aligned face is asked for; on a failed frame the
        descriptor of an all-black face, as OpenFace's ``FaceAnalyser`` computes (and its
        ``.hog`` file holds) for those. Else None.
    eye_landmarks_3d : ``(56, 3)`` float64 millimetres, camera coordinates, or None as
        ``gaze``.
    """

    frame: int
    timestamp: float
    success: bool
    confidence: float
    landmarks: np.ndarray
    face_id: int = 0
    pose: np.ndarray = field(default_factory=lambda: np.zeros(6))
    landmarks_3d: np.ndarray = field(default_factory=lambda: np.zeros((68, 3)))
    params_global: np.ndarray = field(default_factory=lambda: np.zeros(6))
    params_local: np.ndarray = field(default_factory=lambda: np.zeros(34))
    gaze: np.ndarray | None = None
    eye_landmarks: np.ndarray | None = None
    au_intensity: np.ndarray = field(default_factory=lambda: np.zeros(len(AU_INTENSITY_NAMES)))
    au_presence: np.ndarray = field(default_factory=lambda: np.zeros(len(AU_PRESENCE_NAMES)))
    intensity_names: tuple[str, ...] = tuple(AU_INTENSITY_NAMES)
    presence_names: tuple[str, ...] = tuple(AU_PRESENCE_NAMES)
    aligned_face: np.ndarray | None = None
    hog: np.ndarray | None = None
    eye_landmarks_3d: np.ndarray | None = None

    def aus(self) -> dict[str, float]:
        """``{"AU01_r": ..., "AU45_c": ...}``, OpenFace's column names."""
        out = {f"{n}_r": float(v) for n, v in zip(self.intensity_names, self.au_intensity)}
        out.update({f"{n}_c": float(v) for n, v in zip(self.presence_names, self.au_presence)})
        return out


@functools.lru_cache(maxsize=1)
def _black_face_hog() -> np.ndarray:
    """``FaceAnalyser::AddNextFrame`` on a failed frame: the HOG of a zeroed aligned face."""
    hog = hog_descriptor(np.zeros((AU_SIM_SIZE, AU_SIM_SIZE, 3), dtype=np.uint8))
    hog.flags.writeable = False
    return hog


def _au_model_list_path(au_model_list: str | os.PathLike, models: ModelsArg) -> Path:
    """A main AU file given as a path, or as one of OpenFace's model files named as in
    its release (``AU_predictors/DISFA_dynamic_svms.txt``) found in the model folders."""
    path = Path(au_model_list)
    if path.is_file() or path.is_absolute() or path.as_posix() not in MANIFEST:
        return path
    return resolve(path.as_posix(), models)


class AUBackend:
    """Loaded back-end models; cheap to share between videos.

    Parameters
    ----------
    models : folders to search for model files first (see :func:`pyfaceau.modelstore.resolve`).
    dynamic : use OpenFace's dynamic AU models with person normalisation (videos, the
        default) or the static ones (single images).
    pdm_file, triangulation_file : explicit paths overriding the store.
    au_models_dir : a folder with OpenFace's ``AU_predictors`` layout (``main_dynamic_svms.txt``
        / ``main_static_svms.txt`` and the files they name), overriding the store.
    au_model_list : one of OpenFace's main AU files (e.g.
        ``AU_predictors/DISFA_dynamic_svms.txt``: DISFA's 12 AUs), overriding
        ``au_models_dir`` and the store; the output columns follow its AUs.
    batched : default of :meth:`new_session`'s ``batched``: run the AU models of the
        frames that the offline post-processing re-predicts only once, batched, at the end
        of the video. The table is the same; the per-frame results of those frames then
        carry no online AU values (``au_intensity`` and ``au_presence`` are NaN), so only
        whole-video runs that discard them (:meth:`pyfaceau.Pipeline.process`) use it.
    """

    def __init__(
        self,
        models: ModelsArg = None,
        *,
        dynamic: bool = True,
        pdm_file: str | os.PathLike | None = None,
        triangulation_file: str | os.PathLike | None = None,
        au_models_dir: str | os.PathLike | None = None,
        au_model_list: str | os.PathLike | None = None,
        batched: bool = False,
    ) -> None:
        self.dynamic = dynamic
        self.batched = batched
        self.pdm = load_pdm(pdm_file or resolve(PDM_FILE, models))
        self.triangulation = read_triangulation(
            triangulation_file or resolve(TRIANGULATION_FILE, models)
        )
        main_file = None if au_model_list is None else _au_model_list_path(au_model_list, models)
        if au_models_dir is not None and main_file is None:
            main_file = Path(au_models_dir) / ("main_dynamic_svms.txt" if dynamic else "main_static_svms.txt")
        self.au_models = load_au_models(models, dynamic=dynamic, main_file=main_file)
        #: The output columns for this AU model set, in OpenFace's order.
        self.columns = openface_columns(
            self.au_models.intensity_names, self.au_models.presence_names
        )

    def new_session(
        self,
        width: int,
        height: int,
        camera: Camera | None = None,
        keep_aligned: bool = False,
        batched: bool | None = None,
        face_id: int = 0,
        record: bool = True,
        eye_columns: bool = False,
    ) -> "BackendSession":
        """Start a video (or image sequence) of ``width`` x ``height`` pixels.

        ``camera`` (default: OpenFace's guess for each frame's size, see
        :meth:`Camera.openface_default`) applies to every frame when given.
        ``batched`` overrides the back end's setting for this session (see the class);
        ``face_id`` is written in every row; ``record=False`` keeps no rows (a live
        stream: per-frame results only, no :meth:`BackendSession.finish`).
        ``eye_columns``: the front end has OpenFace's eye models, so the table always has
        the gaze and eye-landmark columns (zeros where a frame has no eye fit), whatever
        the video holds.
        """
        return BackendSession(
            self,
            camera or Camera.openface_default(width, height),
            keep_aligned,
            self.batched if batched is None else batched,
            face_id,
            record,
            fixed_camera=camera is not None,
            eye_columns=eye_columns,
        )


class BackendSession:
    """The state of one video: running medians, per-frame rows, offline post-processing.

    Call :meth:`add` once per frame in order, then :meth:`finish` once.
    """

    def __init__(
        self,
        backend: AUBackend,
        camera: Camera,
        keep_aligned: bool,
        batched: bool,
        face_id: int = 0,
        record: bool = True,
        *,
        fixed_camera: bool = True,
        eye_columns: bool = False,
    ) -> None:
        self.backend = backend
        self.camera = camera
        self.keep_aligned = keep_aligned
        self.face_id = int(face_id)
        self.record = bool(record)
        self.analyser = AUAnalyser(
            backend.au_models,
            dynamic=backend.dynamic,
            defer_predictions=batched and record,
            record=record,
        )
        self.table = FrameTable(backend.columns)
        self._finished = False
        # The gaze / eye columns are kept when the front end has eye models, or if any
        # frame had eyes.
        self._has_eyes = eye_columns
        # Without a given camera each frame gets OpenFace's guess for its own size (an
        # image folder may hold images of several sizes).
        self._fixed_camera = fixed_camera
        self._cameras = {(round(camera.cx * 2), round(camera.cy * 2)): camera}

    def _camera_of(self, image: np.ndarray) -> Camera:
        if self._fixed_camera:
            return self.camera
        size = image.shape[1], image.shape[0]
        if size not in self._cameras:
            self._cameras[size] = Camera.openface_default(*size)
        return self._cameras[size]

    def add(self, frame: Frame, lm: LandmarkResult, aligned_face: np.ndarray | None = None) -> FrameResult:
        """Process one frame given its landmarks; returns the frame's (online) results.

        ``aligned_face`` (``(112, 112, 3)`` uint8), if given, replaces the face this stage
        would align from the frame, e.g. OpenFace's own aligned output, to test the stages
        after alignment on their own.
        """
        if self._finished:
            raise RuntimeError("this session is finished; start a new one per video")
        b = self.backend
        row: dict[str, object] = {
            "frame": frame.index + 1,
            "face_id": self.face_id,
            "timestamp": frame.timestamp,
            "confidence": lm.confidence,
            "success": int(lm.success),
        }
        names = b.au_models.intensity_names, b.au_models.presence_names
        result = FrameResult(
            frame=frame.index + 1,
            timestamp=frame.timestamp,
            success=lm.success,
            confidence=lm.confidence,
            landmarks=lm.landmarks,
            face_id=self.face_id,
            au_intensity=np.zeros(len(names[0])),
            au_presence=np.zeros(len(names[1])),
            intensity_names=names[0],
            presence_names=names[1],
        )
        c = self._camera_of(frame.image)
        # Pose, p_* and 3D landmarks from the landmark fitter's own parameters when it has
        # them (on a failed frame too: OpenFace writes its model's current state), else
        # from calc_params on a success, else zeros.
        pg, pl = lm.params_global, lm.params_local
        if lm.analysed:
            params_global, params_local = calc_params(b.pdm, lm.landmarks)
            aligned = (
                aligned_face
                if aligned_face is not None
                else align_face(frame.image, lm.landmarks, params_global, b.pdm, b.triangulation)
            )
            hog = hog_descriptor(aligned)
            geom = geometry_descriptor(b.pdm, params_local)
            intensity, presence = self.analyser.add_frame(hog, geom, True, frame.timestamp)
            if pg is None or pl is None:
                pg, pl = params_global, params_local
            result.au_intensity = np.asarray(intensity, float)
            result.au_presence = np.asarray(presence, float)
            if self.keep_aligned:
                result.aligned_face = aligned
                result.hog = hog
        else:
            self.analyser.add_frame(None, None, False, frame.timestamp)
            if self.keep_aligned:
                result.hog = _black_face_hog()
                if lm.success:  # kept, but not analysed: OpenFace's aligned face is black
                    result.aligned_face = np.zeros((AU_SIM_SIZE, AU_SIM_SIZE, 3), np.uint8)
        if pg is not None and pl is not None:
            pose = pose_from_params(b.pdm, pg, pl, lm.landmarks, c.fx, c.fy, c.cx, c.cy)
            lm3d = landmarks_3d_camera(b.pdm, pg, pl, lm.landmarks, c.fx, c.fy, c.cx, c.cy)
        else:
            pose, lm3d = np.zeros(6), np.zeros((68, 3))
            pg, pl = np.zeros(6), np.zeros(b.pdm.n_modes)
        if lm.success:
            result.pose = pose
        result.landmarks_3d, result.params_global, result.params_local = lm3d, pg, pl
        row.update(
            pose=pose,
            landmarks=lm.landmarks,
            landmarks_3d=lm3d,
            params_global=pg,
            params_local=pl,
        )
        if lm.eyes is not None:
            self._has_eyes = True
            eye_columns = self._eye_columns(lm, pose, lm3d, c)
            row.update(eye_columns)
            result.eye_landmarks = eye_columns["eye_landmarks"]
            result.eye_landmarks_3d = eye_columns["eye_landmarks_3d"]
            result.gaze = eye_columns["gaze"]
        elif self._has_eyes:  # a front end with eye models, no eye fit yet: the CSV's zeros
            result.gaze = np.zeros(8)
            result.eye_landmarks = np.zeros((56, 2))
            result.eye_landmarks_3d = np.zeros((56, 3))
        if self.record:
            self.table.add(row)
        return result

    def _eye_columns(
        self, lm: LandmarkResult, pose: np.ndarray, lm3d: np.ndarray, c: Camera
    ) -> dict:
        """OpenFace's eye landmarks (2D, 3D) and gaze (zero on failed frames, as there)."""
        assert lm.eyes is not None
        eyes_3d = [
            landmarks_3d_camera(e.pdm, e.params_global, e.params_local, e.landmarks,
                                c.fx, c.fy, c.cx, c.cy)
            for e in lm.eyes
        ]
        gaze = np.zeros(8)
        if lm.success or lm.measure_anyway:  # FeatureExtraction: success; FaceLandmarkImg: any
            g0 = eye_gaze(eyes_3d[0], lm3d, pose[3:6], left_eye=True)
            g1 = eye_gaze(eyes_3d[1], lm3d, pose[3:6], left_eye=False)
            gaze = np.concatenate([g0, g1, gaze_angle(g0, g1)]).astype(float)
        return {
            "gaze": gaze,
            "eye_landmarks": np.concatenate([e.landmarks for e in lm.eyes]),
            "eye_landmarks_3d": np.concatenate(eyes_3d),
        }

    def finish_table(self) -> FrameTable:
        """The video's table, with AUs after OpenFace's offline post-processing, as a
        :class:`FrameTable` (``write_csv`` takes it; no pandas needed)."""
        if not self.record:
            raise RuntimeError("this session keeps no rows (record=False): nothing to finish")
        self._finished = True
        intensity, presence = self.analyser.finalize()
        names = self.backend.au_models
        self.table.set_column_block([f"{n}_r" for n in names.intensity_names], intensity)
        self.table.set_column_block([f"{n}_c" for n in names.presence_names], presence)
        if self._has_eyes:  # frames before the first fit: zeros, as OpenFace's empty model
            self.table.fill_missing(EYE_COLUMNS, 0.0)
        else:  # a front end without eye models: no gaze columns
            self.table.drop(EYE_COLUMNS)
        return self.table

    def finish(self) -> pd.DataFrame:
        """The video's table, with AUs after OpenFace's offline post-processing."""
        return self.finish_table().to_dataframe()
