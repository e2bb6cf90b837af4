"""OpenFace's MTCNN: file parser, network layers, detector on real images."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from conftest import OPENFACE_DIR, SAMPLES, load_reference, reference_landmarks
from pyfaceau.detection.mtcnn import (
    MTCNNDetector,
    MTCNNNetwork,
    _crop_batch,
    _fully_connected,
    apply_correction,
    load_mtcnn,
    nms,
    pick_single_face,
    rectify,
)
from pyfaceau.cnn import conv2d, conv_weight_matrix, max_pool, prelu
from pyfaceau.detection.types import FaceDetections
from pyfaceau.errors import InputError, ModelFileError
from pyfaceau.parsers.mtcnn import (
    ConvLayer,
    FullyConnectedLayer,
    MaxPoolLayer,
    PReLULayer,
    read_cnn,
    read_mtcnn,
)

MTCNN_DIR = OPENFACE_DIR / "model" / "mtcnn_detector"

#: Network outputs of the vectorised layers vs the literal (slow) port, float32 sums.
LAYER_TOL = dict(rtol=1e-4, atol=1e-4)
#: The corrected MTCNN box vs the extent of OpenFace's 68 landmarks of the same frame.
#: Measured on every 15th frame of default.wmv: IoU 0.84-0.93 (median 0.905), edges within
#: 7% of the landmark width; over four videos min IoU 0.74.
MIN_IOU_WITH_LANDMARKS = 0.8
MAX_EDGE_OFFSET = 0.12  # fraction of the landmark extent's width


# ------------------------------------------------------------------------------------------
# parser
# ------------------------------------------------------------------------------------------
def _summary(net):
    out = []
    for layer in net.layers:
        if isinstance(layer, ConvLayer):
            out.append(("conv", layer.weights.shape))
        elif isinstance(layer, MaxPoolLayer):
            out.append(("pool", (layer.kernel_x, layer.kernel_y, layer.stride_x, layer.stride_y)))
        elif isinstance(layer, FullyConnectedLayer):
            out.append(("fc", layer.weights.shape))
        elif isinstance(layer, PReLULayer):
            out.append(("prelu", layer.slopes.shape))
    return out


@pytest.fixture(scope="module")
def mtcnn_data():
    return load_mtcnn()


def test_parser_real_shapes(mtcnn_data):
    assert _summary(mtcnn_data.pnet) == [
        ("conv", (10, 3, 3, 3)), ("prelu", (10,)), ("pool", (2, 2, 2, 2)),
        ("conv", (16, 10, 3, 3)), ("prelu", (16,)),
        ("conv", (32, 16, 3, 3)), ("prelu", (32,)),
        ("fc", (6, 32)),
    ]
    assert _summary(mtcnn_data.rnet) == [
        ("conv", (28, 3, 3, 3)), ("prelu", (28,)), ("pool", (3, 3, 2, 2)),
        ("conv", (48, 28, 3, 3)), ("prelu", (48,)), ("pool", (3, 3, 2, 2)),
        ("conv", (64, 48, 2, 2)), ("prelu", (64,)),
        ("fc", (128, 576)), ("prelu", (128,)), ("fc", (6, 128)),
    ]
    assert _summary(mtcnn_data.onet) == [
        ("conv", (32, 3, 3, 3)), ("prelu", (32,)), ("pool", (3, 3, 2, 2)),
        ("conv", (64, 32, 3, 3)), ("prelu", (64,)), ("pool", (3, 3, 2, 2)),
        ("conv", (64, 64, 3, 3)), ("prelu", (64,)), ("pool", (2, 2, 2, 2)),
        ("conv", (128, 64, 2, 2)), ("prelu", (128,)),
        ("fc", (256, 1152)), ("prelu", (256,)), ("fc", (16, 256)),
    ]
    conv = mtcnn_data.pnet.layers[0]
    assert conv.weights.dtype == np.float32 and conv.bias.shape == (10,)
    assert np.isfinite(conv.weights).all()


def test_parser_truncated_file_names_it(tmp_path):
    data = (MTCNN_DIR / "PNet.dat").read_bytes()
    bad = tmp_path / "PNet.dat"
    bad.write_bytes(data[: len(data) - 100])
    with pytest.raises(ModelFileError, match="PNet.dat"):
        read_cnn(bad)
    # through the detector file as well
    for name in ("RNet.dat", "ONet.dat"):
        shutil.copy(MTCNN_DIR / name, tmp_path / name)
    shutil.copy(MTCNN_DIR / "MTCNN_detector.txt", tmp_path / "MTCNN_detector.txt")
    with pytest.raises(ModelFileError, match="PNet.dat.*truncated"):
        read_mtcnn(tmp_path / "MTCNN_detector.txt")


def test_load_verifies_the_networks_next_to_the_txt(tmp_path):
    folder = tmp_path / "model" / "mtcnn_detector"
    folder.mkdir(parents=True)
    for name in ("MTCNN_detector.txt", "RNet.dat", "ONet.dat"):
        shutil.copy(MTCNN_DIR / name, folder / name)
    data = (MTCNN_DIR / "PNet.dat").read_bytes()
    (folder / "PNet.dat").write_bytes(data[:-8])
    with pytest.raises(ModelFileError, match="PNet.dat.*truncated"):
        load_mtcnn(tmp_path)


def test_parser_rejects_bad_content(tmp_path):
    data = bytearray((MTCNN_DIR / "PNet.dat").read_bytes())
    trailing = tmp_path / "trailing.dat"
    trailing.write_bytes(bytes(data) + b"\0\0\0\0")
    with pytest.raises(ModelFileError, match="trailing.dat.*unexpected bytes"):
        read_cnn(trailing)
    unknown = tmp_path / "unknown.dat"
    data[4:8] = np.int32(7).tobytes()  # first layer type
    unknown.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="unknown.dat.*unknown layer type 7"):
        read_cnn(unknown)
    txt = tmp_path / "MTCNN_detector.txt"
    txt.write_text("PNet PNet.dat\nQNet QNet.dat\n")
    with pytest.raises(ModelFileError, match="unknown module 'QNet'"):
        read_mtcnn(txt)
    txt.write_text("PNet PNet.dat\n")
    with pytest.raises(ModelFileError, match="RNet, ONet"):
        read_mtcnn(txt)


# ------------------------------------------------------------------------------------------
# layers: vectorised vs a literal port of CNN_utils.cpp on OpenFace's list-of-maps layout
# ------------------------------------------------------------------------------------------
def _slow_conv(maps, weights, bias):
    """out[k](y, x) = b[k] + sum_c sum_yy sum_xx in[c](y + yy, x + xx) * K[k, c](yy, xx)."""
    kh, kw = weights.shape[2:]
    h, w = maps[0].shape
    outs = []
    for k in range(weights.shape[0]):
        acc = np.full((h - kh + 1, w - kw + 1), bias[k], dtype=np.float64)
        for c, m in enumerate(maps):
            for yy in range(kh):
                for xx in range(kw):
                    acc += weights[k, c, yy, xx] * m[yy : yy + h - kh + 1, xx : xx + w - kw + 1]
        outs.append(acc)
    return outs


def _slow_pool(maps, kx, ky, sx, sy):
    outs = []
    for m in maps:
        rows, cols = m.shape
        out_x = int(np.floor((cols - kx) / sx + 0.5)) + 1
        out_y = int(np.floor((rows - ky) / sy + 0.5)) + 1
        o = np.zeros((out_y, out_x))
        for x in range(0, cols, sx):
            if x // sx >= out_x:
                continue
            for y in range(0, rows, sy):
                if y // sy >= out_y:
                    continue
                o[y // sy, x // sx] = m[y : min(rows, y + ky), x : min(cols, x + kx)].max()
        outs.append(o)
    return outs


def _slow_fc(maps, weights, bias):
    if isinstance(maps, np.ndarray):  # a single vector
        return weights @ maps + bias
    if len(maps) == weights.shape[1]:  # per pixel
        return [sum(weights[k, c] * maps[c] for c in range(len(maps))) + bias[k]
                for k in range(weights.shape[0])]
    flat = np.concatenate([m.T.reshape(-1) for m in maps])  # each map transposed
    return weights @ flat + bias


def _slow_forward(net_data, image_rgb):
    x = [image_rgb[:, :, c].astype(np.float64) for c in range(3)]
    for layer in net_data.layers:
        if isinstance(layer, ConvLayer):
            x = _slow_conv(x, layer.weights, layer.bias)
        elif isinstance(layer, MaxPoolLayer):
            x = _slow_pool(x, layer.kernel_x, layer.kernel_y, layer.stride_x, layer.stride_y)
        elif isinstance(layer, PReLULayer):
            if isinstance(x, np.ndarray):
                x = np.where(x >= 0, x, x * layer.slopes)
            else:
                x = [np.where(m >= 0, m, m * s) for m, s in zip(x, layer.slopes)]
        elif isinstance(layer, FullyConnectedLayer):
            x = _slow_fc(x, layer.weights, layer.bias)
    return np.stack(x, axis=-1) if isinstance(x, list) else x


def test_conv2d_matches_direct_loop():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 7, 9)).astype(np.float32)  # (N, C, H, W)
    weights = rng.standard_normal((5, 4, 3, 2)).astype(np.float32)  # kh=3, kw=2
    bias = rng.standard_normal(5).astype(np.float32)
    got = conv2d(x, conv_weight_matrix(weights, bias), 3, 2)
    assert got.shape == (2, 5, 5, 8)
    for n in range(2):
        want = np.stack(_slow_conv(list(x[n]), weights, bias))
        np.testing.assert_allclose(got[n], want, **LAYER_TOL)


@pytest.mark.parametrize(
    "shape, pool",
    [(s, p) for s in [(7, 9), (8, 8), (5, 6), (3, 3)] for p in [(2, 2, 2, 2), (3, 3, 2, 2)]]
    + [(s, (2, 2, 2, 2)) for s in [(52, 52), (3, 2), (2, 2), (9, 4)]],
)
def test_max_pool_matches_openface_loop(shape, pool):
    """OpenFace's pooling loops (MTCNN's ``max_pooling`` and the validator's
    ``CNN_utils.cpp: max_pooling``, 2x2 stride 2, the last window of an odd size one
    wide) on the shared engine."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 3, *shape)).astype(np.float32)
    got = max_pool(x, *pool)
    want = np.stack(_slow_pool(list(x[0]), *pool))
    assert got.shape[1:] == want.shape
    np.testing.assert_array_equal(got[0], want.astype(np.float32))


def test_prelu_is_exact():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 8, 5, 6)).astype(np.float32)
    x[0, :4, 0, 0] = [0.0, -0.0, 1e-40, -1e-40]
    slopes = rng.uniform(-1, 1, 8).astype(np.float32)
    np.testing.assert_array_equal(prelu(x, slopes), np.where(x >= 0, x, x * slopes[:, None, None]))


def test_fully_connected_flattens_maps_transposed():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 4, 3, 2)).astype(np.float32)  # C=4, H=3, W=2
    weights = rng.standard_normal((5, 24)).astype(np.float32)
    bias = rng.standard_normal(5).astype(np.float32)
    got = _fully_connected(x, weights, bias)
    want = _slow_fc(list(x[0]), weights, bias)
    np.testing.assert_allclose(got[0], want, **LAYER_TOL)


@pytest.mark.parametrize("net_name, shape", [("pnet", (17, 23)), ("rnet", (24, 24)),
                                              ("onet", (48, 48))])
def test_networks_match_literal_port(mtcnn_data, net_name, shape):
    rng = np.random.default_rng(3)
    image = rng.uniform(-1, 1, (*shape, 3)).astype(np.float32)
    data = getattr(mtcnn_data, net_name)
    got = MTCNNNetwork(data)(image[None])[0]
    want = _slow_forward(data, image)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, **LAYER_TOL)


def test_nms_orders_by_score_and_uses_mode():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 4, 4], [0, 0, 20, 20]], np.float32)
    scores = np.array([0.9, 0.95, 0.5, 0.8], np.float32)
    # IoU(0,1) = 81/119 = 0.68; IoU(box, big box 3) = 0.25
    assert nms(boxes, scores, 0.5, minimum=False).tolist() == [1, 3, 2]
    # intersection over the smaller box: box 3 contains box 1
    assert nms(boxes, scores, 0.7, minimum=True).tolist() == [1, 2]


def test_box_arithmetic_follows_openface():
    boxes = np.array([[10.4, 20.5, 30.6, 40.5]], np.float32)
    corr = np.array([[0.1, -0.1, 0.2, 0.0]], np.float32)
    # cv::Rect rounds half to even: (10, 20, 31, 40)
    np.testing.assert_allclose(apply_correction(boxes, corr, add1=False)[0],
                               [13.1, 16.0, 34.1, 44.0], atol=1e-5)
    np.testing.assert_allclose(apply_correction(boxes, corr, add1=True)[0],
                               [13.2, 15.9, 35.2, 45.1], atol=1e-5)
    squares = rectify(np.array([[13.1, 16.0, 34.1, 44.0], [-3.7, -0.2, 10.0, 4.0]], np.float32))
    np.testing.assert_array_equal(squares, [[8, 16, 44, 44], [-3, -3, 10, 10]])  # (int) truncates


def _crop_literal(img, box, size):
    """The crop of ``DetectFaces`` (RNet/ONet stages), index by index."""
    x, y, w, h = (float(v) for v in box)
    height, width = img.shape[:2]
    wt, ht = w + 1, h + 1
    sx_in, sy_in = max(int(x - 1), 0), max(int(y - 1), 0)
    ex_in, ey_in = min(int(x + wt - 1), width), min(int(y + ht - 1), height)
    sx_out, sy_out = max(int(-x + 1), 0), max(int(-y + 1), 0)
    ex_out = int(min(wt - (x + w - width), wt))
    ey_out = int(min(ht - (y + h - height), ht))
    tmp = np.zeros((int(ht), int(wt), 3), np.float32)
    tmp[sy_out:ey_out, sx_out:ex_out] = img[sy_in:ey_in, sx_in:ex_in]
    out = (cv2.resize(tmp, (size, size)) - np.float32(127.5)) * np.float32(0.0078125)
    return out[:, :, ::-1]


def test_crops_follow_openface_indexing():
    rng = np.random.default_rng(4)
    img = rng.uniform(0, 255, (40, 50, 3)).astype(np.float32)
    boxes = np.array([[5, 6, 20, 20], [-4, -3, 15, 15], [40, 30, 20, 20], [0, 0, 50, 50],
                      [1, 1, 38, 38]], np.float32)
    crops, valid = _crop_batch(img, boxes, 24)
    assert valid.all()
    for crop, box in zip(crops, boxes):
        np.testing.assert_array_equal(crop, _crop_literal(img, box, 24))


# ------------------------------------------------------------------------------------------
# detector on real images
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def detector(mtcnn_data):
    return MTCNNDetector(data=mtcnn_data)


def _first_frame(path):
    cap = cv2.VideoCapture(str(path))
    ok, frame = cap.read()
    cap.release()
    assert ok, f"cannot read {path}"
    return frame


def _iou(a, b):
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(iw, 0) * max(ih, 0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.parametrize(
    "source, stem",
    [("image_sequence/001.jpg", "image_sequence"), ("default.wmv", "default")],
)
def test_box_fits_openface_landmarks(detector, source, stem):
    path = SAMPLES / source
    image = cv2.imread(str(path)) if path.suffix == ".jpg" else _first_frame(path)
    faces = detector.detect(image)
    assert len(faces) == 1
    assert faces.scores[0] > 0.99
    lm = reference_landmarks(load_reference(stem))[0]
    extent = np.array([*lm.min(axis=0), *lm.max(axis=0)])
    box = faces.boxes[0]
    assert _iou(box, extent) > MIN_IOU_WITH_LANDMARKS
    width = extent[2] - extent[0]
    assert np.all(np.abs(box - extent) < MAX_EDGE_OFFSET * width), (box, extent)
    # ONet's five points near the reference eyes, nose tip and mouth corners
    ref5 = np.array([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])
    assert np.abs(faces.landmarks[0] - ref5).max() < 0.06 * width


def test_one_face_in_obama(detector):
    image = cv2.imread(str(SAMPLES / "images" / "Obama.jpg"))
    faces = detector.detect(image)
    assert len(faces) == 1 and faces.scores[0] > 0.99
    x1, y1, x2, y2 = faces.boxes[0]
    assert 0 <= x1 < x2 <= image.shape[1] and 0 <= y1 < y2 <= image.shape[0]
    assert x2 - x1 > 60  # a real face, not a fragment


def test_several_faces(detector):
    image = cv2.imread(str(SAMPLES / "images" / "24795717_1.jpg"))
    faces = detector.detect(image)
    assert len(faces) == 3
    assert faces.landmarks.shape == (3, 5, 2)
    assert np.all(np.diff(faces.scores) <= 0)  # best first
    # disjoint boxes, side by side
    xs = np.sort(faces.boxes[:, 0])
    assert np.all(np.diff(xs) > 100)
    widest = pick_single_face(faces)
    assert faces.boxes[widest, 2] - faces.boxes[widest, 0] == pytest.approx(
        (faces.boxes[:, 2] - faces.boxes[:, 0]).max())
    right_face = int(np.argmax(faces.boxes[:, 0]))
    centre = faces.boxes[right_face].reshape(2, 2).mean(0)
    assert pick_single_face(faces, preference=(int(centre[0]), int(centre[1]))) == right_face


def test_black_image_has_no_face(detector):
    faces = detector.detect(np.zeros((480, 640, 3), np.uint8))
    assert isinstance(faces, FaceDetections) and len(faces) == 0
    assert faces.boxes.shape == (0, 4) and faces.scores.shape == (0,)


def test_grey_input_equals_grey_bgr(detector):
    image = cv2.imread(str(SAMPLES / "image_sequence" / "001.jpg"))
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    a = detector.detect(grey)
    b = detector.detect(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR))
    assert len(a) == 1
    np.testing.assert_array_equal(a.boxes, b.boxes)


def test_bad_inputs(detector):
    with pytest.raises(InputError, match="uint8"):
        detector.detect(np.zeros((100, 100, 3), np.float32))
    with pytest.raises(InputError, match="shape"):
        detector.detect(np.zeros((100, 100, 4), np.uint8))
    with pytest.raises(InputError, match="min_face_size"):
        MTCNNDetector(data=detector.data, min_face_size=0)
    assert len(detector.detect(np.zeros((30, 40, 3), np.uint8))) == 0  # below min face


def test_ignore_leaves_the_other_faces_exactly_as_they_are():
    """``detect(image, ignore=boxes)`` (the multi-face scan: the tracked faces) sends fewer
    of PNet's proposals on to RNet and ONet; every face outside the ignored boxes keeps the
    very box, score and points it gets without them (an ignored face may still come back
    from its larger proposals, with another box: the scan takes it for the tracked face it
    is)."""
    image = cv2.imread(str(SAMPLES / "images" / "24795717_1.jpg"))
    detector = MTCNNDetector()
    full = detector.detect(image)
    assert len(full) == 3
    for ignored in ([0], [1], [0, 2], [0, 1, 2]):
        part = detector.detect(image, ignore=full.boxes[ignored])
        found = [int(np.argmin(np.abs(full.boxes - b).sum(axis=1))) for b in part.boxes]
        for k in set(range(3)) - set(ignored):
            j = found.index(k)
            np.testing.assert_array_equal(part.boxes[j], full.boxes[k])
            np.testing.assert_array_equal(part.scores[j], full.scores[k])
            np.testing.assert_array_equal(part.landmarks[j], full.landmarks[k])
        assert len(part) <= len(full)
    empty = detector.detect(image, ignore=np.zeros((0, 4)))
    np.testing.assert_array_equal(empty.boxes, full.boxes)
