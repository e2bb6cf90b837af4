"""Live streams: ``Pipeline.live`` and ``pyfaceau stream`` (JSON lines as frames are done)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO, SAMPLES, load_reference
from pyfaceau import Options, Pipeline
from pyfaceau.errors import InputError
from pyfaceau.pipeline.live import open_live

VIDEO = SAMPLES / "changeLighting.wmv"  # 88 frames at 15 frames/s


def test_cli_stream_writes_json_lines_of_openface_poses(tmp_path):
    out = tmp_path / "live.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "pyfaceau.cli", "stream", str(VIDEO), "--fast", "-o", str(out)],
        capture_output=True, text=True, timeout=300, cwd=REPO, env=os.environ.copy(),
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    m = re.search(r"(\d+) results, (\d+) frames, (\d+) skipped", proc.stderr)
    assert m, proc.stderr
    results, delivered, skipped = map(int, m.groups())
    assert results == len(rows) and delivered == 88 and results + skipped == delivered
    frames = [r["frame"] for r in rows]
    assert frames == sorted(frames) and len(set(frames)) == len(frames)
    assert results >= 1
    ref = load_reference("changeLighting").set_index("frame")
    # --fast's pose against OpenFace's on this clip: translation within 0.8 mm (x, y) and
    # 4.7 mm (z), rotation within 0.03 rad, on every frame (measured)
    limits = {"pose_Tx": 2.0, "pose_Ty": 2.0, "pose_Tz": 10.0,
              "pose_Rx": 0.06, "pose_Ry": 0.06, "pose_Rz": 0.06}
    for r in rows:
        assert set(r) == {"frame", "timestamp", "face_id", "success", "confidence", "pose", "gaze", "aus"}
        want = ref.loc[r["frame"]]
        assert abs(r["timestamp"] - want["timestamp"]) < 1e-3
        assert r["success"] == 1 and len(r["aus"]) == 35
        for k, limit in limits.items():
            assert abs(r["pose"][k] - want[k]) < limit, (r["frame"], k, r["pose"][k], want[k])


def test_live_source_skips_what_it_cannot_deliver_in_time():
    """A consumer slower than the source gets the newest frame; the rest are counted."""
    import time

    source = open_live(VIDEO)
    got = []
    for frame in source:
        got.append(frame.index)
        time.sleep(0.2)  # three frame periods (the clip plays at 15 frames/s)
    assert source.fps == 15 and got == sorted(got) and source.delivered == 88
    assert source.skipped == 88 - len(got) and source.skipped > 40


def test_live_api_and_bad_source():
    with Pipeline(Options.fast()) as pipe:
        results = pipe.live(VIDEO)
        first = next(iter(results))
        results.close()
        assert first.frame >= 1 and first.au_intensity.shape == (17,)
        with pytest.raises(InputError):
            pipe.live(SAMPLES / "no_such.avi")


def test_a_camera_that_cannot_be_opened_is_one_clear_error(capfd):
    """No camera 99 here: one InputError, and nothing from OpenCV on stderr (its backends'
    warnings are silenced while the source is opened, and its log level restored)."""
    import cv2

    from pyfaceau.pipeline.live import open_live

    level = cv2.utils.logging.getLogLevel()
    with pytest.raises(InputError, match="camera 99: cannot be opened"):
        open_live(99)
    assert capfd.readouterr().err == ""
    assert cv2.utils.logging.getLogLevel() == level
