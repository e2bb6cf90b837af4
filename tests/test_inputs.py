"""Bad and odd inputs: clear one-line errors, odd image types decoded, nothing lost."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from conftest import ONNX_DIR, OPENFACE_DIR, REFERENCE, SAMPLES
from pyfaceau.cli import main
from pyfaceau.errors import IncompleteInputWarning, InputError
from pyfaceau.output.table import FrameTable, write_csv
from pyfaceau.pipeline.csv_landmarks import CsvLandmarkFrontEnd
from pyfaceau.pipeline.sources import open_source, read_image, to_bgr8


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        open_source(tmp_path / "nope.avi")


def test_corrupt_video(tmp_path):
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00AVI garbage" * 100)
    with pytest.raises(InputError, match="cannot be decoded as a video"):
        open_source(bad)


def test_empty_folder_and_undecodable_image(tmp_path):
    with pytest.raises(InputError, match="no images"):
        open_source(tmp_path)
    img = tmp_path / "x.png"
    img.write_bytes(b"not a png")
    with pytest.raises(InputError, match="cannot be decoded as an image"):
        list(open_source(img))
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "1.png"), np.full((20, 30, 3), 100, np.uint8))
    (folder / "2.png").symlink_to(tmp_path / "gone.png")  # a dangling link: said, not dropped
    with pytest.warns(IncompleteInputWarning, match="2.png: cannot be read"):
        frames = list(open_source(folder))
    assert [f.decoded for f in frames] == [True, False]
    empty = tmp_path / "empty.avi"
    cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 48)).release()
    with pytest.raises(InputError, match="a video without frames"):
        open_source(empty)


@pytest.mark.parametrize(
    "image",
    [
        np.full((20, 30), 200, np.uint8),
        np.full((20, 30, 1), 200, np.uint8),
        np.full((20, 30, 4), 200, np.uint8),
        np.full((20, 30, 3), 200 * 257, np.uint16),
        np.full((20, 30, 3), 200 / 255, np.float32),
    ],
    ids=["grey", "grey1", "bgra", "uint16", "float"],
)
def test_odd_image_types_become_bgr8(image):
    out = to_bgr8(image)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    assert abs(int(out[0, 0, 0]) - 200) <= 1


def test_sixteen_bit_png_file(tmp_path):
    p = tmp_path / "img16.png"
    cv2.imwrite(str(p), np.full((16, 16), 40000, np.uint16))
    (frame,) = list(open_source(p))
    assert frame.image.shape == (16, 16, 3) and frame.image[0, 0, 0] == 40000 >> 8


def test_a_photos_exif_orientation_is_applied(tmp_path):
    """A phone's portrait photo is stored sideways with an EXIF orientation; OpenFace's
    ``imread(IMREAD_COLOR)`` turns it upright, and so does pyfaceau."""
    import struct

    upright = cv2.imread(str(SAMPLES / "image_sequence" / "001.jpg"))
    stored = cv2.imencode(".jpg", cv2.rotate(upright, cv2.ROTATE_90_COUNTERCLOCKWISE))[1].tobytes()
    tiff = (b"II*\x00" + struct.pack("<IH", 8, 1)
            + struct.pack("<HHII", 0x0112, 3, 1, 6) + struct.pack("<I", 0))  # rotate 90 cw
    app1 = b"Exif\x00\x00" + tiff
    path = tmp_path / "portrait.jpg"
    path.write_bytes(stored[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + stored[2:])
    sideways = cv2.imdecode(np.frombuffer(stored, np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(read_image(path), cv2.rotate(sideways, cv2.ROTATE_90_CLOCKWISE))


def test_bad_image_types_rejected():
    with pytest.raises(InputError):
        to_bgr8(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(InputError):
        to_bgr8(np.zeros((4, 4), np.int64))
    with pytest.raises(InputError):
        to_bgr8(np.zeros((0, 4), np.uint8))


def test_landmark_csv_errors(tmp_path):
    with pytest.raises(InputError, match="no such landmark CSV"):
        CsvLandmarkFrontEnd(tmp_path / "none.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("frame,success\n1,1\n")
    with pytest.raises(InputError, match="not an OpenFace landmark CSV"):
        CsvLandmarkFrontEnd(bad)
    ref = pd.read_csv(REFERENCE / "image_sequence.csv", skipinitialspace=True)
    text, nan, twice = ref.copy(), ref.copy(), pd.concat([ref, ref.iloc[[3]]])
    text["x_0"] = text["x_0"].astype(object)
    text.loc[3, "x_0"] = "abc"
    nan.loc[4, "y_5"] = np.nan  # as a file cut in the middle of a row reads
    zeros = ref.copy()
    zeros.loc[6, [f"x_{i}" for i in range(68)]] = 0.0  # every landmark "not visible"
    half, nan_success = ref.copy(), ref.copy()
    half["frame"] = half["frame"].astype(float)
    half.loc[2, "frame"] = 3.5
    nan_success["success"] = nan_success["success"].astype(float)
    nan_success.loc[1, "success"] = np.nan
    for table, message in ((text, "x_0 is not a number in row 5"),
                           (nan, "frame 5 has missing or infinite landmarks"),
                           (zeros, "frame 7 has success 1 but fewer than 2 landmarks"),
                           (half, "row 4 has frame 3.5"),
                           (nan_success, "row 3 has success nan"),
                           (twice, "frame 4 appears twice"), (ref.iloc[:0], "no rows")):
        table.to_csv(bad, index=False)
        with pytest.raises(InputError, match=message):
            CsvLandmarkFrontEnd(bad)
    ref.iloc[:19].to_csv(bad, index=False)  # fewer rows than the input has frames: said once
    fe = CsvLandmarkFrontEnd(bad, dequantise=False)
    with pytest.warns(IncompleteInputWarning, match="no row for frame 20") as said:
        results = [fe.track(np.zeros((1, 1, 3), np.uint8)) for _ in range(30)]
    assert len(said) == 1 and [r.success for r in results] == [True] * 19 + [False] * 11
    # rows for frames after the input's last: said at its end (a CSV of another video?)
    fe = CsvLandmarkFrontEnd(REFERENCE / "image_sequence.csv", dequantise=False)
    for _ in range(25):
        fe.track(np.zeros((1, 1, 3), np.uint8))
    with pytest.warns(UserWarning, match=r"5 row\(s\) for frames after the input's last \(25\), from frame 26"):
        fe.end_of_input()


def test_landmark_csv_replays_frames():
    fe = CsvLandmarkFrontEnd(REFERENCE / "multi_face.csv", dequantise=False)
    results = [fe.track(np.zeros((1, 1, 3), np.uint8)) for _ in range(702)]
    assert sum(r.success for r in results) == 700
    assert not results[577].success and results[0].landmarks.shape == (68, 2)
    with pytest.warns(IncompleteInputWarning, match="no row for frame 703"):
        assert not fe.track(np.zeros((1, 1, 3), np.uint8)).success  # past the end


def test_csv_written_atomically(tmp_path):
    out = tmp_path / "out.csv"
    out.write_text("precious\n")
    table = FrameTable(["frame", "success", "AU01_r"])
    table.add({"frame": 1, "success": 1, "AU01_r": 0.123})
    write_csv(table.to_dataframe(), out)
    assert out.read_text() == "frame,success,AU01_r\n1,1,0.12\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]  # no temporary left


def test_cli_one_line_errors(tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, [str(tmp_path / "missing.avi"), "-o", str(tmp_path / "o.csv"),
                             "--landmarks-csv", str(REFERENCE / "default.csv")])
    assert r.exit_code == 2
    assert r.output.strip().count("\n") == 0 and "no such file" in r.output
    r = runner.invoke(main, [str(SAMPLES / "default.wmv"), "--no-refine"])
    assert r.exit_code == 2 and "--no-refine goes with --fast" in r.output


def test_cli_missing_models_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PYFACEAU_MODELS", str(tmp_path))
    monkeypatch.setattr("pyfaceau.modelstore.store.default_data_dir", lambda: tmp_path / "none")
    r = CliRunner().invoke(main, [str(SAMPLES / "changeLighting.wmv"), "-o", str(tmp_path / "o.csv"),
                                  "--landmarks-csv", str(REFERENCE / "changeLighting.csv")])
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "not found" in lines[0] and "pyfaceau models" in lines[0]
    assert not (tmp_path / "o.csv").exists()


def test_console_script_and_help():
    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0 and "models" in r.output
    r = CliRunner().invoke(main, ["--version"])
    assert "pyfaceau" in r.output


def test_cli_unwritable_output_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = CliRunner().invoke(main, [str(SAMPLES / "image_sequence"), "-o", str(blocker / "out.csv"),
                                  "--landmarks-csv", str(REFERENCE / "image_sequence.csv"),
                                  "--no-progress"])
    assert r.exit_code == 2
    assert len(r.output.strip().splitlines()) == 1 and "error" in r.output


def test_cli_refine_option_rules(tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, [str(SAMPLES / "default.wmv"), "--refine", "clnf"])
    assert r.exit_code == 2 and "--refine goes with --fast" in r.output
    r = runner.invoke(main, [str(SAMPLES / "default.wmv"), "--fast", "--refine", "clnf", "--no-refine"])
    assert r.exit_code == 2 and "exclude each other" in r.output


def test_cli_fast_clnf_runs(tmp_path):
    out = tmp_path / "o.csv"
    r = CliRunner().invoke(main, [str(SAMPLES / "image_sequence"), "-o", str(out), "--fast",
                                  "--refine", "clnf", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "30 frames, face found in 30" in r.output


def test_cli_single_image_uses_static_models(tmp_path, monkeypatch):
    import pyfaceau.pipeline.models as session

    seen = {}
    real = session.AUBackend

    def spy(models=None, **kw):
        seen["dynamic"] = kw.get("dynamic")
        return real(models, **kw)

    monkeypatch.setattr(session, "AUBackend", spy)
    out = tmp_path / "img.csv"
    r = CliRunner().invoke(main, [str(SAMPLES / "images" / "Obama.jpg"), "-o", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert seen["dynamic"] is False
    assert "img.csv: 1 face found" in r.output


def test_cli_csv_to_standard_output_and_default_names(tmp_path, monkeypatch):
    """``-o -``: the CSV to standard output (the summary to stderr), quietly cut short by
    a reader that stops (``| head``); without ``-o`` a folder given as ``.`` is named by
    its own name, not ``.csv``, a hidden file."""
    import subprocess
    import sys

    seq = tmp_path / "seq"
    seq.mkdir()
    for p in sorted((SAMPLES / "image_sequence").iterdir())[:3]:
        (seq / p.name).write_bytes(p.read_bytes())
    env = {**os.environ, "PYFACEAU_MODELS": f"{OPENFACE_DIR}{os.pathsep}{ONNX_DIR}"}
    cli = [sys.executable, "-m", "pyfaceau.cli"]
    r = subprocess.run(cli + [str(seq), "-o", "-", "--fast", "--no-progress"],
                       capture_output=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"frame,face_id,timestamp,") and r.stdout.count(b"\n") == 4
    assert r.stderr.decode().startswith("standard output: 3 frames, face found in 3")
    head = subprocess.run(" ".join(cli + [str(seq), "-o", "-", "--fast", "--no-progress"])
                          + " | head -c 10", shell=True, capture_output=True, env=env, timeout=300)
    assert head.stdout == r.stdout[:10] and b"error" not in head.stderr, head.stderr
    monkeypatch.chdir(seq)
    r = CliRunner().invoke(main, [".", "--fast", "--no-progress"])
    assert r.exit_code == 0 and (seq / "seq.csv").is_file() and not (seq / ".csv").exists()


@pytest.mark.parametrize("fast", [False, True])
def test_still_with_several_people_gives_a_row_per_face(tmp_path, fast):
    """A single image is processed as OpenFace's FaceLandmarkImg: every face on its own."""
    out = tmp_path / "group.csv"
    args = [str(SAMPLES / "images" / "24795717_1.jpg"), "-o", str(out), "--no-progress"]
    r = CliRunner().invoke(main, args + (["--fast"] if fast else []))
    assert r.exit_code == 0, r.output
    assert "group.csv: 3 faces found" in r.output
    df = pd.read_csv(out)
    assert df["face_id"].tolist() == [0, 1, 2] and (df["frame"] == 1).all()
    assert df["success"].all()
    centres = np.sort(df[[f"x_{i}" for i in range(68)]].mean(axis=1).to_numpy())
    assert np.all(np.diff(centres) > 100)  # three different faces (~200, 430, 600 px)
    assert (df[[c for c in df.columns if c.endswith("_r")]].to_numpy() >= 0).all()
    if not fast:  # the faithful path has OpenFace's eye models: gaze for every face
        assert (df[["gaze_0_z", "gaze_1_z"]].to_numpy() < 0).all()
