"""PFLD landmarks: MODEL_NOTES.md 2.2-2.4 crop rule, padding, batching, weights, errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import ONNX_DIR, SAMPLES
from pyfaceau.onnx import open_onnx_session
from pyfaceau.errors import ModelFileError
from pyfaceau.landmarks.pfld import PFLDLandmarker, crop_square, flush_denormal_weights

OBAMA_BOX = (201.2, 45.1, 320.2, 218.3)


@pytest.fixture(scope="module")
def pfld() -> PFLDLandmarker:
    return PFLDLandmarker()


@pytest.fixture(scope="module")
def obama():
    return cv2.imread(str(SAMPLES / "images" / "Obama.jpg"))


def test_crop_square_model_notes():
    # exact RetinaFace boxes of MODEL_NOTES 1.7 give the squares of 2.4
    from pyfaceau.detection.retinaface import RetinaFaceDetector

    det = RetinaFaceDetector()
    cases = (("images/Obama.jpg", (189, 60, 144)), ("image_sequence/001.jpg", (126, 130, 223)))
    for name, square in cases:
        box = det.detect(cv2.imread(str(SAMPLES / name))).boxes[0]
        assert crop_square(box) == square
    assert crop_square((201.2, 45.1, 320.2, 218.3)) == (189, 60, 144)


def test_landmarks_sit_on_the_face(pfld, obama):
    lm = pfld.predict(obama, OBAMA_BOX)
    assert lm.shape == (68, 2) and lm.dtype == np.float64
    # eye centres vs RetinaFace's eye points (MODEL_NOTES 1.7), within 0.15 inter-ocular
    eyes = np.array([lm[36:42].mean(0), lm[42:48].mean(0)])
    rf_eyes = np.array([(228.1, 121.5), (279.3, 105.5)])
    iod = np.linalg.norm(rf_eyes[0] - rf_eyes[1])
    assert np.linalg.norm(eyes - rf_eyes, axis=1).max() < 0.15 * iod
    assert np.all(lm[:, 0] > 189) and np.all(lm[:, 0] < 189 + 144)


def test_padding_uses_unclamped_square(pfld, obama):
    # A face cut by the image border: the zero-padded crop must equal the crop of the
    # same face placed inside a larger black canvas, and the points map back unclamped.
    # Integer box corners: the square's origin then does not depend on the truncation
    # toward zero of negative coordinates (MODEL_NOTES 2.2 step 4).
    img = obama[100:, 240:]  # face box now starts at x = -39, y = -55
    box = np.array((201.0, 45.0, 320.0, 218.0)) - [240, 100, 240, 100]
    canvas = np.zeros((img.shape[0] + 200, img.shape[1] + 200, 3), np.uint8)
    canvas[200:, 200:] = img
    lm_cut = pfld.predict(img, box)
    lm_canvas = pfld.predict(canvas, box + 200)
    np.testing.assert_allclose(lm_cut, lm_canvas - 200, atol=1e-4)


def test_batch_equals_single(pfld, obama):
    boxes = np.array([OBAMA_BOX, np.array(OBAMA_BOX) + [3, -2, 5, 1]])
    batch = pfld.predict_batch(obama, boxes)
    assert batch.shape == (2, 68, 2)
    for k in range(2):
        np.testing.assert_allclose(batch[k], pfld.predict(obama, boxes[k]), atol=1e-3)
    assert pfld.predict_batch(obama, np.zeros((0, 4))).shape == (0, 68, 2)


def test_flushing_subnormal_weights_changes_nothing(pfld, obama):
    assert pfld.flushed_weights > 400_000
    blob, _ = pfld.prepare(obama, OBAMA_BOX)
    raw = open_onnx_session(ONNX_DIR / "pfld.onnx")  # the file as is (slow on some CPUs)
    want = raw.run(["output"], {"input": blob[None]})[0]
    got = pfld._session.run(["output"], {"input": blob[None]})[0]
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_corrupt_or_wrong_onnx(tmp_path):
    bad = tmp_path / "pfld.onnx"
    bad.write_bytes(b"\xff" * 1000)
    with pytest.raises(ModelFileError, match="pfld.onnx"):
        PFLDLandmarker(bad)
    truncated = tmp_path / "cut.onnx"
    truncated.write_bytes((ONNX_DIR / "pfld.onnx").read_bytes()[:100_000])
    with pytest.raises(ModelFileError, match="cut.onnx"):
        PFLDLandmarker(truncated)
    with pytest.raises(ModelFileError, match="not the expected network"):
        PFLDLandmarker(ONNX_DIR / "retinaface_mobilenet025.onnx")
    with pytest.raises(ValueError):
        flush_denormal_weights(b"\x0f")  # wire type 7 does not exist
