"""RetinaFace detector: MODEL_NOTES.md 1.7 numbers, priors, NMS, errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import ONNX_DIR, SAMPLES
from pyfaceau.detection.retinaface import RetinaFaceDetector, make_priors, nms_plus_one
from pyfaceau.detection.types import FaceDetections
from pyfaceau.errors import InputError, ModelFileError

#: Tolerance on boxes and points against MODEL_NOTES.md 1.7 (printed to 0.1 px there).
_PX_TOL = 0.5


@pytest.fixture(scope="module")
def detector() -> RetinaFaceDetector:
    return RetinaFaceDetector()


@pytest.mark.parametrize(
    "image, box, points",
    [
        (
            "images/Obama.jpg",
            (201.2, 45.1, 320.2, 218.3),
            [(228.1, 121.5), (279.3, 105.5), (260.9, 145.7), (250.4, 180.5), (294.9, 167.4)],
        ),
        (
            "image_sequence/001.jpg",
            (144.1, 110.3, 329.1, 371.7),
            [(199.1, 212.8), (283.3, 209.7), (247.0, 257.7), (206.8, 303.1), (278.9, 300.4)],
        ),
    ],
)
def test_model_notes_detections(detector, image, box, points):
    dets = detector.detect(cv2.imread(str(SAMPLES / image)))
    assert len(dets) == 1
    assert dets.scores[0] > 0.999
    np.testing.assert_allclose(dets.boxes[0], box, atol=_PX_TOL)
    np.testing.assert_allclose(dets.landmarks[0], points, atol=_PX_TOL)


def test_prior_counts():
    assert make_priors(480, 640).shape == (12600, 4)
    assert make_priors(389, 616).shape == (10016, 4)
    pri = make_priors(480, 640)
    # first prior: level 0, row 0, column 0, min size 16
    np.testing.assert_allclose(pri[0], [4 / 640, 4 / 480, 16 / 640, 16 / 480])
    np.testing.assert_allclose(pri[1, 2:], [32 / 640, 32 / 480])


def test_nms_plus_one_convention():
    boxes = np.array([[0, 0, 9, 9], [0, 5, 9, 14], [20, 20, 29, 29]], dtype=float)
    scores = np.array([0.9, 0.8, 0.7])
    # +1 convention: areas 100, intersection 10 x 5 = 50, IoU = 50 / 150 = 1/3 > 0.3
    np.testing.assert_array_equal(nms_plus_one(boxes, scores, 0.3), [0, 2])
    np.testing.assert_array_equal(nms_plus_one(boxes, scores, 0.34), [0, 1, 2])


def test_several_faces_and_largest(detector):
    dets = detector.detect(cv2.imread(str(SAMPLES / "images" / "24795717_1.jpg")))
    assert len(dets) == 3
    assert np.all(np.diff(dets.scores) <= 0)
    with pytest.warns(DeprecationWarning, match="widest"):
        assert dets.largest() == int(np.argmax(dets.areas))
    widths = (dets.boxes[:, 2] - dets.boxes[:, 0]).astype(np.float32)
    assert dets.widest() == int(np.argmax(widths))
    assert dets.landmarks.shape == (3, 5, 2)


def test_black_image_has_no_face(detector):
    dets = detector.detect(np.zeros((480, 640, 3), np.uint8))
    assert len(dets) == 0 and dets.boxes.shape == (0, 4)


def test_large_image_is_downscaled(detector):
    img = cv2.imread(str(SAMPLES / "images" / "Obama.jpg"))
    big = cv2.resize(img, None, fx=3, fy=3, interpolation=cv2.INTER_LINEAR)  # 1848 x 1167
    dets = detector.detect(big)
    assert len(dets) == 1
    # boxes come back in the big image's pixels; a resized image moves RetinaFace's box by
    # a few pixels (full resolution: ~6 px at the original scale), hence the tolerance
    np.testing.assert_allclose(dets.boxes[0] / 3, (201.2, 45.1, 320.2, 218.3), atol=8.0)


def test_region_detection_matches_full_frame(detector):
    img = cv2.imread(str(SAMPLES / "image_sequence" / "001.jpg"))
    full = detector.detect(img)
    region = detector.detect_region(img, full.boxes[0] + [-90, -90, 90, 90], 160)
    assert len(region) == 1
    # the 160-px input sees the face at ~0.44x: boxes agree to a few percent of the face
    np.testing.assert_allclose(region.boxes[0], full.boxes[0], atol=15.0)


def test_bad_inputs(detector):
    with pytest.raises(InputError):
        detector.detect(np.zeros((10, 10), np.uint8))
    with pytest.raises(InputError):
        detector.detect(np.zeros((10, 10, 3), np.float32))


def test_corrupt_onnx_raises_model_file_error(tmp_path):
    bad = tmp_path / "retinaface.onnx"
    bad.write_bytes(b"\x08\x07garbage, not a model" * 50)
    with pytest.raises(ModelFileError, match="retinaface.onnx"):
        RetinaFaceDetector(bad)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes((ONNX_DIR / "retinaface_mobilenet025.onnx").read_bytes()[:50_000])
    with pytest.raises(ModelFileError, match="truncated.onnx"):
        RetinaFaceDetector(truncated)
    with pytest.raises(ModelFileError, match="not the expected network"):
        RetinaFaceDetector(ONNX_DIR / "pfld.onnx")
    with pytest.raises(ModelFileError, match="not found"):
        RetinaFaceDetector(tmp_path / "missing.onnx")


def test_face_detections_validation():
    with pytest.raises(ValueError):
        FaceDetections(np.zeros((2, 4)), np.zeros(3))
    assert len(FaceDetections.empty()) == 0
