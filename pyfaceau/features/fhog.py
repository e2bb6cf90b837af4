"""Felzenszwalb HOG (FHOG) features, bit-for-bit as dlib computes them for OpenFace.

OpenFace 2.2 (``lib/local/FaceAnalyser/src/Face_utils.cpp``, ``Extract_FHOG_descriptor``)
wraps the 112 x 112 BGR aligned face in a ``dlib::cv_image<dlib::bgr_pixel>`` and calls
``dlib::extract_fhog_features(img, hog, cell_size=8)`` (dlib 19.x as bundled by OpenFace,
``lib/3rdParty/dlib/include/dlib/image_transforms/fhog.h``). The result, 12 x 12 cells of
31 features, is flattened row by row, cell by cell, feature by feature into OpenFace's
4464-value HOG descriptor.

This module reproduces that computation in single precision with dlib's exact order of
operations, including two details that change values, not just rounding:

* dlib processes pixel columns in blocks of 8 with SIMD code and the remaining right-hand
  columns with scalar code, and the two break ties between colour channels differently
  when picking the channel with the strongest gradient (SIMD: later channel wins a tie,
  blue > green > red; scalar: earlier channel wins, red > green > blue). The kernel
  follows the same split.
* the bilinear vote weights are multiplied in a different order on the two paths.

Both matter: on ``default.wmv`` treating every column as SIMD code changes descriptor
values by up to 5e-3, as scalar code by up to 0.1.

Public functions validate their arguments and raise :class:`pyfaceau.errors.InputError`;
the numba kernel :func:`_fhog_kernel` works on pre-validated ``uint8`` arrays.
"""

from __future__ import annotations

import math

import numpy as np

from .. import jit
from ..errors import InputError
from ..validation import require_image

__all__ = [
    "FHOG_NUM_FEATURES",
    "DEFAULT_CELL_SIZE",
    "fhog",
    "fhog_output_shape",
    "hog_descriptor",
]

# ---------------------------------------------------------------------------------------
# dlib constants (lib/3rdParty/dlib/include/dlib/image_transforms/fhog.h,
# impl_extract_fhog_features)
# ---------------------------------------------------------------------------------------

#: Unit vectors of the 9 unsigned orientations (20 degree steps), as rounded in dlib's
#: ``directions[9]``; stored as ``matrix<float,2,1>``, hence float32. Columns (x, y).
FHOG_DIRECTIONS: np.ndarray = np.array(
    [
        [1.0000, 0.0000],
        [0.9397, 0.3420],
        [0.7660, 0.6428],
        [0.500, 0.8660],
        [0.1736, 0.9848],
        [-0.1736, 0.9848],
        [-0.5000, 0.8660],
        [-0.7660, 0.6428],
        [-0.9397, 0.3420],
    ],
    dtype=np.float32,
)
FHOG_DIRECTIONS.flags.writeable = False

#: Number of unsigned orientations; contrast-sensitive bins are twice that.
FHOG_NUM_UNSIGNED: int = 9
#: Number of contrast-sensitive (signed) orientation bins.
FHOG_NUM_SIGNED: int = 18
#: Features per cell: 18 signed + 9 unsigned orientations + 4 texture (block) energies.
FHOG_NUM_FEATURES: int = 31
#: ``const float eps = 0.0001`` added to the block energies before the square root.
FHOG_EPS: float = 0.0001
#: Truncation of the normalised histogram values (``0.2 * sqrt(...)`` in dlib, which
#: clamps the histogram at 0.2 times the block norm before normalising).
FHOG_TRUNCATION: float = 0.2
#: dlib computes ``n = 0.1 / (0.2 * sqrt(...))``, i.e. 0.5 / norm: the 0.5 of the paper's
#: average over the 4 normalisations is folded into the normaliser.
FHOG_HALF_TRUNCATION: float = 0.1
#: Scale of the texture features: ``t *= 2 * 0.2357`` (0.2357 ~ 1 / sqrt(18)).
FHOG_TEXTURE_SCALE: float = 0.2357
#: dlib's SIMD width for the gradient loop (``simd8f``): columns ``x = 1, 9, 17, ...`` start
#: a block of 8 while ``x < visible_nc - 7``; the rest use the scalar code.
DLIB_SIMD_WIDTH: int = 8

#: OpenFace's cell size (``Extract_FHOG_descriptor(..., int cell_size = 8)`` in
#: ``Face_utils.h``).
DEFAULT_CELL_SIZE: int = 8

#: Top-left cell (relative to output cell (y, x), whose own histogram is hist cell
#: (y + 1, x + 1)) of the 4 normalising blocks, in dlib's SIMD lane order: bottom-right,
#: top-right, bottom-left, top-left block. Lane k gives texture feature 27 + k.
_BLOCK_ROW_OFFSET: tuple[int, int, int, int] = (1, 0, 1, 0)
_BLOCK_COL_OFFSET: tuple[int, int, int, int] = (1, 1, 0, 0)

_F32 = np.float32


# ---------------------------------------------------------------------------------------
# kernel
# ---------------------------------------------------------------------------------------


@jit.njit(cache=True, nogil=True)
def _strongest_gradient(img, r, c, simd_path):  # pragma: no cover - compiled
    """Integer gradient ``(gx, gy, |g|^2)`` of the channel with the largest ``|g|^2``.

    ``img`` is ``(H, W, C)`` uint8 with C = 1 or 3 (BGR: dlib's ``red`` is channel 2).
    ``simd_path`` selects dlib's tie-breaking: SIMD code keeps the later channel on ties
    (``select(rlen > glen, red, green)``, then ``select(tlen > blen, t, blue)``); the
    scalar code keeps the earlier one (``if (v2 > len)``, ``if (v3 > len)``).
    """
    nch = img.shape[2]
    if nch == 1:
        gx = np.int32(img[r, c + 1, 0]) - np.int32(img[r, c - 1, 0])
        gy = np.int32(img[r + 1, c, 0]) - np.int32(img[r - 1, c, 0])
        return gx, gy, gx * gx + gy * gy
    # red (channel 2), green (1), blue (0) in dlib's order
    rx = np.int32(img[r, c + 1, 2]) - np.int32(img[r, c - 1, 2])
    ry = np.int32(img[r + 1, c, 2]) - np.int32(img[r - 1, c, 2])
    gx = np.int32(img[r, c + 1, 1]) - np.int32(img[r, c - 1, 1])
    gy = np.int32(img[r + 1, c, 1]) - np.int32(img[r - 1, c, 1])
    bx = np.int32(img[r, c + 1, 0]) - np.int32(img[r, c - 1, 0])
    by = np.int32(img[r + 1, c, 0]) - np.int32(img[r - 1, c, 0])
    rlen = rx * rx + ry * ry
    glen = gx * gx + gy * gy
    blen = bx * bx + by * by
    if simd_path:
        if rlen > glen:
            tx, ty, tlen = rx, ry, rlen
        else:
            tx, ty, tlen = gx, gy, glen
        if tlen > blen:
            return tx, ty, tlen
        return bx, by, blen
    tx, ty, tlen = rx, ry, rlen
    if glen > tlen:
        tx, ty, tlen = gx, gy, glen
    if blen > tlen:
        tx, ty, tlen = bx, by, blen
    return tx, ty, tlen


@jit.njit(cache=True, nogil=True)
def _fhog_kernel(img, cell_size):  # pragma: no cover - compiled
    """dlib's ``impl_extract_fhog_features`` for ``cell_size >= 2`` and no filter padding.

    Parameters
    ----------
    img : ``(H, W, C)`` uint8, C = 1 (grey) or 3 (BGR), C-contiguous. Must give at least
        3 x 3 cells (checked by the caller).
    cell_size : int >= 2, pixels.

    Returns
    -------
    ``(cells_nr - 2, cells_nc - 2, 31)`` float32 with
    ``cells_n = int(float32(n) / float32(cell_size) + 0.5)``.
    """
    nr = img.shape[0]
    nc = img.shape[1]
    f_cs = _F32(cell_size)
    cells_nr = int(np.float64(_F32(nr) / f_cs) + 0.5)
    cells_nc = int(np.float64(_F32(nc) / f_cs) + 0.5)
    hog_nr = cells_nr - 2
    hog_nc = cells_nc - 2

    # Histograms with a 1-cell border all round (dlib: hist(cells_nr + 2, cells_nc + 2)).
    hist = np.zeros((cells_nr + 2, cells_nc + 2, 18), dtype=np.float32)

    visible_nr = min(cells_nr * cell_size, nr) - 1
    visible_nc = min(cells_nc * cell_size, nc) - 1

    # First column handled by the scalar code: blocks of 8 start at x = 1, 9, ... while
    # x < visible_nc - 7.
    simd_end = 1
    while simd_end < visible_nc - 7:
        simd_end += 8

    half = _F32(0.5)
    one = _F32(1.0)
    for y in range(1, visible_nr):
        # const float yp = ((float)y + 0.5) / (float)cell_size - 0.5;  (double maths)
        yp = _F32((np.float64(_F32(y)) + 0.5) / np.float64(f_cs) - 0.5)
        iyp = int(math.floor(yp))
        vy0 = _F32(yp - _F32(iyp))
        vy1 = _F32(1.0 - np.float64(vy0))
        for x in range(1, visible_nc):
            simd = x < simd_end
            gxi, gyi, leni = _strongest_gradient(img, y, x, simd)
            gx = _F32(gxi)
            gy = _F32(gyi)
            v = _F32(math.sqrt(_F32(leni)))  # sqrtf, correctly rounded

            # snap to one of 18 orientations (strict '>' keeps the first maximum)
            best_dot = _F32(0.0)
            best_o = 0
            for o in range(9):
                dot = _F32(FHOG_DIRECTIONS[o, 0] * gx) + _F32(FHOG_DIRECTIONS[o, 1] * gy)
                if dot > best_dot:
                    best_dot = dot
                    best_o = o
                elif -dot > best_dot:
                    best_dot = -dot
                    best_o = o + 9

            if simd:
                # simd8f xp = (xx + 0.5) / (float)cell_size + 0.5;  ixp = simd8i(xp)
                xp = (_F32(x) + half) / f_cs + half
                ix = int(xp)  # truncation; xp > 0. Already shifted by the 1-cell border.
                vx0 = _F32(xp - _F32(ix))
                vx1 = one - vx0
                vx1v = vx1 * v
                vx0v = vx0 * v
                w11 = vy1 * vx1v
                w01 = vy0 * vx1v
                w10 = vy1 * vx0v
                w00 = vy0 * vx0v
            else:
                # const float xp = ((double)x + 0.5) / (double)cell_size - 0.5;
                xp = _F32((np.float64(x) + 0.5) / np.float64(cell_size) - 0.5)
                ixs = int(math.floor(xp))
                vx0 = _F32(xp - _F32(ixs))
                vx1 = _F32(1.0 - np.float64(vx0))
                ix = ixs + 1
                w11 = (vy1 * vx1) * v
                w01 = (vy0 * vx1) * v
                w10 = (vy1 * vx0) * v
                w00 = (vy0 * vx0) * v
            hist[iyp + 1, ix, best_o] += w11
            hist[iyp + 2, ix, best_o] += w01
            hist[iyp + 1, ix + 1, best_o] += w10
            hist[iyp + 2, ix + 1, best_o] += w00

    # energy of each cell: sum over the 9 unsigned orientations of (h_o + h_{o+9})^2
    norm = np.zeros((cells_nr, cells_nc), dtype=np.float32)
    for r in range(cells_nr):
        for c in range(cells_nc):
            acc = _F32(0.0)
            for o in range(9):
                s = hist[r + 1, c + 1, o] + hist[r + 1, c + 1, o + 9]
                acc = acc + s * s
            norm[r, c] = acc

    eps = _F32(FHOG_EPS)
    trunc = _F32(FHOG_TRUNCATION)
    half_trunc = _F32(FHOG_HALF_TRUNCATION)
    tex_scale = _F32(2.0 * FHOG_TEXTURE_SCALE)
    out = np.empty((hog_nr, hog_nc, 31), dtype=np.float32)
    nn = np.empty(4, dtype=np.float32)
    nk = np.empty(4, dtype=np.float32)
    t = np.empty(4, dtype=np.float32)
    h = np.empty((3, 4), dtype=np.float32)
    for y in range(hog_nr):
        for x in range(hog_nc):
            # The 4 blocks of 2 x 2 cells containing cell (y + 1, x + 1), in dlib's lane
            # order (z1..z4 in fhog.h), each summed left to right, top to bottom.
            for k in range(4):
                by = y + _BLOCK_ROW_OFFSET[k]
                bx = x + _BLOCK_COL_OFFSET[k]
                z = norm[by, bx] + norm[by, bx + 1]
                z = (z + norm[by + 1, bx]) + norm[by + 1, bx + 1]
                nn[k] = trunc * _F32(math.sqrt(z + eps))
            for k in range(4):
                nk[k] = half_trunc / nn[k]
                t[k] = _F32(0.0)

            # contrast-sensitive features, in groups of 3 as dlib accumulates t
            for o0 in range(0, 18, 3):
                for j in range(3):
                    hv = hist[y + 2, x + 2, o0 + j]
                    for k in range(4):
                        h[j, k] = min(hv, nn[k]) * nk[k]
                    # dlib's sum(simd4f), SSE2 branch (simd/simd4f.h):
                    # _mm_add_ps(v, movehl(v)) then add_ss -> (l0 + l2) + (l1 + l3)
                    out[y, x, o0 + j] = (h[j, 0] + h[j, 2]) + (h[j, 1] + h[j, 3])
                for k in range(4):
                    t[k] = t[k] + ((h[0, k] + h[1, k]) + h[2, k])

            # contrast-insensitive features
            for o in range(9):
                hv = hist[y + 2, x + 2, o] + hist[y + 2, x + 2, o + 9]
                a0 = min(hv, nn[0]) * nk[0]
                a1 = min(hv, nn[1]) * nk[1]
                a2 = min(hv, nn[2]) * nk[2]
                a3 = min(hv, nn[3]) * nk[3]
                out[y, x, 18 + o] = (a0 + a2) + (a1 + a3)  # SSE2 sum order

            # texture features
            for k in range(4):
                out[y, x, 27 + k] = t[k] * tex_scale
    return out


# ---------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------


def _cells(n: int, cell_size: int) -> int:
    """dlib's ``(int)((float)n / (float)cell_size + 0.5)``."""
    return int(float(np.float32(n) / np.float32(cell_size)) + 0.5)


def fhog_output_shape(
    height: int, width: int, cell_size: int = DEFAULT_CELL_SIZE
) -> tuple[int, int, int]:
    """Shape of :func:`fhog`'s result for an image of ``height`` x ``width`` pixels.

    Parameters
    ----------
    height, width : image size, pixels.
    cell_size : cell size, pixels.

    Returns
    -------
    ``(rows, cols, 31)`` with ``rows = round_half_up(height / cell_size) - 2`` (dlib drops
    the outer ring of cells). ``(12, 12, 31)`` for OpenFace's 112 x 112 face.
    """
    return (
        _cells(height, cell_size) - 2,
        _cells(width, cell_size) - 2,
        FHOG_NUM_FEATURES,
    )


def _validate(image: object, cell_size: object, name: str) -> np.ndarray:
    """Check the arguments; return ``image`` as a C-contiguous (H, W, C) uint8 array."""
    if isinstance(cell_size, bool) or not isinstance(cell_size, (int, np.integer)):
        raise InputError(f"cell_size must be an int >= 2, got {cell_size!r}")
    if cell_size < 2:
        raise InputError(
            f"cell_size must be >= 2, got {cell_size} (dlib uses a different algorithm for "
            "cell_size 1, which OpenFace never calls and pyfaceau does not reproduce)"
        )
    image = require_image(image, name, channels=(1, 3))
    img3 = image[:, :, None] if image.ndim == 2 else image
    h, w = img3.shape[:2]
    rows, cols, _ = fhog_output_shape(h, w, int(cell_size))
    if rows < 1 or cols < 1:
        min_px = int(math.ceil(2.5 * int(cell_size)))
        raise InputError(
            f"{name} of {h}x{w} pixels is too small for FHOG with cell_size {cell_size}: "
            f"need at least {min_px}x{min_px} pixels (3x3 cells; dlib drops the outer ring)"
        )
    return np.ascontiguousarray(img3)


def fhog(image: np.ndarray, cell_size: int = DEFAULT_CELL_SIZE) -> np.ndarray:
    """dlib's FHOG features of an image, as ``extract_fhog_features`` computes them.

    Parameters
    ----------
    image : ``(H, W, 3)`` uint8 BGR (OpenCV order) or ``(H, W)`` / ``(H, W, 1)`` uint8
        grey. Colour images use, per pixel, the channel with the strongest gradient.
    cell_size : cell size in pixels, >= 2 (OpenFace uses 8).

    Returns
    -------
    ``(rows, cols, 31)`` float64 (values computed in float32, as dlib does), with
    ``rows, cols = fhog_output_shape(H, W, cell_size)[:2]``; ``(12, 12, 31)`` for a
    112 x 112 image with 8-pixel cells. Features per cell: 0-17 contrast-sensitive
    orientations (bin ``o`` holds gradients pointing about ``20 * o`` degrees from +x
    towards +y, i.e. image down; a dark-to-bright left-to-right edge is bin 0, its
    opposite bin 9), 18-26 contrast-insensitive orientations (bin ``o`` and ``o + 9``
    merged), 27-30 texture energies of the 4 blocks of 2 x 2 cells normalising the cell
    (bottom-right, top-right, bottom-left, top-left).

    Raises
    ------
    InputError
        Not a uint8 array of a supported shape, ``cell_size`` < 2, or an image smaller
        than 3 x 3 cells.

    Notes
    -----
    Matches dlib 19.x ``impl_extract_fhog_features`` (``fhog.h``) with
    ``filter_rows_padding = filter_cols_padding = 1``, in float32 with dlib's order of
    operations, including its SIMD/scalar column split and the lane order of its SSE2
    ``sum(simd4f)``: bit-identical (float32) to OpenFace 2.2's ``default.hog`` on all 288
    frames of ``default.wmv``. A dlib built with SSE3/SSE4.1 sums or FMA contraction
    would differ by a float32 ulp or so. Pixels of the outer 1-pixel border contribute no
    gradient; cells are bilinearly interpolated over pixel centres.
    """
    img = _validate(image, cell_size, "image")
    return _fhog_kernel(img, int(cell_size)).astype(np.float64)


def hog_descriptor(
    aligned_face: np.ndarray, cell_size: int = DEFAULT_CELL_SIZE
) -> np.ndarray:
    """OpenFace's HOG descriptor of an aligned face (``Extract_FHOG_descriptor``).

    Parameters
    ----------
    aligned_face : ``(112, 112, 3)`` uint8 BGR aligned face (the output of
        ``align_face``; OpenFace computes HOG on the colour, masked aligned face), or a
        grey ``(H, W)`` uint8 face. Any square size that gives at least 3 x 3 cells is
        accepted.
    cell_size : cell size in pixels (OpenFace: 8).

    Returns
    -------
    ``(rows * cols * 31,)`` float64: ``fhog(aligned_face).reshape(-1)``, i.e. cell rows
    outermost, then cell columns, then the 31 features; ``(4464,)`` for 112 x 112.
    ``rows, cols`` are given by :func:`fhog_output_shape` (12, 12).

    Raises
    ------
    InputError
        As :func:`fhog`, or for a non-square face.

    Notes
    -----
    Matches ``Face_utils.cpp``: its loops are ``for y < num_cols: for x < num_rows:
    for o < 31: hog[y][x](o)``, which is row-major only when rows == cols (it indexes
    out of range otherwise), hence the square requirement.
    """
    img = _validate(aligned_face, cell_size, "aligned_face")
    if img.shape[0] != img.shape[1]:
        raise InputError(
            f"aligned_face must be square (OpenFace's descriptor layout is only defined "
            f"for square HOG grids), got {img.shape[0]}x{img.shape[1]} pixels"
        )
    return _fhog_kernel(img, int(cell_size)).astype(np.float64).reshape(-1)
