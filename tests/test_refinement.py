"""SVR patch expert parser and the targeted refinement."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from conftest import OPENFACE_DIR, SAMPLES, load_reference, reference_landmarks
from pyfaceau.errors import InputError, ModelFileError
from pyfaceau.parsers.svr_patches import read_svr_patches
from pyfaceau.pipeline.fast import FastLandmarkFrontEnd
from pyfaceau.refinement.targeted import (
    TARGET_LANDMARKS,
    TargetedCLNFRefiner,
    _ncc_logistic,
    estimate_rotation,
)

SVR_FILE = OPENFACE_DIR / "model" / "patch_experts" / "svr_patches_0.25_general.txt"
T = list(TARGET_LANDMARKS)


@pytest.fixture(scope="module")
def refiner() -> TargetedCLNFRefiner:
    return TargetedCLNFRefiner()


def test_parser_reads_every_view():
    f = read_svr_patches(SVR_FILE)
    assert f.patch_scaling == 0.25
    assert f.n_views == 7 and f.n_points == 68
    yaws = np.degrees(f.centers[:, 1])
    np.testing.assert_allclose(yaws, [0, -20, -45, -70, 70, 45, 20], atol=1e-4)
    np.testing.assert_array_equal(f.visibilities.sum(axis=1), [68, 68, 68, 35, 35, 68, 68])
    types = {m.feature_type for row in f.experts for e in row for m in e.modalities}
    assert types == {0, 1}
    e = f.experts[0][17]
    assert (e.width, e.height, len(e.modalities)) == (11, 11, 2)
    assert e.modalities[0].weights.shape == (11, 11) and e.modalities[0].weights.dtype == np.float32
    # first expert of the file: type 0, scaling 9.247103, bias -5.498674, stored column-major
    first = f.experts[0][0].modalities[0]
    assert (first.feature_type, first.scaling, first.bias) == (0, 9.247103, -5.498674)
    assert first.weights[1, 0] == np.float32(0.053671)


def test_parser_is_strict(tmp_path):
    text = SVR_FILE.read_text()
    cut = tmp_path / "cut.txt"
    cut.write_text(text[: len(text) // 2])
    with pytest.raises(ModelFileError, match="cut.txt"):
        read_svr_patches(cut)
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith("3 11 11 2 2 "))
    bad = tmp_path / "bad_marker.txt"
    bad.write_text("\n".join(lines[:i] + ["4" + lines[i][1:]] + lines[i + 1 :]))
    with pytest.raises(ModelFileError, match="expected '3'"):
        read_svr_patches(bad)
    trailing = tmp_path / "trailing.txt"
    trailing.write_text(text + "\n1.0\n")
    with pytest.raises(ModelFileError, match="after the last"):
        read_svr_patches(trailing)


def test_response_kernel_matches_opencv():
    rng = np.random.default_rng(0)
    area = rng.uniform(0, 255, (15, 15))
    tmpl = rng.normal(size=(11, 11)).astype(np.float32)
    resp = np.ones((5, 5))
    _ncc_logistic(area, tmpl.astype(np.float64), 2.0, -1.0, resp)
    ncc = cv2.matchTemplate(area.astype(np.float32), tmpl, cv2.TM_CCOEFF_NORMED)
    np.testing.assert_allclose(resp, 1 / (1 + np.exp(-(2.0 * ncc - 1.0))), atol=1e-5)


@pytest.mark.parametrize("yaw_deg, view", [(0, 0), (-22, 1), (44, 5), (-70, 3), (18, 6)])
def test_view_from_estimated_pose(refiner, yaw_deg, view):
    from pyfaceau.pdm.rotation import euler_to_rotation_matrix

    rot = np.array([0.1, math.radians(yaw_deg), -0.05])
    r = euler_to_rotation_matrix(rot).astype(np.float64)
    lm = 3.0 * refiner.mean_shape_3d @ r[:2].T + [320, 240]
    est = estimate_rotation(lm, refiner.mean_shape_3d)
    np.testing.assert_allclose(est, rot, atol=2e-3)
    assert refiner.view_index(est) == view


def test_refinement_lowers_error_on_real_frames():
    """Targets vs OpenFace on default.wmv (60 frames): PFLD alone vs refined."""
    ref = reference_landmarks(load_reference("default"))
    fe = FastLandmarkFrontEnd(refine=False)
    refiner = TargetedCLNFRefiner()
    constrained = TargetedCLNFRefiner(pdm_constrain=True)
    cap = cv2.VideoCapture(str(SAMPLES / "default.wmv"))
    e_pfld, e_ref, e_pdm, e_pdm68, e_pfld68 = [], [], [], [], []
    for i in range(60):
        ok, frame = cap.read()
        assert ok
        res = fe.track(frame)
        assert res.success
        out = refiner.refine_landmarks(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), res.landmarks)
        untouched = np.setdiff1d(np.arange(68), T)
        np.testing.assert_array_equal(out[untouched], res.landmarks[untouched])
        e_pfld.append(np.linalg.norm(res.landmarks[T] - ref[i, T], axis=1).mean())
        e_ref.append(np.linalg.norm(out[T] - ref[i, T], axis=1).mean())
        if i % 3 == 0:
            fit = constrained.refine(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), res.landmarks)
            pdm_shape = constrained.pdm.shape_2d(fit.params_global, fit.params_local)
            np.testing.assert_allclose(fit.landmarks, pdm_shape)
            e_pdm.append(np.linalg.norm(fit.landmarks[T] - ref[i, T], axis=1).mean())
            e_pdm68.append(np.linalg.norm(fit.landmarks - ref[i], axis=1).mean())
            e_pfld68.append(np.linalg.norm(res.landmarks - ref[i], axis=1).mean())
    # measured: PFLD 3.71 px, refined 2.58 px (mean over the 9 targets)
    assert np.mean(e_ref) < np.mean(e_pfld) - 0.8
    assert np.mean(e_ref) < 3.0
    # with the PDM fit (every 3rd frame): 9 targets 1.88 px; all 68: 2.49 vs PFLD 2.85
    assert np.mean(e_pdm) < np.mean(e_ref)
    assert np.mean(e_pdm68) < np.mean(e_pfld68) - 0.1


def test_bad_arguments(refiner):
    gray = np.zeros((100, 100), np.uint8)
    with pytest.raises(InputError):
        refiner.refine_landmarks(gray, np.zeros((5, 2)))
    with pytest.raises(InputError):
        refiner.refine_landmarks(np.zeros((100, 100, 3), np.uint8), np.zeros((68, 2)))
    with pytest.raises(InputError):
        TargetedCLNFRefiner(landmarks=(17, 99))
    with pytest.raises(InputError):
        TargetedCLNFRefiner(search_window=0)
    with pytest.raises(InputError):
        refiner.refine_landmarks(gray, np.full((68, 2), np.nan))
