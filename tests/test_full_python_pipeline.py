"""The fast path's documented API: FullPythonAUPipeline and TargetedCLNFRefiner."""

from __future__ import annotations

import inspect

import cv2
import numpy as np
import pytest

from conftest import SAMPLES, load_reference, reference_landmarks
from pyfaceau import FullPythonAUPipeline, TargetedCLNFRefiner
from pyfaceau.errors import InputError, ModelFileError


@pytest.fixture(scope="module")
def pipeline():
    return FullPythonAUPipeline(verbose=False)


def test_documented_signatures():
    params = inspect.signature(FullPythonAUPipeline).parameters
    for name in ["retinaface_model", "pfld_model", "pdm_file", "au_models_dir",
                 "triangulation_file", "patch_expert_file"]:
        assert params[name].default is None
    assert params["use_clnf_refinement"].default is True
    assert params["use_batched_predictor"].default is True
    assert params["verbose"].default is True
    assert params["refinement"].default == "clnf"
    ref_params = inspect.signature(TargetedCLNFRefiner).parameters
    assert ref_params["patch_expert_file"].default is None
    assert ref_params["search_window"].default == 3


def test_process_video_writes_openface_csv(pipeline, tmp_path):
    out = tmp_path / "cl.csv"
    df = pipeline.process_video(SAMPLES / "changeLighting.wmv", output_csv=out)
    ref = load_reference("changeLighting")
    assert len(df) == len(ref) and df["success"].all()
    written = out.read_text().splitlines()
    assert len(written) == len(ref) + 1 and written[0].startswith("frame,face_id,timestamp")
    # CLNF-refined landmarks are within a pixel of OpenFace's on this video (measured
    # 0.81 px; OpenFace also ran its part models here, which the fast path skips)
    d = np.hypot(df[[f"x_{i}" for i in range(68)]].to_numpy() - ref[[f"x_{i}" for i in range(68)]].to_numpy(),
                 df[[f"y_{i}" for i in range(68)]].to_numpy() - ref[[f"y_{i}" for i in range(68)]].to_numpy())
    assert np.median(d.mean(axis=1)) < 1.0


def test_process_frame_streams_and_no_face(pipeline):
    pipeline.reset()
    img = cv2.imread(str(SAMPLES / "image_sequence" / "001.jpg"))
    first = pipeline.process_frame(img, 0)
    assert first.success and first.frame == 1
    assert first.au_intensity.shape == (17,) and np.isfinite(first.au_intensity).all()
    black = pipeline.process_frame(np.zeros_like(img), 1)
    assert not black.success and (black.au_intensity == 0).all()
    again = pipeline.process_frame(img, 2)
    assert again.success  # tracking recovers on the next frame with a face
    with pytest.raises(InputError):
        pipeline.process_frame(img, -1)


def test_svr_refinement_and_none(tmp_path):
    """The targeted SVR refinement and PFLD alone: same table layout, their own landmarks."""
    svr = FullPythonAUPipeline(verbose=False, refinement="svr")
    plain = FullPythonAUPipeline(verbose=False, use_clnf_refinement=False)
    assert isinstance(svr.refiner, TargetedCLNFRefiner) and plain.refiner is None
    a = svr.process_video(SAMPLES / "image_sequence")
    b = plain.process_video(SAMPLES / "image_sequence")
    assert list(a.columns) == list(b.columns) and a["success"].all() and b["success"].all()
    xs = [f"x_{i}" for i in (17, 48)]
    assert not np.allclose(a[xs], b[xs])  # the refiner moved its points
    with pytest.raises(InputError, match="refinement"):
        FullPythonAUPipeline(verbose=False, refinement="svm")


def test_refiner_moves_only_its_target_points():
    ref = load_reference("default")
    lm = reference_landmarks(ref)[0]
    cap = cv2.VideoCapture(str(SAMPLES / "default.wmv"))
    ok, frame = cap.read()
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    refined = TargetedCLNFRefiner().refine_landmarks(gray, lm)
    targets = [17, 18, 19, 20, 21, 22, 26, 48, 54]
    others = [i for i in range(68) if i not in targets]
    assert np.array_equal(refined[others], lm[others])
    assert refined.shape == (68, 2) and np.abs(refined[targets] - lm[targets]).max() < 15


def test_wrong_model_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "pfld.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(ModelFileError, match="pfld.onnx"):
        FullPythonAUPipeline(pfld_model=bad, verbose=False)
