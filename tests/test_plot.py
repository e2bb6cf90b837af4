"""``pyfaceau plot``: a PNG and a self-contained HTML page from a CSV.

The HTML is opened in a real headless browser (Debian's ``chromium``) and must render
plotly's figure with the AU lanes; the test is skipped, saying so, only when no browser
is installed.
"""

from __future__ import annotations

import shutil
import subprocess

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import REFERENCE
from pyfaceau.cli import main
from pyfaceau.errors import InputError
from pyfaceau.output.plot import load_tracks, plot_csv

DEFAULT_CSV = REFERENCE / "default.csv"
MULTI_CSV = REFERENCE / "multi" / "multi_face.csv"
#: Browser names Debian and others use.
_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: Presence shading (light orange, drawn at 55 % over white) and intensity line (dark blue).
_PRESENCE_BGR = np.array([180, 216, 255])
_INTENSITY_BGR = np.array([192, 101, 21])


def _browser() -> str | None:
    return next((b for b in map(shutil.which, _BROWSERS) if b), None)


def test_tracks_from_a_video_csv():
    (track,) = load_tracks(DEFAULT_CSV)
    assert track.face_id == 0 and track.time_label == "time (s)"
    assert len(track.time) == 288 and len(track.au_names) == 18  # AU28: presence only
    assert np.isnan(track.intensity[track.au_names.index("AU28")]).all()
    assert track.pose_deg.shape == (3, 288) and track.gaze_deg.shape == (2, 288)
    # the values are the CSV's, pose in degrees
    assert track.intensity[track.au_names.index("AU12")].max() == pytest.approx(2.73)
    assert np.nanmax(np.abs(track.pose_deg)) < 45


def test_several_faces_give_a_panel_each_with_gaps_where_a_face_is_missing():
    tracks = load_tracks(MULTI_CSV)
    assert [t.face_id for t in tracks] == [0, 1, 2, 3]
    late = tracks[3]  # face 3 appears late and is lost now and then
    assert np.isnan(late.intensity).any()
    steps = np.diff(late.time)
    assert np.allclose(steps, steps[0])  # one regular axis, gaps as NaN


def test_gaps_only_where_a_frame_has_no_face():
    """OpenFace prints timestamps with 3 decimals (0.033 at 30 frames/s): the axis follows
    the frame numbers, so a video whose every frame has a face has no gap (the step taken
    from the rounded timestamps made one about every 100 frames)."""
    import pandas as pd

    df = pd.read_csv(REFERENCE / "2015-10-15-15-14.csv", skipinitialspace=True)
    assert (df["success"] == 1).all() and len(df) == 842
    (track,) = load_tracks(df)
    assert len(track.time) == 842 and not np.isnan(track.intensity[0]).any()
    assert track.time[0] == 0.0 and track.time[-1] == pytest.approx(df["timestamp"].iloc[-1])
    late = load_tracks(MULTI_CSV)[3]
    rows = pd.read_csv(MULTI_CSV, skipinitialspace=True).query("face_id == 3")
    assert len(late.time) == rows["frame"].max() - rows["frame"].min() + 1
    gaps = np.isnan(late.intensity).all(axis=0).sum()
    assert gaps == len(late.time) - int((rows["success"] == 1).sum())


def test_a_face_landmark_img_csv_has_a_panel_per_face(tmp_path):
    """FaceLandmarkImg's layout (``--openface-img``: no frame, no timestamp, a ``face``
    column): one panel per face, a one-slot axis each."""
    ref = REFERENCE / "images" / "24795717_1.csv"
    tracks = load_tracks(ref)
    assert [t.face_id for t in tracks] == [0, 1, 2]
    assert all(t.time_label == "row" and len(t.time) == 1 for t in tracks)
    r = CliRunner().invoke(main, ["plot", str(ref), "-o", str(tmp_path / "x.png")])
    assert r.exit_code == 0, r.output


def test_rows_whose_timestamp_is_not_a_number(tmp_path):
    """A NaN or infinite timestamp: the row keeps its frame's place (its time
    interpolated); without frame numbers, the rows' order is the axis."""
    import pandas as pd

    df = pd.read_csv(DEFAULT_CSV, skipinitialspace=True)
    df.loc[3, "timestamp"], df.loc[5, "timestamp"] = np.nan, np.inf
    (track,) = load_tracks(df)
    assert track.time_label == "time (s)" and np.isfinite(track.time).all()
    assert track.time[3] == pytest.approx((df["timestamp"][2] + df["timestamp"][4]) / 2, abs=1e-3)
    (by_row,) = load_tracks(df.drop(columns="frame"))
    assert by_row.time_label == "row" and len(by_row.time) == 288
    huge = df.astype({"frame": float})
    huge.loc[5, "frame"] = 1e300  # not a frame count: the timestamps' axis instead
    (track,) = load_tracks(huge)
    assert len(track.time) == 288 and np.isfinite(track.time).all()
    df.to_csv(tmp_path / "nan.csv", index=False)
    r = CliRunner().invoke(main, ["plot", str(tmp_path / "nan.csv"), "-o", str(tmp_path / "x.png")])
    assert r.exit_code == 0, r.output


def test_png_is_written_and_shows_lanes_and_presence(tmp_path):
    out = plot_csv(DEFAULT_CSV, tmp_path / "default.png")
    img = cv2.imread(str(out))
    assert img is not None and img.shape[1] >= 1200 and img.shape[0] >= 800
    orange = (np.abs(img.astype(int) - _PRESENCE_BGR).max(axis=2) < 30).sum()
    blue = (np.abs(img.astype(int) - _INTENSITY_BGR).max(axis=2) < 40).sum()
    assert orange > 20_000 and blue > 2_000


def test_html_is_self_contained_and_renders_in_a_browser(tmp_path):
    out = plot_csv(DEFAULT_CSV, tmp_path / "default.html")
    html = out.read_text(encoding="utf-8")
    assert "<script src=\"http" not in html and "Plotly.newPlot" in html
    browser = _browser()
    if browser is None:
        pytest.skip("no headless browser installed (apt-get install chromium)")
    run = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--virtual-time-budget=10000", "--dump-dom", out.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr[-500:]
    dom = run.stdout
    # plotly drew its SVG and the lane labels: the page's script ran offline
    assert dom.count("main-svg") >= 2
    assert "AU12 lip corner puller" in dom and "head rotation" in dom


def test_cli_plot(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(main, ["plot", str(DEFAULT_CSV), "-o", str(tmp_path / "p.png")])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "p.png").stat().st_size > 10_000
    bad = runner.invoke(main, ["plot", str(DEFAULT_CSV), "-o", str(tmp_path / "p.pdf")])
    assert bad.exit_code == 2 and ".png or .html" in bad.output
    not_au = tmp_path / "x.csv"
    not_au.write_text("frame,success\n1,1\n")
    bad = runner.invoke(main, ["plot", str(not_au), "-o", str(tmp_path / "x.png")])
    assert bad.exit_code == 2 and "no AU columns" in bad.output
    with pytest.raises(InputError, match="cannot read"):
        load_tracks(tmp_path / "missing.csv")
