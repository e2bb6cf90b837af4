"""Several faces in a video (``max_faces``): each person against OpenFace's single-face run
of a video that shows only them.

The videos are composed here from the samples (two interview clips side by side, written
losslessly; in ``pair_gap`` the right clip is black for 40 frames); the references in
``tests/data/multiface/`` are OpenFace 2.2's FeatureExtraction on each tile cut out of the
composed video (``tests/data/multiface/README.md``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import pyfaceau
from pyfaceau.detection.types import FaceDetections
from pyfaceau.identity import SAME_PERSON_DISTANCE, Gallery, colour_descriptor, lbp_descriptor
from pyfaceau.pipeline import faces
from pyfaceau.pipeline.faces import FrameDetections, TrackDetections, overlap

from multiface_videos import COMPOSED, compose, cut_tile, make_composed, read_frames

from conftest import REFERENCE_KERNELS, REPO, blas_kernel

DATA = REPO / "tests" / "data" / "multiface"
TILE_WIDTH = 320

#: Acceptance (issue 11), per person against the tile's OpenFace run.
FAITHFUL_AU_R_MIN = 0.97  # every AU whose reference std > 0.05
#: With another BLAS kernel than the references' OpenFace itself moves: its own SkylakeX
#: (AVX-512) run of ``pair``'s left tile has AU05 at r 0.972 against its Haswell
#: reference (0.981-0.984 on the other tiles), pyfaceau's 0.967 (0.977 with Haswell).
#: The issue's bound holds with the references' kernel; with any other, less that spread.
OPENFACE_KERNEL_SPREAD = 0.03
FAITHFUL_AU_R_MEAN = 0.99
FAITHFUL_LANDMARK_MEDIAN_PX = 0.1
SUCCESS_COVERAGE = 0.98
FAST_AU_R_MEAN = 0.95
AU_STD_MIN = 0.05


def _reference(video: str, tile: int) -> pd.DataFrame:
    name = f"{video}_tile{tile}.csv"
    if video == "pair_gap" and tile == 0:  # the same pixels as pair's left tile
        name = "pair_tile0.csv"
    return pd.read_csv(DATA / name)


@pytest.fixture(scope="module")
def composed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("multiface")
    return {name: make_composed(name, folder)[0] for name in COMPOSED}


def _person_tile(rows: pd.DataFrame) -> int:
    ok = rows[rows.success == 1]
    x = ok[[f"x_{i}" for i in range(68)]].to_numpy().mean(axis=1)
    tiles = np.unique((x // TILE_WIDTH).astype(int))
    assert len(tiles) == 1, f"face {rows.face_id.iloc[0]} found in tiles {tiles}"
    return int(tiles[0])


def _agreement(rows: pd.DataFrame, ref: pd.DataFrame, tile: int) -> dict[str, float]:
    m = ref.merge(rows, on="frame", suffixes=("_ref", ""))
    both = m[(m.success_ref == 1) & (m.success == 1)]
    dx = (
        both[[f"x_{i}" for i in range(68)]].to_numpy()
        - tile * TILE_WIDTH
        - both[[f"x_{i}_ref" for i in range(68)]].to_numpy()
    )
    dy = both[[f"y_{i}" for i in range(68)]].to_numpy() - both[
        [f"y_{i}_ref" for i in range(68)]
    ].to_numpy()
    r_strong, r_all = [], []
    for c in [c for c in ref.columns if c.endswith("_r")]:
        a, b = both[f"{c}_ref"].to_numpy(), both[c].to_numpy()
        if a.std() > 0 and b.std() > 0:
            r = float(np.corrcoef(a, b)[0, 1])
            r_all.append(r)
            if a.std() > AU_STD_MIN:
                r_strong.append(r)
    return {
        "coverage": len(both) / int((ref.success == 1).sum()),
        "lm_median": float(np.median(np.hypot(dx, dy).mean(axis=1))),
        "r_min": min(r_strong),
        "r_mean": float(np.mean(r_all)),
    }


def _check_people(df: pd.DataFrame, video: str) -> dict[int, dict[str, float]]:
    """Two people, one per tile, ids 0 and 1; each person's rows a regular series."""
    assert sorted(df.face_id.unique()) == [0, 1]
    assert df.equals(df.sort_values(["frame", "face_id"], kind="stable").reset_index(drop=True))
    out = {}
    for face_id, rows in df.groupby("face_id"):
        frames = rows.frame.to_numpy()
        np.testing.assert_array_equal(frames, np.arange(frames[0], frames[-1] + 1))
        tile = _person_tile(rows)
        out[tile] = _agreement(rows, _reference(video, tile), tile)
    assert sorted(out) == [0, 1]
    return out


def test_composed_videos_are_lossless(composed, tmp_path):
    frames, width = compose(*COMPOSED["pair_gap"])
    back = read_frames(composed["pair_gap"], 10**6)
    assert len(back) == len(frames) == 150
    assert all(np.array_equal(a, b) for a, b in zip(back, frames))
    tile = read_frames(cut_tile(composed["pair_gap"], 1, width, tmp_path / "t.avi"), 10**6)
    assert all(np.array_equal(a, b[:, width:]) for a, b in zip(tile, frames))
    assert not tile[70].any() and tile[40].any()  # black in the gap only


@pytest.mark.slow
@pytest.mark.parametrize("video", ["pair", "pair_gap"])
def test_faithful_people_match_their_single_face_runs(composed, video):
    with pyfaceau.Pipeline(pyfaceau.Options.faithful(max_faces=2)) as pipe:
        df = pipe.process(composed[video])
    r_min = FAITHFUL_AU_R_MIN if blas_kernel() in REFERENCE_KERNELS else (
        FAITHFUL_AU_R_MIN - OPENFACE_KERNEL_SPREAD)
    for tile, a in _check_people(df, video).items():
        assert a["coverage"] >= SUCCESS_COVERAGE, (tile, a)
        assert a["lm_median"] <= FAITHFUL_LANDMARK_MEDIAN_PX, (tile, a)
        assert a["r_min"] >= r_min, (tile, a, blas_kernel())
        assert a["r_mean"] >= FAITHFUL_AU_R_MEAN, (tile, a)


@pytest.mark.slow
@pytest.mark.parametrize("video", ["pair", "pair_gap"])
def test_fast_people_match_their_single_face_runs(composed, video):
    with pyfaceau.Pipeline(pyfaceau.Options.fast(max_faces=2)) as pipe:
        df = pipe.process(composed[video])
    for tile, a in _check_people(df, video).items():
        assert a["coverage"] >= SUCCESS_COVERAGE, (tile, a)
        assert a["r_mean"] >= FAST_AU_R_MEAN, (tile, a)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["faithful", "fast"])
def test_face_lost_for_longer_is_found_again_by_appearance(composed, monkeypatch, mode):
    """The right person's tracker is dropped 10 frames into the 40-frame gap; when the
    face comes back, only its appearance can give it its id back."""
    monkeypatch.setattr(faces, "LOST_AFTER", 10)
    options = pyfaceau.Options.faithful() if mode == "faithful" else pyfaceau.Options.fast()
    with pyfaceau.Pipeline(options, max_faces=2) as pipe:
        df = pipe.process(composed["pair_gap"])
    assert sorted(df.face_id.unique()) == [0, 1]
    right = df[df.face_id == [f for f, r in df.groupby("face_id") if _person_tile(r) == 1][0]]
    ok = right[right.success == 1].frame.to_numpy()
    assert ok.min() < 56 and ok.max() > 96  # before and after the gap (1-based frames)
    assert not right[(right.frame > 60) & (right.frame <= 95)].success.any()


def test_max_faces_one_face_video_gives_one_person():
    """A single-face video: one person, id 0, every frame."""
    path = REPO.parent / "shared" / "samples" / "image_sequence"
    with pyfaceau.Pipeline(pyfaceau.Options.fast(max_faces=3)) as pipe:
        df = pipe.process(path)
    assert df.face_id.unique().tolist() == [0]
    assert df.success.mean() > 0.9


def test_a_failing_tracker_does_not_keep_its_slot_from_a_face_found_elsewhere(tmp_path):
    """``max_faces`` equal to the number of people: a person whose tracker fails and who
    shows up elsewhere is measured there as with a free slot (frames 441-500 of
    ``multi_face.avi``: one person's tracker failed from frame 5 and kept the third slot,
    so 119 face-frames were found against 178 with ``max_faces=4``)."""
    import cv2

    clip = tmp_path / "mf.avi"
    cap = cv2.VideoCapture(str(REPO.parent / "shared" / "samples" / "multi_face.avi"))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 440)
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"FFV1"), 30, (640, 480))
    for _ in range(60):
        ok, image = cap.read()
        writer.write(image)
    writer.release()
    found = {}
    for n in (3, 4):
        with pyfaceau.Pipeline(max_faces=n) as pipe:
            df = pipe.process(clip)
        found[n] = df.groupby("face_id").success.sum().to_dict()
    assert found[3] == found[4] and sum(found[3].values()) >= 170, found


def test_csv_landmarks_refuse_several_faces(tmp_path):
    with pytest.raises(pyfaceau.errors.InputError, match="max_faces"):
        pyfaceau.Pipeline(pyfaceau.Options.openface_csv(tmp_path / "x.csv", max_faces=2))


# -- the parts ---------------------------------------------------------------------------------
class _Detector:
    def __init__(self, boxes):
        self.calls = 0
        self.boxes = np.asarray(boxes, float)

    def detect(self, image):
        self.calls += 1
        return FaceDetections(self.boxes, np.ones(len(self.boxes)))

    def detect_region(self, image, box, size=160):
        return "region"


def test_track_view_hands_out_only_its_own_unclaimed_faces():
    det = _Detector([[0, 0, 100, 100], [200, 0, 300, 100], [10, 10, 90, 90]])
    frame = FrameDetections(det)
    frame.begin(np.zeros((10, 10, 3), np.uint8))
    a = TrackDetections(frame, np.array([5, 5, 95, 95.0]))
    b = TrackDetections(frame, np.array([5, 5, 95, 95.0]))
    np.testing.assert_array_equal(a.detect(None).boxes, det.boxes[[0, 2]])
    assert len(b.detect(None)) == 0  # claimed by a
    assert det.calls == 1  # the detector ran once for the frame
    assert a.detect_region(None, None) == "region"  # other calls go to the detector
    frame.begin(np.zeros((10, 10, 3), np.uint8))
    assert len(b.detect(None)) == 2 and det.calls == 2


def test_overlap_is_over_the_smaller_box():
    assert overlap(np.array([0, 0, 10, 10.0]), np.array([0, 0, 5, 5.0])) == 1.0
    assert overlap(np.array([0, 0, 10, 10.0]), np.array([5, 0, 15, 10.0])) == 0.5
    assert overlap(np.array([0, 0, 10, 10.0]), np.array([20, 0, 30, 10.0])) == 0.0


def test_descriptor_tells_people_apart(composed):
    """OpenFace's aligned faces of one person stay nearer each other than the
    threshold, another person's are farther (faces aligned by pyfaceau's back end)."""
    backend = pyfaceau.pipeline.backend.AUBackend(dynamic=False)
    from pyfaceau.identity import face_descriptor

    frames, _ = compose(*COMPOSED["pair"])
    refs = [_reference("pair", t) for t in (0, 1)]
    gallery, probes = [Gallery(), Gallery()], [[], []]
    for t, ref in enumerate(refs):
        lm = np.stack([ref[[f"x_{i}" for i in range(68)]], ref[[f"y_{i}" for i in range(68)]]], -1)
        lm[:, :, 0] += t * TILE_WIDTH
        for k in range(0, 150, 10):
            d = face_descriptor(frames[k], lm[k], backend.pdm, backend.triangulation)
            (gallery[t].add if k < 60 else probes[t].append)(d)
    for t in (0, 1):
        same = [gallery[t].distance(d) for d in probes[t]]
        other = [gallery[1 - t].distance(d) for d in probes[t]]
        assert max(same) < SAME_PERSON_DISTANCE < min(other), (t, same, other)
    assert lbp_descriptor(np.zeros((112, 112), np.uint8)).sum() == 0
    assert colour_descriptor(np.zeros((112, 112, 3), np.uint8)).sum() == 0


class _ScriptedTracker:
    """A landmark tracker that fits a grid into the first box its detector gives, then
    keeps it unless told to move (``jump``)."""

    def __init__(self, detector):
        self.detector = detector
        self.landmarks = None
        self.confidence = 0.9

    def track(self, image):
        if self.landmarks is None:
            dets = self.detector.detect(image)
            if len(dets) == 0:
                return faces.LandmarkResult.failed()
            x1, y1, x2, y2 = dets.boxes[0]
            gx, gy = np.meshgrid(np.linspace(x1, x2, 17), np.linspace(y1, y2, 4))
            self.landmarks = np.stack([gx.ravel(), gy.ravel()], -1)
        return faces.LandmarkResult(True, self.confidence, self.landmarks.copy())


class _TrackStub:  # FaceTrack without an AU session
    def __init__(self, face_id, tracker):
        self.face_id, self.tracker = face_id, tracker

    def track(self, image):
        return self.tracker.track(image)


def test_collapsed_tracks_are_merged_and_new_faces_found_on_the_cadence(monkeypatch):
    # the descriptor of a face: where it is (two people far apart)
    monkeypatch.setattr(
        faces, "face_descriptor", lambda image, lm, pdm, tri: np.array([lm[:, 0].mean() / 1000.0, 0.0])
    )
    boxes = [[0, 0, 100, 100], [200, 0, 300, 100]]
    det = _Detector(boxes[:1])
    people = []

    def new_track(tracker):
        people.append(_TrackStub(len(people), tracker))
        return people[-1]

    multi = faces.MultiFaceTracker(
        3, det, new_tracker=_ScriptedTracker, new_track=new_track, pdm=None, triangulation=None
    )
    image = np.zeros((100, 300, 3), np.uint8)
    assert [t.face_id for t, r in multi.step(0, image)] == [0]
    det.boxes = np.asarray(boxes, float)  # a second face appears in frame 1 ...
    for index in (1, 2, 3):
        assert len(multi.step(index, image)) == 1  # ... not scanned for before frame 4
    out = multi.step(4, image)
    assert [(t.face_id, r.success) for t, r in out] == [(0, True), (1, True)]
    # face 1's tracker collapses onto face 0's face with a lower confidence: merged
    people[1].tracker.landmarks = people[0].tracker.landmarks.copy()
    people[1].tracker.confidence = 0.8
    out = multi.step(5, image)
    assert [(t.face_id, r.success) for t, r in out] == [(0, True), (1, False)]
    assert multi.stats["merged"] == 1 and people[1].tracker is None
    # its face is still there: found again on the next scan, by appearance, same id
    for index in (6, 7):
        assert [r.success for t, r in multi.step(index, image)] == [True, False]
    out = multi.step(8, image)
    assert [(t.face_id, r.success) for t, r in out] == [(0, True), (1, True)]
    assert multi.stats["found_again"] == 1 and multi.stats["new_people"] == 2


def test_cli_split_writes_one_csv_per_person(tmp_path):
    from click.testing import CliRunner

    from multiface_videos import write_lossless
    from pyfaceau.cli import main

    frames, _ = compose(COMPOSED["pair"][0], 30)
    video = tmp_path / "two.avi"
    write_lossless(video, frames)
    out = tmp_path / "two.csv"
    for stale in ("two_face1.csv", "two_face2.csv"):  # an earlier run's, with 3 people
        (tmp_path / stale).write_text("frame\n1\n")
    args = [str(video), "-o", str(out), "--fast", "--max-faces", "2", "--split", "--no-progress"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "2 people in 30 frames" in result.output
    assert "removed 1 per-person CSV of an earlier run (two_face2.csv)" in result.output
    assert not out.exists() and not (tmp_path / "two_face2.csv").exists()
    for face_id in (0, 1):
        df = pd.read_csv(tmp_path / f"two_face{face_id}.csv", skipinitialspace=True)
        assert df.face_id.unique().tolist() == [face_id]
        assert df.frame.tolist() == list(range(1, 31)) and df.success.all()
    # the right person leaves for good after frame 30: their CSV rows end there, and so
    # do their aligned faces and HOG records (one per CSV row, in the CSV's order)
    frames, _ = compose(COMPOSED["pair"][0], 40, ((1, 30, 40),))
    write_lossless(video, frames)
    hog, aligned = tmp_path / "two.hog", tmp_path / "aligned"
    result = CliRunner().invoke(main, [str(video), "-o", str(out), "--fast", "--max-faces", "2",
                                       "--hog", str(hog), "--aligned", str(aligned),
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out, skipinitialspace=True)
    assert len(df[df.face_id == 1]) == 30 and len(df[df.face_id == 0]) == 40
    from pyfaceau.output.aligned import aligned_face_name
    from pyfaceau.output.hog_file import read_hog_file

    assert read_hog_file(hog).success.tolist() == (df.success == 1).tolist()
    assert sorted(p.name for p in aligned.iterdir()) == sorted(
        aligned_face_name(f, i) for f, i in zip(df.frame, df.face_id))
    # an input named as one of -o's per-person CSVs is refused before any work
    landmarks = tmp_path / "two_face0.csv"
    refused = CliRunner().invoke(main, [str(video), "-o", str(out), "--split",
                                        "--landmarks-csv", str(landmarks)])
    assert refused.exit_code != 0 and "per-person CSV of -o" in refused.output
    assert landmarks.read_bytes() != b""


def test_cli_stream_measures_several_faces(tmp_path):
    """``pyfaceau stream --max-faces 2``: both people of a live clip in each frame it
    measured, each with its own face_id, and the values the API's stream gives when fed
    the same frames (the live source skips frames while one is processed)."""
    import json
    import subprocess
    import sys

    from multiface_videos import write_lossless

    frames, _ = compose(COMPOSED["pair"][0], 30)
    video = tmp_path / "two.avi"
    write_lossless(video, frames)
    out = tmp_path / "two.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "pyfaceau.cli", "stream", str(video), "--fast",
         "--max-faces", "2", "-o", str(out)],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    by_frame: dict[int, list[dict]] = {}
    for r in rows:
        by_frame.setdefault(r["frame"], []).append(r)
    assert by_frame and all(sorted(r["face_id"] for r in rs) == [0, 1] for rs in by_frame.values())
    assert all(r["success"] == 1 for r in rows)
    with pyfaceau.Pipeline(pyfaceau.Options.fast(max_faces=2)) as pipe:
        stream = pipe.open_stream()
        for frame in sorted(by_frame):
            for result in stream.add(frames[frame - 1], (frame - 1) / 30.0, frame_index=frame - 1):
                got = next(r for r in by_frame[frame] if r["face_id"] == result.face_id)
                np.testing.assert_allclose(
                    [got["pose"][f"pose_{k}"] for k in ("Tx", "Ty", "Tz", "Rx", "Ry", "Rz")],
                    result.pose, atol=1e-3,
                )
                assert got["aus"]["AU12_r"] == pytest.approx(result.aus()["AU12_r"], abs=1e-3)
