"""OpenFace's SVR patch expert files (``svr_patches_*_general.txt``, text).

Layout, as read by ``Patch_experts::Read_SVR_patch_experts``,
``Multi_SVR_patch_expert::Read`` and ``SVR_patch_expert::Read`` (OpenFace 2.2,
``LandmarkDetector/src/Patch_experts.cpp``, ``SVR_patch_expert.cpp``); whitespace-separated
tokens, ``#`` comment lines between records::

    float   patch_scaling                 (scale of the reference shape the experts see)
    int     n_views
    n_views x text matrix  view centre    (3 x 1 float64, degrees: pitch, yaw, roll)
    n_views x text matrix  visibility     (n x 1 int32)
    n_views x n x multi-modal expert:
        int 3, int width, int height, int n_modalities
        n_modalities x expert:
            int 2, int type (0 = raw pixels, 1 = gradient), float confidence,
            float scaling, float bias, text matrix weights (stored column-major: OpenFace
            transposes it after reading)

The reader is strict: a wrong marker, an unknown feature type, a weight matrix whose
shape does not match the expert's size, a short read or trailing values raise
:class:`~pyfaceau.errors.ModelFileError` naming the file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelFileError
from ..modelstore.cache import cached_parser
from ._matrix import TextReader

__all__ = [
    "SVRPatchExpert",
    "MultiSVRPatchExpert",
    "SVRPatchFile",
    "read_svr_patches",
    "FEATURE_RAW",
    "FEATURE_GRADIENT",
]

#: Marker of a multi-modal expert record (``Multi_SVR_patch_expert::Read``).
MULTI_EXPERT_MARKER = "3"
#: Marker of a single SVR expert record (``SVR_patch_expert::Read``).
EXPERT_MARKER = "2"
#: Feature type 0: the raw intensities, normalised (``SVR_patch_expert::Response``).
FEATURE_RAW = 0
#: Feature type 1: squared central-difference gradient magnitude (``Grad``).
FEATURE_GRADIENT = 1


@dataclass(frozen=True, eq=False)
class SVRPatchExpert:
    """One linear SVR patch expert (``SVR_patch_expert``).

    Attributes
    ----------
    feature_type : 0 raw pixels, 1 gradient.
    confidence : the expert's confidence (unused by the response).
    scaling, bias : logistic parameters: response ``1 / (1 + exp(-(ncc * scaling + bias)))``.
    weights : ``(height, width)`` float32, already transposed as OpenFace does.
    """

    feature_type: int
    confidence: float
    scaling: float
    bias: float
    weights: np.ndarray


@dataclass(frozen=True, eq=False)
class MultiSVRPatchExpert:
    """The experts of one landmark in one view (``Multi_SVR_patch_expert``).

    Attributes
    ----------
    width, height : support of the experts, pixels of the reference frame.
    modalities : the experts whose responses are multiplied.
    """

    width: int
    height: int
    modalities: tuple[SVRPatchExpert, ...]


@dataclass(frozen=True, eq=False)
class SVRPatchFile:
    """A whole SVR patch expert file.

    Attributes
    ----------
    patch_scaling : scale of the reference shape (0.25, 0.35 or 0.5).
    centers : ``(n_views, 3)`` float64 view orientations, radians (pitch, yaw, roll),
        converted from the file's degrees as OpenFace does.
    visibilities : ``(n_views, n)`` bool, landmark visible in a view.
    experts : ``experts[view][landmark]``.
    path : the file read.
    """

    patch_scaling: float
    centers: np.ndarray
    visibilities: np.ndarray
    experts: tuple[tuple[MultiSVRPatchExpert, ...], ...]
    path: Path

    @property
    def n_views(self) -> int:
        return int(self.centers.shape[0])

    @property
    def n_points(self) -> int:
        return int(self.visibilities.shape[1])


def _read_expert(r: TextReader, where: str) -> SVRPatchExpert:
    r.expect(EXPERT_MARKER)
    feature_type = r.int()
    if feature_type not in (FEATURE_RAW, FEATURE_GRADIENT):
        raise ModelFileError(f"{r.path}: {where}: unsupported SVR feature type {feature_type}")
    confidence, scaling, bias = r.float(), r.float(), r.float()
    weights = r.mat()
    for name, v in (("confidence", confidence), ("scaling", scaling), ("bias", bias)):
        if not math.isfinite(v):
            raise ModelFileError(f"{r.path}: {where}: {name} is not finite")
    if not np.isfinite(weights).all():
        raise ModelFileError(f"{r.path}: {where}: weights are not finite")
    # OpenCV and Matlab matrix order differ: OpenFace transposes after reading.
    w = np.ascontiguousarray(weights.T, dtype=np.float32)
    w.setflags(write=False)
    return SVRPatchExpert(feature_type, confidence, scaling, bias, w)


@cached_parser("svr_patches", code=["pyfaceau.parsers._matrix"])
def read_svr_patches(path: str | Path) -> SVRPatchFile:
    """Read an OpenFace SVR patch expert file strictly.

    Parameters
    ----------
    path : e.g. ``svr_patches_0.25_general.txt`` (use
        ``pyfaceau.modelstore.resolve("model/patch_experts/svr_patches_0.25_general.txt")``).

    Returns
    -------
    SVRPatchFile

    Raises
    ------
    ModelFileError
        If the file is missing, truncated, has a wrong marker, an unknown feature type,
        badly shaped matrices or trailing values.
    """
    r = TextReader(path)
    scaling = r.float()
    if not (math.isfinite(scaling) and scaling > 0):
        raise ModelFileError(f"{r.path}: patch scaling must be positive, got {scaling}")
    n_views = r.int()
    if not 1 <= n_views <= 64:
        raise ModelFileError(f"{r.path}: implausible number of views {n_views}")
    centers = np.zeros((n_views, 3), dtype=np.float64)
    for v in range(n_views):
        c = r.mat()
        if c.size != 3:
            raise ModelFileError(f"{r.path}: view {v} centre has {c.size} values, expected 3")
        centers[v] = c.reshape(3).astype(np.float64) * math.pi / 180.0
    vis_list = []
    for v in range(n_views):
        m = r.mat()
        if m.ndim != 2 or m.shape[1] != 1:
            raise ModelFileError(f"{r.path}: view {v} visibility is {m.shape}, expected (n, 1)")
        vis_list.append(m[:, 0] != 0)
    n_points = vis_list[0].shape[0]
    if any(v.shape[0] != n_points for v in vis_list) or n_points < 1:
        raise ModelFileError(f"{r.path}: visibility matrices disagree on the number of points")
    experts: list[tuple[MultiSVRPatchExpert, ...]] = []
    for v in range(n_views):
        row: list[MultiSVRPatchExpert] = []
        for j in range(n_points):
            where = f"view {v} landmark {j}"
            r.expect(MULTI_EXPERT_MARKER)
            width, height, n_mod = r.int(), r.int(), r.int()
            if not (1 <= width <= 256 and 1 <= height <= 256 and 0 <= n_mod <= 16):
                raise ModelFileError(
                    f"{r.path}: {where}: bad expert header ({width} x {height}, {n_mod} modalities)"
                )
            mods = tuple(_read_expert(r, where) for _ in range(n_mod))
            for e in mods:
                if e.weights.shape != (height, width):
                    raise ModelFileError(
                        f"{r.path}: {where}: weights are {e.weights.shape}, expected "
                        f"({height}, {width})"
                    )
            row.append(MultiSVRPatchExpert(width, height, mods))
        experts.append(tuple(row))
    if not r.at_end():
        raise ModelFileError(f"{r.path}: unexpected values after the last patch expert")
    vis = np.stack(vis_list)
    vis.setflags(write=False)
    centers.setflags(write=False)
    return SVRPatchFile(scaling, centers, vis, tuple(experts), Path(path))
