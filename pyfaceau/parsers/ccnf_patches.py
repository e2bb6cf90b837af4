"""OpenFace's CCNF patch expert files (``ccnf_patches_*.txt``, binary despite the name).

Layout, as read by ``Patch_experts::Read_CCNF_patch_experts``,
``CCNF_patch_expert::Read`` and ``CCNF_neuron::Read`` (``LandmarkDetector/src/
Patch_experts.cpp``, ``CCNF_patch_expert.cpp``), all little-endian::

    float64  patch_scaling                 (scale of the reference shape the experts see)
    int32    n_views
    n_views x binary matrix  view centre   (3 x 1, degrees: pitch, yaw, roll)
    n_views x binary matrix  visibility    (n x 1 int32)
    int32    n_window_sizes
    n_window_sizes x {int32 window_size, int32 n_components,
                      n_components x binary matrix (w*w x w*w float32)}
    n_views x n x patch expert:
        int32 5, int32 width, int32 height, int32 n_neurons
        n_neurons == 0: int32 (ignored) -- an empty expert (landmark invisible in the view)
        otherwise n_neurons x neuron:
            int32 2, int32 neuron_type, float64 norm_weights, float64 bias,
            float64 alpha, binary matrix weights (height x width)
        then n_components x float64 beta (only if n_window_sizes > 0)
        and float64 patch_confidence

The reader is strict: a wrong marker, an unsupported neuron type, a short read or
trailing bytes raise :class:`~pyfaceau.errors.ModelFileError` naming the file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ModelFileError
from ._matrix import BinaryReader

__all__ = ["CCNFNeuron", "CCNFPatchExpert", "CCNFPatchFile", "read_ccnf_patches"]

#: Marker of a patch expert record (``CCNF_patch_expert::Read``, CCNF_patch_expert.cpp).
PATCH_MARKER = 5
#: Marker of a neuron record (``CCNF_neuron::Read``, CCNF_patch_expert.cpp).
NEURON_MARKER = 2
#: Neuron types OpenFace can evaluate: 0 = intensity (``TM_CCOEFF_NORMED``-like response).
#: Type 3 (depth) is only supported by OpenFace's slow FFT path, which it does not use.
SUPPORTED_NEURON_TYPES = (0,)


@dataclass(frozen=True)
class CCNFNeuron:
    """One neuron of a CCNF patch expert (OpenFace's ``CCNF_neuron``).

    Attributes
    ----------
    neuron_type : 0 (intensity).
    norm_weights : float, scale applied to the normalised cross-correlation.
    bias : float, added before the sigmoid.
    alpha : float, the neuron's weight in the CRF (``2 * alpha * sigmoid(...)``).
    weights : (height, width) float32 template.
    """

    neuron_type: int
    norm_weights: float
    bias: float
    alpha: float
    weights: np.ndarray


@dataclass(frozen=True)
class CCNFPatchExpert:
    """One landmark's CCNF patch expert in one view (OpenFace's ``CCNF_patch_expert``).

    Attributes
    ----------
    width, height : support region in pixels of the reference frame (e.g. 11 x 11).
    neurons : the neurons; empty when the landmark is not visible in this view.
    betas : (n_components,) float64 edge weights of the sigma components.
    patch_confidence : float, the expert's reliability (NU-RLMS weight).
    """

    width: int
    height: int
    neurons: tuple[CCNFNeuron, ...]
    betas: np.ndarray = field(default_factory=lambda: np.zeros(0))
    patch_confidence: float = 0.0

    @property
    def empty(self) -> bool:
        """True when the expert has no neurons (landmark invisible in its view)."""
        return len(self.neurons) == 0


@dataclass(frozen=True)
class CCNFPatchFile:
    """The content of one CCNF patch expert file (one scale).

    Attributes
    ----------
    path : the file read.
    patch_scaling : float, scale of the reference shape (0.25, 0.35, 0.5, 1.0 ...).
    centers : (n_views, 3) float64 view orientations in radians (pitch, yaw, roll),
        converted from the file's degrees with ``* pi / 180`` as OpenFace does.
    visibilities : (n_views, n) int32, non-zero where a landmark is visible in a view.
    window_sizes : window sizes that have sigma components, in file order.
    sigma_components : one list per window size of ``(w*w, w*w)`` float32 matrices.
    experts : ``experts[view][landmark]``.
    """

    path: Path
    patch_scaling: float
    centers: np.ndarray
    visibilities: np.ndarray
    window_sizes: tuple[int, ...]
    sigma_components: tuple[tuple[np.ndarray, ...], ...]
    experts: tuple[tuple[CCNFPatchExpert, ...], ...]

    @property
    def n_views(self) -> int:
        return self.centers.shape[0]

    @property
    def n_points(self) -> int:
        return self.visibilities.shape[1]


def _expect(cond: bool, path: Path, what: str) -> None:
    if not cond:
        raise ModelFileError(f"{path}: not a CCNF patch expert file ({what})")


def _read_neuron(r: BinaryReader) -> CCNFNeuron:
    marker = r.int32()
    _expect(marker == NEURON_MARKER, r.path, f"neuron marker {marker}, expected {NEURON_MARKER}")
    neuron_type = r.int32()
    if neuron_type not in SUPPORTED_NEURON_TYPES:
        raise ModelFileError(
            f"{r.path}: unsupported CCNF neuron type {neuron_type} (OpenFace supports 0)"
        )
    norm_weights = r.float64()
    bias = r.float64()
    alpha = r.float64()
    weights = r.mat()
    _expect(weights.size > 0, r.path, "empty neuron weights")
    for v, name in ((norm_weights, "norm_weights"), (bias, "bias"), (alpha, "alpha")):
        _expect(math.isfinite(v), r.path, f"non-finite {name}")
    return CCNFNeuron(
        neuron_type=neuron_type,
        norm_weights=norm_weights,
        bias=bias,
        alpha=alpha,
        weights=np.ascontiguousarray(weights, dtype=np.float32),
    )


def _read_expert(r: BinaryReader, n_components: int, has_sigmas: bool) -> CCNFPatchExpert:
    marker = r.int32()
    _expect(marker == PATCH_MARKER, r.path, f"patch marker {marker}, expected {PATCH_MARKER}")
    width, height, n_neurons = r.int32(), r.int32(), r.int32()
    _expect(0 < width < 1000 and 0 < height < 1000, r.path, f"patch size {width} x {height}")
    _expect(0 <= n_neurons < 10000, r.path, f"{n_neurons} neurons")
    if n_neurons == 0:
        r.int32()  # an unused int written after an empty expert
        return CCNFPatchExpert(width=width, height=height, neurons=())
    neurons = tuple(_read_neuron(r) for _ in range(n_neurons))
    for nr in neurons:
        _expect(
            nr.weights.shape == (height, width),
            r.path,
            f"neuron weights {nr.weights.shape}, expected ({height}, {width})",
        )
    betas = r.scalars("<f8", n_components) if has_sigmas else np.zeros(0)
    confidence = r.float64()
    return CCNFPatchExpert(
        width=width,
        height=height,
        neurons=neurons,
        betas=betas.astype(np.float64),
        patch_confidence=confidence,
    )


def read_ccnf_patches(path: str | Path) -> CCNFPatchFile:
    """Read an OpenFace CCNF patch expert file.

    Parameters
    ----------
    path : e.g. ``resolve("model/patch_experts/ccnf_patches_0.25_general.txt")``.

    Returns
    -------
    CCNFPatchFile

    Raises
    ------
    ModelFileError
        If the file is missing, truncated, has trailing bytes or is not a CCNF file.
    """
    r = BinaryReader(path)
    p = r.path
    patch_scaling = r.float64()
    _expect(math.isfinite(patch_scaling) and 0 < patch_scaling < 100, p, "patch scaling")
    n_views = r.int32()
    _expect(0 < n_views < 1000, p, f"{n_views} views")
    centers = []
    for _ in range(n_views):
        c = r.mat().astype(np.float64).reshape(-1)
        _expect(c.shape == (3,), p, "view centre is not 3 values")
        centers.append(c * math.pi / 180.0)
    vis = []
    for _ in range(n_views):
        v = r.mat()
        _expect(v.ndim == 2 and v.shape[1] == 1, p, "visibility is not a column")
        vis.append(v[:, 0].astype(np.int32))
    n_points = vis[0].shape[0]
    _expect(all(v.shape[0] == n_points for v in vis), p, "visibilities differ in length")

    n_windows = r.int32()
    _expect(0 <= n_windows < 100, p, f"{n_windows} window sizes")
    window_sizes: list[int] = []
    sigma_components: list[tuple[np.ndarray, ...]] = []
    n_components = 0
    for w_i in range(n_windows):
        w = r.int32()
        n_comp = r.int32()
        _expect(0 < w < 100 and 0 <= n_comp < 100, p, f"window {w} with {n_comp} components")
        comps = []
        for _ in range(n_comp):
            m = r.mat()
            _expect(m.shape == (w * w, w * w), p, f"sigma component {m.shape} for window {w}")
            comps.append(np.ascontiguousarray(m, dtype=np.float32))
        if w_i == 0:
            n_components = n_comp
        window_sizes.append(w)
        sigma_components.append(tuple(comps))

    experts = []
    for _ in range(n_views):
        experts.append(
            tuple(_read_expert(r, n_components, n_windows > 0) for _ in range(n_points))
        )
    if not r.at_end():
        raise ModelFileError(f"{p}: unexpected bytes after the last CCNF patch expert")
    return CCNFPatchFile(
        path=p,
        patch_scaling=patch_scaling,
        centers=np.array(centers, dtype=np.float64),
        visibilities=np.array(vis, dtype=np.int32),
        window_sizes=tuple(window_sizes),
        sigma_components=tuple(sigma_components),
        experts=tuple(experts),
    )
