"""The fast front end tracked with OpenFace's CLNF (``refine="clnf"``)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import SAMPLES, load_reference
from pyfaceau.errors import InputError
from pyfaceau.evaluation import au_agreement, common_success, landmark_distances
from pyfaceau.output.table import AU_INTENSITY_NAMES
from pyfaceau.pipeline.backend import AUBackend
from pyfaceau.pipeline.fast import FastLandmarkFrontEnd
from pyfaceau.pipeline.session import process

#: Bounds against OpenFace 2.2 per video: landmark mean and p95 (px), mean r over the 17
#: intensities, min r over the AUs whose reference varies (std > 0.05), median pose
#: rotation error (rad). Measured (bench/accuracy.py --mode fast --refine clnf):
#: changeLighting (88 frames, a large face: OpenFace also ran its part models, which this
#: mode skips) 0.81 / 0.96 px, mean r 0.953, min r 0.726 (AU20), 0.017 rad;
#: al_pacino (324 frames, small face: no part models in OpenFace either) 0.040 / 0.042 px,
#: mean r 0.997, min r 0.993, 0.0003 rad.
BOUNDS = {
    "changeLighting": ("changeLighting.wmv", 1.0, 1.2, 0.93, 0.65, 0.025),
    "0188_03_021_al_pacino": ("0188_03_021_al_pacino.avi", 0.1, 0.1, 0.99, 0.98, 0.002),
}


@pytest.fixture(scope="module")
def backend() -> AUBackend:
    return AUBackend()


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
def test_near_openface_landmarks_and_aus(stem, front_end, backend):
    video, max_mean, max_p95, min_mean_r, min_r, max_rot = BOUNDS[stem]
    ref = load_reference(stem)
    before = dict(front_end.stats)
    ours = process(SAMPLES / video, front_end, backend=backend)
    assert len(ours) == len(ref) and ours["success"].all()
    # tracked by CLNF after the first frame: one detection, no lost track
    assert front_end.stats["detections"] - before["detections"] == 1
    assert front_end.stats["lost"] == before["lost"]
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
    with pytest.raises(InputError, match="refine='clnf'"):
        FastLandmarkFrontEnd(front_end.detector, front_end.landmarker, True,
                             clnf_hierarchical=True)
