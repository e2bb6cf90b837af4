"""What to do with an input: the one options object of :class:`pyfaceau.Pipeline`.

:class:`Options` is immutable and holds no loaded models; build one with the constructor or
with the presets :meth:`Options.faithful`, :meth:`Options.fast` and
:meth:`Options.openface_csv`, and derive variants with :meth:`Options.replace`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Sequence

from .errors import InputError
from .modelstore.store import ModelsArg

__all__ = [
    "AUModelSet",
    "Detector",
    "LandmarkMethod",
    "ModelsArg",
    "Options",
    "Refinement",
    "available_cores",
]



class Detector(str, Enum):
    """The face detector."""

    MTCNN = "mtcnn"  #: OpenFace's MTCNN with OpenFace's weights (faithful path)
    RETINAFACE = "retinaface"  #: RetinaFace MobileNet-0.25 (fast path)


class LandmarkMethod(str, Enum):
    """Where the 68 landmarks come from."""

    CLNF = "clnf"  #: OpenFace's CLNF, initialised from the box (faithful path)
    PFLD = "pfld"  #: PFLD in the detector's box, then the :class:`Refinement`
    CSV = "csv"  #: an existing OpenFace CSV (``Options.landmarks_csv``)


class Refinement(str, Enum):
    """What follows PFLD's landmarks (``LandmarkMethod.PFLD`` only)."""

    CLNF = "clnf"  #: OpenFace's CLNF tracks all 68 landmarks (default of the fast path)
    #: ... with OpenFace's part models (inner face, both eyes) where OpenFace runs them:
    #: OpenFace's 714 columns with gaze and eye landmarks, and large faces as close to
    #: OpenFace's as small ones; about 1.6x the time on large faces, nothing more on small
    #: ones (docs/accuracy.md, section 3b)
    CLNF_PARTS = "clnf-parts"
    SVR = "svr"  #: OpenFace's SVR patch experts refine the 9 AU-critical landmarks
    NONE = "none"  #: PFLD's landmarks as they are

    @property
    def tracks_with_clnf(self) -> bool:
        """Whether OpenFace's CLNF tracks the landmarks (with or without its part models)."""
        return self in (Refinement.CLNF, Refinement.CLNF_PARTS)


class AUModelSet(str, Enum):
    """Which of OpenFace's AU models run."""

    AUTO = "auto"  #: dynamic for videos and image sequences, static for a single image
    DYNAMIC = "dynamic"  #: person normalisation, offline post-processing (FeatureExtraction)
    STATIC = "static"  #: no person normalisation (FaceLandmarkImg, ``-au_static``)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _enum(kind: type[Enum], value: object, field: str) -> Enum:
    if isinstance(value, kind):
        return value
    try:
        if not isinstance(value, str):  # None is not "none"
            raise ValueError
        return kind(value.lower())
    except ValueError:
        allowed = ", ".join(m.value for m in kind)  # type: ignore[attr-defined]
        raise InputError(f"{field}: expected one of {allowed}, got {value!r}") from None


@dataclass(frozen=True)
class Options:
    """Everything that decides what a :class:`pyfaceau.Pipeline` computes.

    Attributes
    ----------
    detector : :class:`Detector` (``"mtcnn"`` or ``"retinaface"``).
    landmarks : :class:`LandmarkMethod` (``"clnf"``, ``"pfld"`` or ``"csv"``).
    refinement : :class:`Refinement` after PFLD (``"clnf"``, ``"clnf-parts"``, ``"svr"``,
        ``"none"``); must be ``"none"`` with the other landmark methods.
    au_models : :class:`AUModelSet` (``"auto"``, ``"dynamic"``, ``"static"``).
    au_model_list : one of OpenFace's main AU files, to use another of its AU model lists:
        a path, or a name of OpenFace's release found in the model folders (e.g.
        ``AU_predictors/DISFA_dynamic_svms.txt``, DISFA's 12 AUs); the output columns
        follow its AUs. None: OpenFace's default (``main_dynamic_svms.txt`` or
        ``main_static_svms.txt`` from the model store).
    models : model folders searched first (see :func:`pyfaceau.modelstore.resolve`),
        normalised to a tuple of strings.
    threads : cores used on one input; None: every core the process may use
        (:func:`available_cores`). The output does not depend on it.
    max_faces : faces measured per frame of a video, image sequence or stream (1: the
        widest face, as OpenFace's FeatureExtraction; more: up to this many faces, each a
        person with its own ``face_id``, person normalisation and offline post-processing,
        see :mod:`pyfaceau.pipeline.faces`). Not with ``landmarks="csv"``.
    landmarks_csv : the OpenFace CSV for ``landmarks="csv"``.
    strict : an input cut short (a video that ends before the frame count its container
        announces, an image of a folder that cannot be decoded) is an error
        (:class:`~pyfaceau.errors.IncompleteInputWarning` raised by
        :meth:`~pyfaceau.Pipeline.process`, nothing written) instead of a warning.
    """

    detector: Detector = Detector.MTCNN
    landmarks: LandmarkMethod = LandmarkMethod.CLNF
    refinement: Refinement = Refinement.NONE
    au_models: AUModelSet = AUModelSet.AUTO
    au_model_list: str | None = None
    models: tuple[str, ...] | None = None
    threads: int | None = None
    max_faces: int = 1
    landmarks_csv: str | None = None
    strict: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "detector", _enum(Detector, self.detector, "detector"))
        set_(self, "landmarks", _enum(LandmarkMethod, self.landmarks, "landmarks"))
        set_(self, "refinement", _enum(Refinement, self.refinement, "refinement"))
        set_(self, "au_models", _enum(AUModelSet, self.au_models, "au_models"))
        set_(self, "models", _normalise_models(self.models))
        for name in ("au_model_list", "landmarks_csv"):
            value = getattr(self, name)
            if value is not None:
                if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
                    raise InputError(f"{name}: expected a file path, got {value!r}")
                set_(self, name, os.fspath(value))
        if self.landmarks is LandmarkMethod.PFLD and self.detector is not Detector.RETINAFACE:
            raise InputError("landmarks 'pfld' goes with detector 'retinaface'")
        if self.landmarks is LandmarkMethod.CLNF and self.detector is not Detector.MTCNN:
            # CLNF starts from MTCNN's boxes, as OpenFace does (a CSV needs no detector)
            raise InputError(
                f"detector '{self.detector.value}' goes with landmarks 'pfld' only "
                "(Options.fast())")
        if self.landmarks is not LandmarkMethod.PFLD and self.refinement is not Refinement.NONE:
            raise InputError(
                f"refinement '{self.refinement.value}' goes with landmarks 'pfld' only"
            )
        if (self.landmarks is LandmarkMethod.CSV) != (self.landmarks_csv is not None):
            raise InputError("landmarks 'csv' and landmarks_csv go together")
        from .validation import require_index  # NumPy's integers too; not a bool

        if self.threads is not None:
            set_(self, "threads", require_index(self.threads, "threads", minimum=1))
        set_(self, "max_faces", require_index(self.max_faces, "max_faces", minimum=1))
        if self.max_faces != 1 and self.landmarks is LandmarkMethod.CSV:
            raise InputError("max_faces: a landmark CSV gives one face; use max_faces=1")
        if type(self.strict).__name__ not in ("bool", "bool_"):  # Python's or NumPy's
            raise InputError(f"strict: expected True or False, got {self.strict!r}")
        set_(self, "strict", bool(self.strict))

    # -- presets ---------------------------------------------------------------------------
    @classmethod
    def faithful(cls, **kwargs: object) -> "Options":
        """OpenFace's own front end: MTCNN + CLNF (the default)."""
        return cls(detector=Detector.MTCNN, landmarks=LandmarkMethod.CLNF, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def fast(cls, refinement: Refinement | str = Refinement.CLNF, **kwargs: object) -> "Options":
        """RetinaFace + PFLD, then ``refinement`` (default: CLNF tracking)."""
        return cls(
            detector=Detector.RETINAFACE,
            landmarks=LandmarkMethod.PFLD,
            refinement=refinement,  # type: ignore[arg-type]
            **kwargs,  # type: ignore[arg-type]
        )

    @classmethod
    def openface_csv(cls, landmarks_csv: str | os.PathLike, **kwargs: object) -> "Options":
        """The landmarks of an existing OpenFace CSV, re-scored by pyfaceau's back end."""
        if landmarks_csv is None:
            raise InputError("landmarks_csv: expected a file path, got None")
        return cls(landmarks=LandmarkMethod.CSV, landmarks_csv=landmarks_csv, **kwargs)  # type: ignore[arg-type]

    def replace(self, **changes: object) -> "Options":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    # -- derived ---------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        """``"faithful"``, ``"fast"`` or ``"csv"``: the landmark front end's family."""
        if self.landmarks is LandmarkMethod.CSV:
            return "csv"
        return "fast" if self.landmarks is LandmarkMethod.PFLD else "faithful"

    @property
    def cores(self) -> int:
        """The thread count to use: ``threads``, or every available core."""
        return self.threads if self.threads is not None else available_cores()

    def dynamic_for(self, kind: str) -> bool:
        """Whether the dynamic AU models run on a source of ``kind``
        (``"video"``, ``"sequence"``, ``"image"``, ``"stream"``)."""
        if self.au_models is AUModelSet.AUTO:
            return kind != "image"
        return self.au_models is AUModelSet.DYNAMIC


def _normalise_models(models: object) -> tuple[str, ...] | None:
    if models is None:
        return None
    if isinstance(models, (str, os.PathLike)):
        parts = [p for p in os.fspath(models).split(os.pathsep) if p]
    elif isinstance(models, (list, tuple)) and all(
            isinstance(m, (str, os.PathLike)) for m in models):
        parts = [os.fspath(m) for m in models]
    else:
        raise InputError(f"models: expected a folder or a list of folders, got {models!r}")
    return tuple(str(Path(p)) for p in parts) or None
