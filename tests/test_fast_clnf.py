"""The fast front end tracked with OpenFace's CLNF (``refine="clnf"``)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import SAMPLES, load_reference
from pyfaceau.errors import InputError
from pyfaceau.evaluation import au_agreement, common_success, landmark_distances
from pyfaceau.output.table import AU_INTENSITY_NAMES, FrameTable
from pyfaceau import Options, Pipeline
from pyfaceau.pipeline.fast import FastLandmarkFrontEnd
from pyfaceau.pipeline.sources import open_source

#: Bounds against OpenFace 2.2 per video: landmark mean and p95 (px), mean r over the 17
#: intensities, min r over the AUs whose reference varies (std > 0.05), median pose
#: rotation error (rad). Measured (bench/accuracy.py --mode fast):
#: changeLighting (88 frames, a large face: OpenFace also ran its part models, which this
#: mode skips) 0.82 / 0.96 px, mean r 0.960, min r 0.787;
#: al_pacino (324 frames, small face: no part models in OpenFace either) 0.042 / 0.052 px,
#: mean r 0.995, min r 0.986.
BOUNDS = {
    "changeLighting": ("changeLighting.wmv", 1.0, 1.2, 0.93, 0.65, 0.025),
    "0188_03_021_al_pacino": ("0188_03_021_al_pacino.avi", 0.1, 0.1, 0.99, 0.975, 0.002),
}


@pytest.fixture(scope="module")
def pipeline():
    with Pipeline(Options.fast()) as pipe:
        yield pipe


def _process_with_stats(pipe: Pipeline, video: str):
    """``pipe.process`` of a video through its session, to read the face track's
    counters too: (table, stats)."""
    source = open_source(SAMPLES / video)
    session = pipe.session(source.kind, source.width, source.height, batched=True)
    session.run(source, threads=pipe.options.cores, total=len(source))
    table = session.finish_table()
    table = table.to_dataframe() if isinstance(table, FrameTable) else table
    (track,) = session.tracks
    return table, track.tracker.stats


@pytest.fixture(scope="module")
def front_end() -> FastLandmarkFrontEnd:
    return FastLandmarkFrontEnd(refine="clnf")


def _frames(name: str, n: int):
    cap = cv2.VideoCapture(str(SAMPLES / name))
    for _ in range(n):
        ok, frame = cap.read()
        assert ok
        yield frame
    cap.release()


@pytest.mark.parametrize("stem", sorted(BOUNDS))
def test_near_openface_landmarks_and_aus(stem, pipeline):
    video, max_mean, max_p95, min_mean_r, min_r, max_rot = BOUNDS[stem]
    ref = load_reference(stem)
    ours, stats = _process_with_stats(pipeline, video)
    assert len(ours) == len(ref) and ours["success"].all()
    # tracked by CLNF after the first frame: one detection, no lost track
    assert stats["detections"] == 1
    assert stats["lost"] == 0
    assert stats["frames"] == len(ref)
    both = common_success(ours, ref)
    d = landmark_distances(ours, ref, both)
    assert d.mean() <= max_mean and np.percentile(d, 95) <= max_p95, (
        d.mean(), np.percentile(d, 95))
    table = au_agreement(ours, ref, both)
    r = table.loc[AU_INTENSITY_NAMES, "r"]
    varying = table.loc[AU_INTENSITY_NAMES, "ref_std"] > 0.05
    assert r.mean() >= min_mean_r, r.round(3).to_dict()
    assert r[varying].min() >= min_r, r.round(3).to_dict()
    for col in ["pose_Rx", "pose_Ry", "pose_Rz"]:
        assert np.median(np.abs(ours.loc[both, col] - ref.loc[both, col])) <= max_rot


def test_results_carry_the_fit_parameters(front_end):
    front_end.reset()
    pdm = front_end.clnf.pdm
    for frame in _frames("default.wmv", 3):
        res = front_end.track(frame)
        assert res.success and res.params_global.shape == (6,) and res.params_local.shape == (34,)
        # without the part models the landmarks are the PDM shape of the parameters
        np.testing.assert_allclose(res.landmarks, pdm.shape_2d(res.params_global, res.params_local),
                                   atol=0.01)


def test_validator_checks_the_track_and_gives_the_confidence(front_end):
    """Every 3rd tracked frame is validated (OpenFace's validator), every 15th also
    verified by the region detector; the validator's certainty is the confidence."""
    from pyfaceau.pipeline.fast import CLNF_VALIDATE_INTERVAL, CLNF_VERIFY_INTERVAL

    assert (CLNF_VALIDATE_INTERVAL, CLNF_VERIFY_INTERVAL) == (3, 15)
    front_end.reset()
    calls = []
    check = front_end.validator.check

    def counting_check(*args):
        calls.append(check(*args))
        return calls[-1]

    front_end.validator.check = counting_check
    try:
        before = front_end.stats["verifications"]
        results = [front_end.track(frame) for frame in _frames("default.wmv", 31)]
    finally:
        del front_end.validator.check
    assert all(r.success for r in results)
    assert front_end.stats["verifications"] - before == 2  # tracked frames 15 and 30
    assert len(calls) == 1 + 10  # the detection, then every 3rd of 30 tracked frames
    assert all(0.725 < c <= 1.0 for c in calls)
    assert results[-1].confidence == pytest.approx(calls[-1])


def test_no_face_fails_and_recovers(front_end):
    front_end.reset()
    black = np.zeros((480, 640, 3), np.uint8)
    res = front_end.track(black)
    assert not res.success and res.confidence == 0.0 and res.params_global is None
    frames = list(_frames("default.wmv", 3))
    assert front_end.track(frames[0]).success
    assert front_end.track(frames[1]).success
    lost = front_end.stats["lost"]
    # the face vanishes while tracked: failed at once, recovered on the next face
    assert not front_end.track(black).success
    assert front_end.stats["lost"] == lost + 1
    assert front_end.track(frames[2]).success


def test_bad_refine_argument():
    with pytest.raises(InputError, match="clnf"):
        FastLandmarkFrontEnd(refine="svm")


def test_clnf_options_need_clnf_mode(front_end):
    for option in ({"clnf_hierarchical": True}, {"validate_interval": 1}, {"clnf_iterations": 5}):
        with pytest.raises(InputError, match="refine='clnf'"):
            FastLandmarkFrontEnd(front_end.detector, front_end.landmarker, True, **option)
    with pytest.raises(InputError, match="clnf_iterations"):
        FastLandmarkFrontEnd(front_end.detector, front_end.landmarker, "clnf", clnf_iterations=0)


def test_part_models_bring_openface_gaze_and_large_faces() -> None:
    """``--fast --refine clnf-parts`` (``Options.fast("clnf-parts")``): OpenFace's part
    models where OpenFace runs them. OpenFace's 714 columns with its gaze and eye
    landmarks, and a large face (changeLighting: 0.82 px and mean r 0.960 without the
    parts, see BOUNDS) as close to OpenFace's as a small one. Measured: image_sequence gaze
    0.05 deg (median); changeLighting landmarks 0.070 / 0.115 px (mean / p95), mean r
    0.9915, min r 0.944, gaze angles 0.03 deg (median). Without the parts there are no
    gaze columns."""
    from pyfaceau import Options, Pipeline

    with Pipeline(Options.fast("clnf-parts")) as parts, Pipeline(Options.fast()) as plain:
        ref = load_reference("image_sequence")
        ours = parts.process(SAMPLES / "image_sequence")
        assert list(ours.columns) == list(ref.columns)
        both = common_success(ours, ref)
        cols = [f"gaze_{e}_{a}" for e in (0, 1) for a in "xyz"]
        d = np.abs(ours.loc[both, cols].to_numpy() - ref.loc[both, cols].to_numpy())
        assert np.median(d) <= 0.002 and d.max() <= 0.02, (np.median(d), d.max())
        assert "gaze_0_x" not in plain.process(SAMPLES / "image_sequence").columns

        ref = load_reference("changeLighting")
        ours = parts.process(SAMPLES / "changeLighting.wmv")
        assert list(ours.columns) == list(ref.columns) and ours["success"].all()
        both = common_success(ours, ref)
        d = landmark_distances(ours, ref, both)
        assert d.mean() <= 0.1 and np.percentile(d, 95) <= 0.15, (d.mean(), np.percentile(d, 95))
        table = au_agreement(ours, ref, both)
        r = table.loc[AU_INTENSITY_NAMES, "r"]
        varying = table.loc[AU_INTENSITY_NAMES, "ref_std"] > 0.05
        assert r.mean() >= 0.985 and r[varying].min() >= 0.92, r.round(3).to_dict()
        angles = ["gaze_angle_x", "gaze_angle_y"]
        g = np.degrees(np.abs(ours.loc[both, angles].to_numpy() - ref.loc[both, angles].to_numpy()))
        assert np.median(g) <= 0.1, np.median(g)
