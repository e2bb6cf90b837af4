"""OpenFace's video tracking rules (``DetectLandmarksInVideo``).

The state machine is exercised with the real MTCNN detector, the real validator and the
real PDM; where a CLNF fit is needed without the CLNF fitter, a replay stub returns
OpenFace's own fit of the frame from the reference CSV (so the validator sees exactly
what OpenFace's validator saw). The end-to-end tests with the real fitter run once
``pyfaceau.landmarks.clnf.model`` exists.
"""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from conftest import OPENFACE_DIR, SAMPLES, load_reference, reference_landmarks
from pyfaceau.detection.mtcnn import MTCNNDetector
from pyfaceau.detection.types import FaceDetections
from pyfaceau.landmarks.tracking import (
    ROTATION_HYPOTHESES,
    SequenceTracker,
    TrackingParameters,
    select_face,
)
from pyfaceau.landmarks.clnf.validator import load_detection_validator
from pyfaceau.pdm import load_pdm
from pyfaceau.pipeline.faithful import PDM_RELPATH, OpenFaceLandmarkFrontEnd

INIT = (11, 9, 7, 5)
SMALL = (0, 9, 7, 0)


@pytest.fixture(scope="module")
def validator():
    return load_detection_validator()


@pytest.fixture(scope="module")
def pdm():
    return load_pdm(OPENFACE_DIR / PDM_RELPATH)


@pytest.fixture(scope="module")
def mtcnn():
    return MTCNNDetector()


def _frames(name: str, start: int = 0, stop: int | None = None):
    cap = cv2.VideoCapture(str(SAMPLES / name))
    i = 0
    try:
        while stop is None or i < stop:
            ok, frame = cap.read()
            if not ok:
                break
            if i >= start:
                yield i, frame
            i += 1
    finally:
        cap.release()


class ReplayFitter:
    """OpenFace's own fit of the current frame (reference CSV), whatever the start.

    ``shift`` moves the landmarks (pixels) to make the validator reject them;
    ``bad_refits`` maps a frame to a shift applied to every fit of that frame but the
    first (i.e. to the re-detection hypotheses after a tracking failure).
    """

    def __init__(
        self,
        stem: str,
        shift: tuple[float, float] = (0.0, 0.0),
        bad_refits: dict[int, tuple[float, float]] | None = None,
    ) -> None:
        ref = load_reference(stem)
        self.bad_refits = bad_refits or {}
        self.landmarks = reference_landmarks(ref) + np.asarray(shift)
        self.params_global = ref[["p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty"]].to_numpy()
        self.params_local = ref[[f"p_{i}" for i in range(34)]].to_numpy()
        self.frame = 0
        self.calls: list[tuple[int, tuple[int, ...]]] = []

    def fit(self, gray, params_global, params_local, window_sizes):
        assert gray.dtype == np.uint8 and gray.ndim == 2
        assert np.asarray(params_global).shape == (6,) and np.asarray(params_local).shape == (34,)
        f = self.frame
        refit = any(c[0] == f for c in self.calls)
        self.calls.append((f, tuple(window_sizes)))
        shift = np.asarray(self.bad_refits.get(f, (0.0, 0.0))) if refit else 0.0
        return SimpleNamespace(
            landmarks=self.landmarks[f] + shift,
            params_global=self.params_global[f],
            params_local=self.params_local[f],
            model_likelihood=0.0,
            converged=True,
        )


class CountingDetector:
    """A detector wrapper recording on which frames detection ran."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.frame = 0
        self.calls: list[int] = []

    def detect(self, image):
        self.calls.append(self.frame)
        return self.inner.detect(image)


class FixedDetector:
    """Always reports the same (real, precomputed) detections."""

    def __init__(self, detections: FaceDetections) -> None:
        self.detections = detections
        self.frame = 0
        self.calls: list[int] = []

    def detect(self, image):
        self.calls.append(self.frame)
        return self.detections


class NoFitter:
    def fit(self, *args, **kwargs):  # pragma: no cover - must not be reached
        raise AssertionError("the fitter must not run without a detected face")


def test_select_face_widest_first() -> None:
    dets = FaceDetections(
        boxes=[[0, 0, 50, 60], [10, 10, 90, 70], [5, 5, 85, 95]], scores=[0.9, 0.8, 0.99]
    )
    assert select_face(dets) == (10.0, 10.0, 80.0, 60.0)  # widest, first of equals
    assert select_face(FaceDetections.empty()) is None


def test_parameters_checked() -> None:
    with pytest.raises(ValueError, match="window_sizes_init"):
        TrackingParameters(window_sizes_init=(0, 0, 0))
    with pytest.raises(ValueError, match="validation_boundary"):
        TrackingParameters(validation_boundary=2.0)


def test_black_frames_fail_and_redetect_every_12(mtcnn, validator, pdm) -> None:
    det = CountingDetector(mtcnn)
    tracker = SequenceTracker(NoFitter(), det, validator, pdm)
    black = np.zeros((240, 320, 3), np.uint8)
    gray = np.zeros((240, 320), np.uint8)
    for f in range(25):
        det.frame = f
        assert tracker.step(black, gray) is False
        r = tracker.result(False)
        assert r.confidence == 0.0 and not r.landmarks.any()
    assert det.calls == [0, 12, 24]  # (failures_in_a_row + 1) % (2 * 6) == 0


def test_replay_multi_face_failure_and_recovery(mtcnn, validator, pdm) -> None:
    """multi_face.avi frames 570-585: OpenFace fails on 577 (0.02) and 578 (0.72).

    On 577 the written landmarks score 0.717 (< 0.725: tracking failed); the 0.02 is the
    certainty of the best re-detection hypothesis, which failed too, so OpenFace restored
    the tracked landmarks but kept that certainty. The replay's hypotheses on 577 are
    the landmarks moved by half a face (certainty 0.017).
    """
    stem, start, stop = "multi_face", 570, 586
    ref = load_reference(stem)
    fitter = ReplayFitter(stem, bad_refits={577: (60.0, 0.0)})
    det = CountingDetector(mtcnn)
    tracker = SequenceTracker(fitter, det, validator, pdm)
    got = []
    for f, frame in _frames("multi_face.avi", start, stop):
        fitter.frame = det.frame = f
        success = tracker.step(frame, cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
        r = tracker.result(success)
        got.append(success)
        assert abs(r.confidence - ref.confidence[f]) <= 1 / 300 + 1e-6
        # landmarks: the frame's fit (on 577, restored to the tracked fit of the frame)
        np.testing.assert_allclose(r.landmarks, fitter.landmarks[f])
    np.testing.assert_array_equal(got, ref.success[start:stop].to_numpy() == 1)
    # first frame: detection; 577: tracking failed -> immediate re-detection
    assert det.calls == [570, 577]
    windows = {}
    for f, ws in fitter.calls:
        windows.setdefault(f, []).append(ws)
    assert windows[570] == [INIT] * len(ROTATION_HYPOTHESES)  # 11 hypotheses
    assert windows[571] == [SMALL]
    assert windows[577] == [SMALL] + [INIT] * len(ROTATION_HYPOTHESES)
    assert windows[578] == [INIT]  # after a failure: the large windows, no detection
    assert windows[579] == [INIT]
    assert windows[580] == [SMALL]


def test_lost_track_uninitialises_after_100_failures(mtcnn, validator, pdm) -> None:
    """A face the validator always rejects: re-detection every 2nd frame, then after 100
    failures tracking restarts from scratch (first detection succeeds regardless)."""
    frame = next(_frames("default.wmv"))[1]
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    ref_lm = reference_landmarks(load_reference("default"))[0]
    fitter = ReplayFitter("default", shift=(0.5 * np.ptp(ref_lm[:, 0]), 0.0))
    det = FixedDetector(mtcnn.detect(frame))
    tracker = SequenceTracker(fitter, det, validator, pdm)
    got = []
    for f in range(112):
        det.frame = f
        fitter.frame = 0  # the same (real) frame over and over
        got.append(tracker.step(frame, gray))
        if f == 0:
            assert tracker.result(True).confidence < 0.1  # rejected, yet a success
    # 0: first detection (succeeds regardless); 1..108 fail (102: > 100 failures,
    # tracking un-initialised); 109: detection from scratch, a success regardless;
    # 110, 111: tracking and re-detection fail again.
    expected = [True] + [False] * 108 + [True] + [False] * 2
    assert got == expected
    assert det.calls == [0] + list(range(1, 102, 2)) + [109, 110]
    fitted = sorted({f for f, _ in fitter.calls})
    assert not set(range(103, 109)) & set(fitted)  # not initialised: no fitting


def test_reset_forgets(mtcnn, validator, pdm) -> None:
    fitter = ReplayFitter("default")
    det = CountingDetector(mtcnn)
    tracker = SequenceTracker(fitter, det, validator, pdm)
    f0 = next(_frames("default.wmv"))[1]
    g0 = cv2.cvtColor(f0, cv2.COLOR_BGR2GRAY)
    assert tracker.step(f0, g0)
    tracker.reset()
    assert not tracker.state.tracking_initialised and tracker.state.failures_in_a_row == -1
    assert tracker.step(f0, g0)
    assert det.calls == [0, 0]  # detected again after the reset


# ------------------------------------------------------------- with the real CLNF fitter
#: Validator confidence bins that may differ from OpenFace's in the first 30 frames: one,
#: the smallest unit above OpenFace's own spread across BLAS kernels.
MAX_VALIDATOR_BIN_FLIPS_IN_30 = 1

def test_front_end_first_frames_succeed() -> None:
    stem = "0188_03_021_al_pacino"
    ref = load_reference(stem)
    fe = OpenFaceLandmarkFrontEnd()
    got, conf = [], []
    for f, frame in _frames(f"{stem}.avi", 0, 30):
        r = fe.track(frame)
        got.append(r.success)
        conf.append(r.confidence)
        assert r.landmarks.shape == (68, 2)
    ref_ok = ref.success[:30].to_numpy() == 1
    assert np.all(np.array(got)[ref_ok]), (got, conf)
    # measured: identical validator bins on all 30 frames with OpenBLAS's Haswell kernels;
    # with other kernels one bin flips (frame 8: 0.983 vs 0.92). OpenFace's own bins move
    # as much across kernels (0-0.6% of frames per video, docs/robustness.md): at most
    # one frame of 30 may differ.
    differ = np.abs(np.asarray(conf) - ref.confidence[:30].to_numpy()) > 1 / 300 + 1e-6
    assert differ.sum() <= MAX_VALIDATOR_BIN_FLIPS_IN_30, np.round(conf, 3)
    black = np.zeros_like(frame)
    fe.reset()
    assert not fe.track(black).success


def test_front_end_redetects_after_tracking_failure(mtcnn) -> None:
    """bill_clinton: tracking fails on frame 244 (0-based) and OpenFace re-detects at
    once; the re-detected fit passes, so every frame is a success. Measured: success and
    detector calls as OpenFace on frames 0-259, confidence bins identical on all but
    frame 249 (0.983 vs 0.92, a frame where +-0.05 px of landmark noise flips the bin)."""
    stem = "0417_02_003_bill_clinton"
    ref = load_reference(stem)
    det = CountingDetector(mtcnn)
    fe = OpenFaceLandmarkFrontEnd(detector=det)
    got, conf = [], []
    for f, frame in _frames(f"{stem}.avi", 0, 260):
        det.frame = f
        r = fe.track(frame)
        got.append(r.success)
        conf.append(r.confidence)
    n = len(got)
    np.testing.assert_array_equal(got, ref.success[:n].to_numpy() == 1)
    assert det.calls == [0, 244]
    exact = np.abs(np.array(conf) - ref.confidence[:n].to_numpy()) <= 1 / 300 + 1e-6
    assert exact.mean() >= 0.99


def test_hypotheses_run_the_part_models_on_the_chosen_one_only() -> None:
    """The rotation hypotheses are chosen by the main model's likelihood, which the part
    models do not change: fitting every hypothesis in full (OpenFace's
    DetectLandmarksInImageMultiHypBasic) and fitting the main model of each, then the
    parts of the chosen one, give the same fit (default.wmv: a large face, parts used)."""
    from pyfaceau.landmarks.clnf.model import CLNF
    from pyfaceau.landmarks.tracking import CLNFStep, RotationHypotheses

    clnf = CLNF()
    step, pdm = CLNFStep(clnf), clnf.pdm
    (_, frame), = _frames("default.wmv", 0, 1)
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    lm = reference_landmarks(load_reference("default"))[0]
    (x, y), (x2, y2) = lm.min(axis=0), lm.max(axis=0)
    xywh = (x, y, x2 - x, y2 - y)
    zeros = np.zeros(pdm.n_modes)
    full = [clnf.fit(gray, np.asarray(pdm.calc_params_from_bbox(xywh, zeros, r)), zeros,
                     step.window_sizes_init) for r in ROTATION_HYPOTHESES]
    want = full[0]
    for fit in full[1:]:
        if want.model_likelihood < fit.model_likelihood:
            want = fit
    assert len({f.model_likelihood for f in full}) > 1 and want.parts_used
    got = RotationHypotheses(step, pdm).fit_xywh(gray, xywh)
    assert got.model_likelihood == want.model_likelihood
    np.testing.assert_array_equal(got.landmarks, want.landmarks)
    np.testing.assert_array_equal(got.params_global, want.params_global)
    np.testing.assert_array_equal(got.params_local, want.params_local)
    assert got.part_landmarks.keys() == want.part_landmarks.keys()
    for name in want.part_landmarks:
        np.testing.assert_array_equal(got.part_landmarks[name], want.part_landmarks[name])
