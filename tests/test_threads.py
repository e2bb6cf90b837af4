"""Several threads inside a frame give the same bits as one (issue 8).

The stage objects take an executor (CLNF, the detection validator, MTCNN); every piece
they hand to it is computed alone, so the outputs must be byte-identical whatever the
thread count. Also the CNN engine's fixed order of summation.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from conftest import SAMPLES, load_reference, reference_landmarks
from pyfaceau.parallel import run_all, split_ranges
from pyfaceau.cnn import conv2d, conv_weight_matrix
from pyfaceau.detection.mtcnn import MTCNNDetector, load_mtcnn
from pyfaceau.landmarks.clnf.model import CLNF
from pyfaceau.landmarks.clnf.validator import load_detection_validator
from pyfaceau.pipeline.faithful import OpenFaceLandmarkFrontEnd

#: Frames of each video run through the whole front end with 1 and with N threads.
FRONT_END_FRAMES = 12


def _frames(video: str, count: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(SAMPLES / video))
    out = []
    while len(out) < count:
        ok, frame = cap.read()
        if not ok:
            break
        out.append(frame)
    cap.release()
    assert len(out) == count
    return out


@pytest.fixture(scope="module")
def pool():
    with ThreadPoolExecutor(3) as ex:
        yield ex


@pytest.fixture(scope="module")
def clnf_pair(pool):
    return CLNF(), CLNF(executor=pool, threads=3)


def _assert_fits_equal(a, b) -> None:
    assert np.array_equal(a.landmarks, b.landmarks)
    assert np.array_equal(a.params_global, b.params_global)
    assert np.array_equal(a.params_local, b.params_local)
    assert a.model_likelihood == b.model_likelihood and a.parts_used == b.parts_used
    assert np.array_equal(a.landmark_likelihoods, b.landmark_likelihoods)
    assert a.part_landmarks.keys() == b.part_landmarks.keys()
    for name in a.part_landmarks:
        assert np.array_equal(a.part_landmarks[name], b.part_landmarks[name])
        for pa, pb in zip(a.part_params[name], b.part_params[name]):
            assert np.array_equal(pa, pb)


@pytest.mark.parametrize("video", ["default.wmv", "0188_03_021_al_pacino.avi"])
def test_clnf_fit_is_identical_with_threads(clnf_pair, video):
    """A fit from OpenFace's landmarks of frame 1 (large face: part models run on
    default.wmv; small face: they do not), initial and tracking window sizes."""
    one, many = clnf_pair
    frame = _frames(video, 1)[0]
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    lm = reference_landmarks(load_reference(video.rsplit(".", 1)[0]))[0]
    x, y = lm.min(axis=0)
    w, h = lm.max(axis=0) - lm.min(axis=0)
    glob, loc = one.params_from_bbox((x, y, w, h))
    first = one.fit(gray, glob, loc, (11, 9, 7))
    _assert_fits_equal(first, many.fit(gray, glob, loc, (11, 9, 7)))
    assert first.parts_used == (video == "default.wmv")
    _assert_fits_equal(
        one.fit(gray, first.params_global, first.params_local),
        many.fit(gray, first.params_global, first.params_local),
    )


def test_mtcnn_is_identical_with_threads(pool):
    data = load_mtcnn()
    one, many = MTCNNDetector(data=data), MTCNNDetector(data=data, executor=pool, threads=3)
    for video in ("multi_face.avi", "default.wmv"):
        frame = _frames(video, 1)[0]
        a, b = one.detect(frame), many.detect(frame)
        assert len(a) > 0
        assert np.array_equal(a.boxes, b.boxes)
        assert np.array_equal(a.scores, b.scores)
        assert np.array_equal(a.landmarks, b.landmarks)


@pytest.mark.parametrize("video", ["default.wmv", "2015-10-15-15-14.avi"])
def test_faithful_front_end_is_identical_with_threads(pool, video):
    """The whole front end (MTCNN, CLNF with part models, validator, tracking) on the
    first frames of a video, one thread against three."""
    one = OpenFaceLandmarkFrontEnd()
    many = OpenFaceLandmarkFrontEnd(
        fitter=CLNF(executor=pool, threads=3),
        detector=MTCNNDetector(executor=pool, threads=3),
        validator=load_detection_validator(executor=pool, threads=3),
    )
    for frame in _frames(video, FRONT_END_FRAMES):
        a, b = one.track(frame), many.track(frame)
        assert (a.success, a.confidence) == (b.success, b.confidence)
        assert np.array_equal(a.landmarks, b.landmarks)
        assert np.array_equal(a.params_global, b.params_global)
        assert np.array_equal(a.params_local, b.params_local)
    assert one.part_landmarks.keys() == many.part_landmarks.keys()
    for name, value in one.part_landmarks.items():
        assert np.array_equal(value, many.part_landmarks[name])


def test_conv2d_split_and_fixed_order():
    """Output-map ranges give the same bits; each output is the float32 FMA chain over
    OpenFace's im2col columns, bias last (checked against a float64 emulation, which
    can round differently only on a double-rounding tie)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    kernels = rng.standard_normal((5, 3, 3, 2)).astype(np.float32)
    bias = rng.standard_normal(5).astype(np.float32)
    w = conv_weight_matrix(kernels, bias)
    got = conv2d(x, w, 3, 2)
    with ThreadPoolExecutor(2) as ex:
        assert np.array_equal(got, conv2d(x, w, 3, 2, executor=ex, parts=3))
    want = np.zeros_like(got)
    for n in range(2):
        for o in range(5):
            acc = np.zeros((7, 7), np.float32)
            for c in range(3):
                for xx in range(2):  # OpenFace's column order: map, kernel column, row
                    for yy in range(3):
                        prod = kernels[o, c, yy, xx].astype(np.float64) * x[n, c, yy : yy + 7, xx : xx + 7]
                        acc = (acc.astype(np.float64) + prod).astype(np.float32)
            want[n, o] = (acc.astype(np.float64) + np.float64(bias[o])).astype(np.float32)
    assert (got == want).mean() > 0.999
    np.testing.assert_array_max_ulp(got, want, maxulp=1)


def test_run_all_keeps_order_and_never_waits_for_a_busy_pool():
    assert split_ranges(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert split_ranges(2, 4) == [(0, 1), (1, 2)] and split_ranges(0, 2) == []
    release = threading.Event()
    with ThreadPoolExecutor(1) as ex:
        blocker = ex.submit(release.wait)  # the only worker is busy
        out = run_all(ex, [(lambda i=i: i * i, ()) for i in range(5)])
        release.set()
        blocker.result()
    assert out == [0, 1, 4, 9, 16]
    ex.shutdown()  # a closed pool: everything runs on the calling thread
    assert run_all(ex, [(lambda i=i: -i, ()) for i in range(3)]) == [0, -1, -2]


def test_conv2d_loop_orders_agree():
    """The two loop orders of :func:`pyfaceau.cnn.conv2d` (along rows, along output
    maps) compute the same chains: equal bits on every shape."""
    from pyfaceau.cnn.layers import _conv2d_pixels, _conv2d_rows

    rng = np.random.default_rng(3)
    for shape, k, kh, kw in [((2, 5, 9, 8), 7, 3, 2), ((3, 48, 4, 4), 64, 2, 2),
                             ((1, 1, 20, 20), 10, 9, 9), ((2, 3, 13, 11), 33, 7, 3)]:
        x = rng.standard_normal(shape).astype(np.float32)
        w = rng.standard_normal((k, shape[1] * kh * kw + 1)).astype(np.float32)
        out_shape = (shape[0], k, shape[2] - kh + 1, shape[3] - kw + 1)
        rows, pixels = np.empty(out_shape, np.float32), np.empty(out_shape, np.float32)
        _conv2d_rows(x, w, kh, kw, 0, k, rows)
        wk = np.ascontiguousarray(w.T)
        _conv2d_pixels(x, wk, kh, kw, 0, k // 2, pixels)
        _conv2d_pixels(x, wk, kh, kw, k // 2, k, pixels)
        assert np.array_equal(rows, pixels)


def test_read_ahead_fits_each_frame_once_with_the_same_results(pool):
    """With the next frame announced (``expect_next``) and the validator on the pool,
    each frame's fit starts while the previous frame is validated, and is used: as many
    CLNF fits as without reading ahead, and the same results. An announced frame that is
    not the one then tracked (another array), and a frame after a failed one (other
    window sizes), are fitted again, with the same results as frame by frame."""
    frames = _frames("2015-10-15-15-14.avi", FRONT_END_FRAMES)
    black = np.zeros_like(frames[0])
    # frame 6 is black: validation fails, no face is found, frame 7 starts from the
    # restored fit with the initial window sizes; frame 9 is announced as a copy
    sequence = frames[:6] + [black] + frames[6:]
    announced = list(sequence[1:]) + [None]
    announced[8] = sequence[9].copy()

    def run(front_end, read_ahead):
        calls = []
        fit = front_end.fitter.fit

        def counting_fit(*args, **kwargs):
            calls.append(1)
            return fit(*args, **kwargs)

        front_end.fitter.fit = counting_fit
        out = []
        for frame, upcoming in zip(sequence, announced):
            if read_ahead and upcoming is not None:
                front_end.expect_next(upcoming)
            out.append(front_end.track(frame))
        return out, len(calls)

    clnf = CLNF(executor=pool, threads=3)
    validator = load_detection_validator(executor=pool, threads=3)
    mtcnn = MTCNNDetector(executor=pool, threads=3)
    plain, n_plain = run(OpenFaceLandmarkFrontEnd(fitter=clnf, detector=mtcnn,
                                                  validator=load_detection_validator()), False)
    ahead, n_ahead = run(OpenFaceLandmarkFrontEnd(fitter=CLNF(executor=pool, threads=3),
                                                  detector=mtcnn, validator=validator), True)
    assert [r.success for r in plain] == [True] * 6 + [False] + [True] * 6
    for a, b in zip(plain, ahead):
        assert (a.success, a.confidence) == (b.success, b.confidence)
        assert np.array_equal(a.landmarks, b.landmarks)
        assert np.array_equal(a.params_global, b.params_global)
        assert np.array_equal(a.params_local, b.params_local)
    # two fits made ahead and not used: frame 7's, made while the black frame 6 was
    # validated (small window sizes; the failure asks for the initial ones), and
    # frame 9's (a copy of it was announced)
    assert n_ahead == n_plain + 2
