"""OpenFace's piece-wise affine warp (PAW) of a face to a reference shape.

Mirrors ``PAW::CalcCoeff``, ``PAW::WarpRegion`` and ``PAW::Warp`` of OpenFace's
``LandmarkDetector/src/PAW.cpp``: each pixel of the reference frame (inside the stored
mask) belongs to one triangle of the reference shape; the affine map of that triangle to
the same triangle of the observed landmarks gives the source location, which is sampled
bilinearly with ``cv::remap``. All arithmetic is float32 in OpenFace's order of
operations, and the sampling is OpenCV's own ``remap``, so the warped image matches
OpenFace's bit for bit (up to OpenCV version differences).
"""

from __future__ import annotations

import cv2
import numpy as np

from ...parsers.validator import PAWData

__all__ = ["PiecewiseAffineWarp"]


class PiecewiseAffineWarp:
    """A piece-wise affine warp to a fixed reference shape (OpenFace's ``PAW``).

    Parameters
    ----------
    data : the warp as stored in the model file (reference shape, triangulation,
        per-pixel triangle index and mask, barycentric coefficients ``alpha``/``beta``,
        origin ``min_x``/``min_y``).

    Notes
    -----
    Matches OpenFace's ``PAW.cpp`` for warps read from a file (``PAW::Read``), which is
    how the detection validator gets them. OpenFace's constructor that derives the mask
    from a shape (``PAW::PAW(shape, triangulation)``) is not needed by pyfaceau.
    """

    def __init__(self, data: PAWData) -> None:
        self.triangulation = data.triangulation  # (t, 3) int32
        self.alpha = data.alpha  # (t, 3) float32
        self.beta = data.beta  # (t, 3) float32
        self.pixel_mask = data.pixel_mask  # (h, w) uint8
        self.triangle_id = data.triangle_id  # (h, w) int32
        self.number_of_pixels = data.number_of_pixels
        self.n_landmarks = data.destination_landmarks.shape[0]
        h, w = self.pixel_mask.shape
        inside = self.pixel_mask != 0
        self._inside = inside
        self._tri_inside = data.triangle_id[inside]  # (n_pixels,) row-major order
        ys, xs = np.nonzero(inside)
        # float(x) + min_x, float(y) + min_y, in float32 as WarpRegion does
        self._xi = xs.astype(np.float32) + np.float32(data.min_x)
        self._yi = ys.astype(np.float32) + np.float32(data.min_y)
        self._shape = (h, w)

    @property
    def shape(self) -> tuple[int, int]:
        """(h, w) of the warped image."""
        return self._shape

    def coefficients(self, landmarks: np.ndarray) -> np.ndarray:
        """Per-triangle affine maps from the reference frame to the image (``CalcCoeff``).

        Parameters
        ----------
        landmarks : (m, 2) float32 source landmarks (pixels, x and y).

        Returns
        -------
        (t, 6) float32: ``x = c0 + c1 * xr + c2 * yr``, ``y = c3 + c4 * xr + c5 * yr``.
        """
        lm = np.asarray(landmarks, dtype=np.float32)
        i, j, k = self.triangulation.T
        c1 = lm[i, 0]
        c2 = lm[j, 0] - c1
        c3 = lm[k, 0] - c1
        c4 = lm[i, 1]
        c5 = lm[j, 1] - c4
        c6 = lm[k, 1] - c4
        a, b = self.alpha, self.beta
        out = np.empty((len(i), 6), dtype=np.float32)
        out[:, 0] = c1 + c2 * a[:, 0] + c3 * b[:, 0]
        out[:, 1] = c2 * a[:, 1] + c3 * b[:, 1]
        out[:, 2] = c2 * a[:, 2] + c3 * b[:, 2]
        out[:, 3] = c4 + c5 * a[:, 0] + c6 * b[:, 0]
        out[:, 4] = c5 * a[:, 1] + c6 * b[:, 1]
        out[:, 5] = c5 * a[:, 2] + c6 * b[:, 2]
        return out

    def maps(self, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Source coordinates of every reference pixel (``WarpRegion``).

        Parameters
        ----------
        landmarks : (m, 2) float32 source landmarks (pixels).

        Returns
        -------
        map_x, map_y : (h, w) float32 source pixel coordinates, -1 outside the mask.
        """
        c = self.coefficients(landmarks)[self._tri_inside]
        xi, yi = self._xi, self._yi
        map_x = np.full(self._shape, -1.0, dtype=np.float32)
        map_y = np.full(self._shape, -1.0, dtype=np.float32)
        map_x[self._inside] = (c[:, 0] + c[:, 1] * xi) + c[:, 2] * yi
        map_y[self._inside] = (c[:, 3] + c[:, 4] * xi) + c[:, 5] * yi
        return map_x, map_y

    def warp(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """Warp ``image`` so that ``landmarks`` land on the reference shape (``PAW::Warp``).

        Parameters
        ----------
        image : (H, W) float32 (or uint8) image the landmarks refer to.
        landmarks : (m, 2) source landmarks in ``image``'s pixel coordinates.

        Returns
        -------
        (h, w) array of ``image``'s dtype: bilinear samples (``cv::remap``,
        ``INTER_LINEAR``, constant 0 border); pixels outside the mask are meaningless.
        """
        lm = np.asarray(landmarks, dtype=np.float32)
        if lm.shape != (self.n_landmarks, 2):
            raise ValueError(
                f"landmarks must be ({self.n_landmarks}, 2), found {lm.shape}"
            )
        map_x, map_y = self.maps(lm)
        return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR)
