"""The sequence tracker as shared parts + per-face state (pyfaceau.landmarks.tracking):
several faces on one tracker, from several threads, with detections given by the caller."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from conftest import SAMPLES
from pyfaceau.detection.types import FaceDetections
from pyfaceau.landmarks.tracking import (
    FAST_CLNF_POLICY,
    OPENFACE_POLICY,
    LandmarkTracker,
    TrackingParameters,
)
from pyfaceau.pipeline.fast import FastLandmarkFrontEnd

N = 12


def _frames(name: str, n: int = N) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(SAMPLES / name))
    out = []
    for _ in range(n):
        ok, frame = cap.read()
        assert ok
        out.append(frame)
    cap.release()
    return out


@pytest.fixture(scope="module")
def front_end() -> FastLandmarkFrontEnd:
    return FastLandmarkFrontEnd(refine="clnf")


@pytest.fixture(scope="module")
def videos() -> dict[str, list[np.ndarray]]:
    return {name: _frames(name) for name in ("default.wmv", "0188_03_021_al_pacino.avi")}


def _run(tracker: LandmarkTracker, frames, detections=None):
    state = tracker.new_state()
    out = []
    for f in frames:
        gray = cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)
        out.append(tracker.step(state, f, gray, detections))
    return state, out


def _same(a, b) -> None:
    assert [r.success for r in a] == [r.success for r in b]
    assert [r.confidence for r in a] == [r.confidence for r in b]
    for ra, rb in zip(a, b):
        np.testing.assert_array_equal(ra.landmarks, rb.landmarks)
        np.testing.assert_array_equal(ra.params_local, rb.params_local)


def test_policies_are_data() -> None:
    assert TrackingParameters().policy() == OPENFACE_POLICY
    assert OPENFACE_POLICY.validate_every == 1 and not OPENFACE_POLICY.drop_on_failure
    assert (FAST_CLNF_POLICY.validate_every, FAST_CLNF_POLICY.verify_every) == (3, 15)


def test_front_end_is_the_tracker(front_end, videos) -> None:
    """The front end's results are the shared tracker's, frame for frame."""
    frames = videos["default.wmv"]
    front_end.reset()
    ours = [front_end.track(f) for f in frames]
    _, direct = _run(front_end.tracker, frames)
    assert all(r.success for r in direct)
    _same(ours, direct)


def test_faces_interleaved_on_one_tracker(front_end, videos) -> None:
    """Two faces stepped alternately on one tracker give what each gives alone: all
    tracking state is in the per-face state."""
    t = front_end.tracker
    names = list(videos)
    alone = {n: _run(t, videos[n])[1] for n in names}
    states = {n: t.new_state() for n in names}
    mixed: dict[str, list] = {n: [] for n in names}
    for i in range(N):
        for n in names:
            f = videos[n][i]
            mixed[n].append(t.step(states[n], f, cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)))
    for n in names:
        _same(mixed[n], alone[n])
        assert states[n].stats.detections == 1 and not states[n].lost


def test_faces_in_threads(front_end, videos) -> None:
    t = front_end.tracker
    names = list(videos)
    alone = {n: _run(t, videos[n])[1] for n in names}
    got: dict[str, list] = {}

    def work(n: str) -> None:
        got[n] = _run(t, videos[n])[1]

    threads = [threading.Thread(target=work, args=(n,)) for n in names]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for n in names:
        _same(got[n], alone[n])


def test_caller_detections(front_end, videos) -> None:
    """Detections given by the caller: a callable is called only when the rules ask
    (the first frame here); one box initialises the face; without a face the track is
    lost at once on the fast path."""
    t = front_end.tracker
    frames = videos["default.wmv"]
    calls = []

    def detect_first():
        calls.append(len(calls))
        return t.detector.detect(frames[0])

    state, res = _run(t, frames, detect_first)
    assert calls == [0]
    _same(res, _run(t, frames)[1])
    # one given box (the widest detection) initialises a new face
    dets = t.detector.detect(frames[0])
    one = dets.select(dets.widest())
    s2 = t.new_state()
    first = t.step(s2, frames[0], cv2.cvtColor(frames[0], cv2.COLOR_BGR2GRAY), one)
    assert first.success and s2.stats.detections == 1
    np.testing.assert_array_equal(first.landmarks, res[0].landmarks)
    # start(): the same from a tracked state, which forgets its face first
    again = t.start(s2, frames[0], cv2.cvtColor(frames[0], cv2.COLOR_BGR2GRAY), dets,
                    dets.widest())
    np.testing.assert_array_equal(again.landmarks, res[0].landmarks)
    assert s2.stats.detections == 2 and not s2.lost
    # no face: lost, and the caller's empty detections are used
    black = np.zeros_like(frames[0])
    lost = t.step(state, black, cv2.cvtColor(black, cv2.COLOR_BGR2GRAY), FaceDetections.empty())
    assert not lost.success and state.lost and state.stats.lost == 1
