"""An appearance descriptor of a face for re-identification within one video.

Computed on the face as the back end already aligns it for the AUs (OpenFace's
``AlignFaceMask``: similarity-aligned on the rigid landmarks, 112 x 112, masked to the
face), it joins two halves of equal weight, each of unit length:

- texture: the local-binary-pattern face descriptor (Ahonen, Hadid and Pietikäinen, 2006),
  a coarse grid of cells, in each a histogram of the 59 uniform 8-neighbour LBP codes,
  square-rooted (Hellinger);
- colour: a hue-saturation histogram of the face pixels (skin, hair, lighting of the
  scene), square-rooted.

It needs no model file. It is not a face-recognition network: within one video it tells a
handful of people apart, but across the nine sample videos some different people come as
close as one person does to themselves minutes later (``docs/multiface.md``); the rule
that uses it (:mod:`pyfaceau.pipeline.faces`) only compares a returning face with the
people that are not tracked at that moment.

Stages of :func:`lbp_descriptor`:

1. grey levels of the aligned face (float32);
2. the 8-neighbour LBP code of every inner pixel (radius 1, neighbours >= centre);
3. codes mapped to the 58 uniform patterns plus one bin for every other code;
4. one histogram per cell of a :data:`DESCRIPTOR_CELLS` grid, masked pixels left out;
5. square root of the cell frequencies, then the whole vector to unit length.

References
----------
T. Ahonen, A. Hadid, M. Pietikäinen, "Face description with local binary patterns:
application to face recognition", IEEE TPAMI 28(12), 2006.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..alignment import align_face
from ..pdm import calc_params

__all__ = [
    "DESCRIPTOR_CELLS",
    "SAME_PERSON_DISTANCE",
    "Gallery",
    "descriptor_distance",
    "face_descriptor",
    "colour_descriptor",
    "lbp_descriptor",
]

#: Cells per side of the LBP histogram grid on the 112 x 112 aligned face (37 px cells:
#: finer grids separated the sample videos' people less, docs/multiface.md).
DESCRIPTOR_CELLS = 3
#: Hue and saturation bins of the colour histogram (OpenCV hue 0-180, saturation 0-256).
COLOUR_BINS = (16, 8)
#: Largest descriptor distance (Euclidean, unit vectors) at which two faces of one video
#: are taken for the same person: above the largest distance of a person to their own
#: earlier views on the sample videos (0.61), docs/multiface.md.
SAME_PERSON_DISTANCE = 0.65
#: Descriptors kept per person (the most recent ones are replaced in turn).
GALLERY_SIZE = 16


def _uniform_lut() -> np.ndarray:
    """Code (0-255) -> bin: the 58 uniform patterns (at most 2 transitions, circularly)
    in code order get bins 0-57, every other code bin 58."""
    lut = np.full(256, 58, dtype=np.int64)
    k = 0
    for code in range(256):
        bits = [(code >> i) & 1 for i in range(8)]
        if sum(bits[i] != bits[(i + 1) % 8] for i in range(8)) <= 2:
            lut[code] = k
            k += 1
    return lut


_LUT = _uniform_lut()
_BINS = 59
#: The 8 neighbours (dy, dx), in bit order.
_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))


def lbp_descriptor(aligned: np.ndarray, cells: int = DESCRIPTOR_CELLS) -> np.ndarray:
    """The LBP-histogram descriptor of an aligned face.

    Parameters
    ----------
    aligned : ``(S, S, 3)`` uint8 BGR or ``(S, S)`` uint8 grey aligned face (pixels that
        are exactly 0 are the mask and are left out).
    cells : cells per side of the histogram grid.

    Returns
    -------
    ``(cells * cells * 59,)`` float32, unit length (all zeros for an empty face).
    """
    # 1. grey levels
    g = aligned if aligned.ndim == 2 else cv2.cvtColor(aligned, cv2.COLOR_BGR2GRAY)
    g = g.astype(np.float32)
    h, w = g.shape
    centre = g[1:-1, 1:-1]
    # 2. 8-neighbour codes of the inner pixels
    code = np.zeros(centre.shape, dtype=np.int64)
    for bit, (dy, dx) in enumerate(_NEIGHBOURS):
        code |= (g[1 + dy : h - 1 + dy, 1 + dx : w - 1 + dx] >= centre).astype(np.int64) << bit
    # 3. uniform-pattern bins
    bins = _LUT[code]
    # 4. a histogram per cell, over the face (unmasked) pixels only
    valid = centre > 0
    rows = np.minimum((np.arange(h - 2) * cells) // (h - 2), cells - 1)
    cols = np.minimum((np.arange(w - 2) * cells) // (w - 2), cells - 1)
    cell = rows[:, None] * cells + cols[None, :]
    index = (cell * _BINS + bins)[valid]
    hist = np.bincount(index, minlength=cells * cells * _BINS).astype(np.float64)
    counts = hist.reshape(cells * cells, _BINS).sum(axis=1, keepdims=True)
    freq = hist.reshape(cells * cells, _BINS) / np.maximum(counts, 1.0)
    # 5. Hellinger mapping, unit length
    vec = np.sqrt(freq).ravel()
    norm = float(np.linalg.norm(vec))
    return (vec / norm if norm > 0 else vec).astype(np.float32)


def colour_descriptor(aligned: np.ndarray) -> np.ndarray:
    """Square-rooted hue-saturation histogram of the face pixels of an aligned face.

    Parameters
    ----------
    aligned : ``(S, S, 3)`` uint8 BGR aligned face (pixels that are exactly 0 in every
        channel are the mask and are left out).

    Returns
    -------
    ``(COLOUR_BINS[0] * COLOUR_BINS[1],)`` float32, unit length (zeros for an empty face).
    """
    hsv = cv2.cvtColor(aligned, cv2.COLOR_BGR2HSV)
    mask = (aligned.max(axis=2) > 0).astype(np.uint8)
    hist = cv2.calcHist([hsv], [0, 1], mask, list(COLOUR_BINS), [0, 180, 0, 256]).ravel()
    vec = np.sqrt(hist / max(float(hist.sum()), 1.0))
    norm = float(np.linalg.norm(vec))
    return (vec / norm if norm > 0 else vec).astype(np.float32)


def face_descriptor(
    image_bgr: np.ndarray, landmarks: np.ndarray, pdm: object, triangulation: np.ndarray
) -> np.ndarray:
    """The appearance descriptor of the face with ``landmarks`` in a frame.

    Parameters
    ----------
    image_bgr : ``(H, W, 3)`` uint8 BGR frame.
    landmarks : ``(68, 2)`` float64 pixels.
    pdm, triangulation : the back end's PDM and face triangulation (the face is aligned
        exactly as for the AUs: :func:`pyfaceau.alignment.align_face`).

    Returns
    -------
    ``(DESCRIPTOR_CELLS**2 * 59 + COLOUR_BINS[0] * COLOUR_BINS[1],)`` float32 unit vector:
    the LBP descriptor and the colour histogram, each of unit length, joined and scaled
    to unit length.
    """
    params_global, _ = calc_params(pdm, landmarks)
    aligned = align_face(image_bgr, landmarks, params_global, pdm, triangulation)
    both = np.concatenate([lbp_descriptor(aligned), colour_descriptor(aligned)])
    norm = float(np.linalg.norm(both))
    return (both / norm if norm > 0 else both).astype(np.float32)


def descriptor_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two unit descriptors, in [0, 2] (0: identical)."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


class Gallery:
    """A person's recent descriptors; the distance of a face to the person is the smallest
    distance to any of them (a face seen under a new pose still meets an earlier view)."""

    def __init__(self, size: int = GALLERY_SIZE) -> None:
        self.size = int(size)
        self._items: list[np.ndarray] = []
        self._next = 0

    def __len__(self) -> int:
        return len(self._items)

    def add(self, descriptor: np.ndarray) -> None:
        """Keep ``descriptor``, replacing the oldest once the gallery is full."""
        if len(self._items) < self.size:
            self._items.append(descriptor)
        else:
            self._items[self._next] = descriptor
            self._next = (self._next + 1) % self.size

    def distance(self, descriptor: np.ndarray) -> float:
        """Smallest distance of ``descriptor`` to the gallery (inf when empty)."""
        if not self._items:
            return float("inf")
        stack = np.stack(self._items).astype(np.float64)
        return float(np.min(np.linalg.norm(stack - descriptor.astype(np.float64), axis=1)))
