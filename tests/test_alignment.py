"""OpenFace's AlignFaceMask against its own aligned faces of default.wmv."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import REFERENCE, SAMPLES, load_reference, reference_landmarks
from pyfaceau.alignment import align_face, alignment_warp_matrix, face_mask
from pyfaceau.pdm.rotation import align_shapes_with_scale
from pyfaceau.errors import InputError
from pyfaceau.modelstore import resolve
from pyfaceau.parsers.triangulation import read_triangulation
from pyfaceau.pdm import PDM, calc_params, load_pdm

#: The issue's requirement: mean absolute difference per frame <= 1 grey level.
MAX_FRAME_MAE = 1.0
#: What we measure (all 288 frames, landmarks from the CSV at 0.1 px): mean 0.062,
#: max 0.142 grey levels per frame. Tight limits with headroom, to catch regressions.
MEAN_MAE = 0.1
WORST_MAE = 0.25


@pytest.fixture(scope="module")
def au_pdm() -> PDM:
    return load_pdm(resolve("AU_predictors/In-the-wild_aligned_PDM_68.txt"))


@pytest.fixture(scope="module")
def tris() -> np.ndarray:
    return read_triangulation(resolve("AU_predictors/tris_68_full.txt"))


@pytest.fixture(scope="module")
def aligned_default(au_pdm: PDM, tris: np.ndarray) -> dict[str, np.ndarray]:
    """Align every frame of default.wmv as FaceAnalyser does; per-frame differences."""
    df = load_reference("default")
    lms = reference_landmarks(df)
    cap = cv2.VideoCapture(str(SAMPLES / "default.wmv"))
    maes, worst_px, first = [], [], None
    try:
        for i, frame_no in enumerate(df["frame"].to_numpy()):
            ok, frame = cap.read()  # frame i of the CSV is the i-th decoded frame
            assert ok, f"default.wmv ended at frame {i}"
            ref = cv2.imread(str(REFERENCE / "default_aligned" / f"frame_det_00_{frame_no:06d}.bmp"))
            assert ref is not None and ref.shape == (112, 112, 3)
            g, _ = calc_params(au_pdm, lms[i])  # FaceAnalyser re-fits the PDM itself
            out = align_face(frame, lms[i], g, au_pdm, tris)
            diff = np.abs(out.astype(np.int16) - ref.astype(np.int16))
            maes.append(diff.mean())
            worst_px.append(diff.max())
            if first is None:
                first = (frame, lms[i], g, out, ref)
    finally:
        cap.release()
    return {"mae": np.array(maes), "worst_px": np.array(worst_px), "first": first}


def test_alignment_matches_openface(aligned_default: dict) -> None:
    mae = aligned_default["mae"]
    assert mae.size == 288
    assert mae.max() <= MAX_FRAME_MAE
    assert mae.mean() <= MEAN_MAE
    assert mae.max() <= WORST_MAE


def test_mask_and_unmasked_variant(aligned_default: dict, au_pdm: PDM, tris: np.ndarray) -> None:
    frame, lm, g, masked, ref = aligned_default["first"]
    assert masked.shape == (112, 112, 3) and masked.dtype == np.uint8
    plain = align_face(frame, lm, g, au_pdm, tris, mask=False)
    inside = masked.any(axis=2)
    # Masking only zeroes pixels: where the mask is on, both variants agree.
    np.testing.assert_array_equal(plain[inside], masked[inside])
    # The face covers a large central part of the image but not the corners.
    assert 0.4 < inside.mean() < 0.9
    assert not inside[0, 0] and not inside[-1, -1] and inside[56, 56]
    # The reference has the same outline (edge pixels may differ by the 0.1 px rounding).
    assert np.count_nonzero(inside != ref.any(axis=2)) <= 30
    # A grey image aligns to a grey output.
    grey = align_face(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), lm, g, au_pdm, tris)
    assert grey.shape == (112, 112)


def test_face_mask_triangle() -> None:
    pts = np.zeros((68, 2), dtype=np.float32)
    pts[0], pts[1], pts[2] = (2.0, 2.0), (8.0, 2.0), (2.0, 8.0)
    m = face_mask(pts, np.array([[0, 1, 2]]), 12, 10)
    assert m.shape == (10, 12)
    # Pixel centres on the edges are inside (PAW's >= 0 test); x + y <= 10 is the hypotenuse.
    ys, xs = np.nonzero(m)
    assert xs.min() == 2 and ys.min() == 2 and np.all(xs + ys <= 10)
    assert m.sum() == 28  # 7 + 6 + ... + 1 pixels


def _paw_mask_reference(pts: np.ndarray, tris: np.ndarray, w: int, h: int) -> np.ndarray:
    """PAW's per-pixel rule written plainly (every pixel, every triangle, float32): a pixel
    centre inside a triangle's bounding box and on the inner side of its three edges."""
    f = np.float32
    ys, xs = np.mgrid[0:h, 0:w].astype(f)
    mask = np.zeros((h, w), dtype=np.uint8)

    def same_side(x0, y0, x1, y1, x2, y2, x3, y3):
        a = (x3 - x2) * (y0 - y2) - (x0 - x2) * (y3 - y2)
        b = (x3 - x2) * (y1 - y2) - (x1 - x2) * (y3 - y2)
        return (a * b) >= f(0)

    with np.errstate(invalid="ignore", over="ignore"):
        for a, b, c in tris:
            (x1, y1), (x2, y2), (x3, y3) = pts[a], pts[b], pts[c]
            box = ((ys >= min(y1, y2, y3)) & (ys <= max(y1, y2, y3))
                   & (xs >= min(x1, x2, x3)) & (xs <= max(x1, x2, x3)))
            inside = (same_side(xs, ys, x1, y1, x2, y2, x3, y3)
                      & same_side(xs, ys, x2, y2, x1, y1, x3, y3)
                      & same_side(xs, ys, x3, y3, x1, y1, x2, y2))
            mask[box & inside] = 1
    return mask


def test_face_mask_equals_the_per_pixel_rule() -> None:
    """The kernel visits only each triangle's bounding box and skips pixels already set;
    the mask is the per-pixel rule's, bit for bit: vertices on pixel centres (edges
    included), off-image and infinite vertices, degenerate triangles, a NaN vertex."""
    rng = np.random.default_rng(7)
    tris = rng.integers(0, 68, size=(111, 3))
    for case in range(60):
        pts = rng.uniform(-8, 40, size=(68, 2)).astype(np.float32)
        if case % 3 == 0:
            pts = np.round(pts)  # vertices on pixel centres: edge pixels decide
        if case % 5 == 1:
            pts[rng.integers(0, 68, 4)] = np.float32(np.inf) * rng.choice([-1, 1], (4, 2))
        if case % 7 == 2:
            pts[rng.integers(0, 68)] = np.nan
        w, h = int(rng.integers(5, 36)), int(rng.integers(5, 36))
        expected = _paw_mask_reference(pts, tris, w, h)
        got = face_mask(pts, tris, w, h)
        assert np.array_equal(got, expected), case
        assert 0 < expected.sum() or case % 5 == 1 or case % 7 == 2


def test_align_shapes_with_scale_recovers_similarity() -> None:
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, size=(24, 2))
    angle, s = 0.3, 1.7
    a_true = s * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = src @ a_true.T + [5.0, -3.0]
    np.testing.assert_allclose(align_shapes_with_scale(src, dst), a_true, atol=1e-4)


def test_warp_matrix_centres_face(au_pdm: PDM) -> None:
    # The mean face placed upright at (300, 200) with scale 2 maps its centre to (56, 56).
    g = np.array([2.0, 0, 0, 0, 300.0, 200.0])
    lm = au_pdm.shape_2d(g)
    warp = alignment_warp_matrix(lm, g, au_pdm)
    np.testing.assert_allclose(warp[:, :2], np.eye(2) * 0.35, atol=1e-5)
    np.testing.assert_allclose(warp @ [300.0, 200.0, 1.0], [56.0, 56.0], atol=1e-3)


def test_bad_inputs(au_pdm: PDM, tris: np.ndarray) -> None:
    g = np.array([1.0, 0, 0, 0, 50.0, 50.0])
    lm = au_pdm.shape_2d(g)
    with pytest.raises(InputError, match="image_bgr"):
        align_face(np.zeros((100, 100, 3), np.float32), lm, g, au_pdm, tris)
    with pytest.raises(InputError, match="landmarks"):
        align_face(np.zeros((100, 100, 3), np.uint8), lm[:60], g, au_pdm, tris)
    with pytest.raises(InputError, match="triangulation"):
        align_face(np.zeros((100, 100, 3), np.uint8), lm, g, au_pdm, tris + 100)
