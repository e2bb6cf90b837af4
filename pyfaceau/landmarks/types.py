"""Typed results of the landmark stage: one face's landmarks in one frame, and the eye
part models' fits that gaze needs."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["EYE_PART_NAMES", "LandmarkResult", "PartFit", "VALIDATION_BOUNDARY", "eye_fits"]

#: Validator confidence above which a fit is a success (``validation_boundary``,
#: ``LandmarkDetectorParameters.cpp``).
VALIDATION_BOUNDARY = 0.725

#: OpenFace's 28-point eye part models, in the order of its ``eye_lmk_*`` and ``gaze_0`` /
#: ``gaze_1`` columns (the person's left eye first).
EYE_PART_NAMES = ("left_eye_28", "right_eye_28")


def _empty_landmarks() -> np.ndarray:
    return np.zeros((68, 2), dtype=np.float64)


@dataclass
class PartFit:
    """One hierarchical part model's fit (OpenFace's eye models: eye landmarks, gaze).

    Attributes
    ----------
    name : OpenFace's part name (``left_eye_28``, ``right_eye_28``).
    pdm : the part's PDM (:class:`pyfaceau.pdm.PDM`).
    landmarks : ``(k, 2)`` float64 pixels, the projection of the parameters.
    params_global : ``(6,)`` float64 ``[scale, rx, ry, rz, tx, ty]``.
    params_local : ``(m,)`` float64 shape parameters.
    """

    name: str
    pdm: object
    landmarks: np.ndarray
    params_global: np.ndarray
    params_local: np.ndarray


def eye_fits(
    parts: object,
    part_landmarks: dict[str, np.ndarray],
    part_params: dict[str, tuple[np.ndarray, np.ndarray]],
) -> tuple[PartFit, PartFit] | None:
    """The two eye models' fits from a CLNF fit's part results, or None without them.

    Parameters
    ----------
    parts : the CLNF's part models (each with ``name`` and ``core.pdm``).
    part_landmarks, part_params : part name -> landmarks / ``(params_global,
        params_local)`` (:class:`pyfaceau.landmarks.clnf.model.FitResult`).
    """
    pdms = {p.name: p.core.pdm for p in parts}
    if not all(n in pdms and n in part_params and n in part_landmarks for n in EYE_PART_NAMES):
        return None
    left, right = (
        PartFit(
            name,
            pdms[name],
            np.array(part_landmarks[name], dtype=np.float64),
            np.array(part_params[name][0], dtype=np.float64),
            np.array(part_params[name][1], dtype=np.float64),
        )
        for name in EYE_PART_NAMES
    )
    return left, right


@dataclass
class LandmarkResult:
    """What a landmark tracker found in one frame (one face).

    Attributes
    ----------
    success : whether a face was found and its landmarks are trusted
        (OpenFace's ``success`` column).
    confidence : OpenFace's ``confidence`` column, in [0, 1]: the CLNF validator's
        certainty wherever CLNF fits (the faithful path, ``--fast`` with its default CLNF
        tracking); the detector's score with ``--refine svr`` or ``--no-refine``.
    landmarks : ``(68, 2)`` float64, pixels (x, y). When ``success`` is False: the
        fitter's last attempt where it has one (OpenFace writes those), else zeros.
    params_global : ``(6,)`` float64 ``[scale, rx, ry, rz, tx, ty]`` of the landmark fitter
        (CLNF, or the SVR refiner's PDM fit), or None when the front end has no PDM fit of
        its own (``--no-refine``, a landmark CSV).
    params_local : ``(34,)`` float64 shape parameters of the fitter, or None.
    eyes : the two eye part models' fits (:data:`EYE_PART_NAMES` order) when the front end
        runs them (the OpenFace-faithful path, ``--refine clnf-parts``), else None; the
        back end derives OpenFace's ``eye_lmk_*`` and ``gaze_*`` columns from them.
    validated : the detection validator's own verdict on this fit (OpenFace's
        ``face_model.detection_success``), or None when the front end has none apart from
        ``success``. They differ on a track's first detection, which OpenFace keeps
        (``success``) even when the validator rejects it; ``FeatureExtraction`` then gives
        the AU analysis the validator's verdict: that frame's AUs, aligned face and HOG
        are those of a frame without a face (:attr:`analysed`).
    measure_anyway : a still's detected face: OpenFace's ``FaceLandmarkImg`` measures its
        AUs and gaze whether or not the validator accepted the fit (``success``).
    """

    success: bool
    confidence: float = 0.0
    landmarks: np.ndarray = field(default_factory=_empty_landmarks)
    params_global: np.ndarray | None = None
    params_local: np.ndarray | None = None
    eyes: tuple[PartFit, PartFit] | None = None
    validated: bool | None = None
    measure_anyway: bool = False

    @property
    def analysed(self) -> bool:
        """Whether the AU analysis takes this face (``FaceAnalyser::AddNextFrame``'s
        ``success``): a success the validator did not reject, or a still's face."""
        return self.measure_anyway or (bool(self.success) and self.validated is not False)

    @classmethod
    def failed(cls) -> "LandmarkResult":
        """The result for a frame without a face."""
        return cls(success=False)
