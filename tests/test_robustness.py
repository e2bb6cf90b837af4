"""Bad input and faults (issue 10): no crash, nothing silent, nothing lost.

One test (or more) per row of the issue's table; the command-line runs that could crash
the interpreter or must see real signals run in a subprocess.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from conftest import ONNX_DIR, OPENFACE_DIR, REFERENCE, SAMPLES, load_reference
from pyfaceau.cli import main
from pyfaceau.errors import IncompleteInputWarning, InputError
from pyfaceau import Options, Pipeline
from pyfaceau.modelstore import MANIFEST
from pyfaceau.output.atomic import atomic_output, check_output_path
from pyfaceau.output.table import OPENFACE_COLUMNS, write_csv
from pyfaceau.pipeline.sources import FRAME_COUNT_SLACK, open_source, read_image
from pyfaceau.validation import require_landmarks

MODELS = os.pathsep.join([str(OPENFACE_DIR), str(ONNX_DIR)])
CLI = "from pyfaceau.cli import run; run()"  # the console command


def run_cli(args: list, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """``pyfaceau ARGS`` in a fresh interpreter (bytes arguments allowed): a native
    crash shows as a negative return code instead of killing the test worker."""
    env = dict(os.environ, PYFACEAU_MODELS=MODELS)
    return subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True,
                          timeout=timeout, env=env, **kw)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


# -- 1. any path the operating system accepts --------------------------------------------

def test_non_utf8_video_image_and_folder_names(tmp_path):
    """``caf\\xe9.wmv``, ``caf\\xe9.jpg``, folder ``seq\\xe9``: legal on Linux, a
    segmentation fault inside OpenCV before."""
    base = os.fsencode(tmp_path)
    video = base + b"/caf\xe9.wmv"
    shutil.copy(SAMPLES / "changeLighting.wmv", video)
    out = base + b"/out\xe9.csv"
    r = run_cli([video, "-o", out, "--landmarks-csv", str(REFERENCE / "changeLighting.csv"),
                 "--no-progress"])
    assert r.returncode == 0, r.stderr[-500:]
    df = pd.read_csv(os.fsdecode(out))
    assert len(df) == 88 and df["success"].sum() == 88
    # the side outputs into a folder of such a name (OpenCV's writers crashed too)
    sides = base + b"/sid\xe9"
    r = run_cli([video, "-o", out, "--landmarks-csv", str(REFERENCE / "changeLighting.csv"),
                 "--no-progress", "--aligned", sides + b"/al", "--tracked", sides + b"/t.avi",
                 "--hog", sides + b"/h.hog"])
    assert r.returncode == 0, r.stderr[-500:]
    aligned = sorted(os.listdir(sides + b"/al"))
    assert len(aligned) == 88
    assert read_image(os.fsdecode(sides + b"/al/" + aligned[0])).shape == (112, 112, 3)
    assert sum(1 for _ in open_source(os.fsdecode(sides + b"/t.avi"))) == 88
    assert os.path.getsize(sides + b"/h.hog") > 0

    still = base + b"/caf\xe9.jpg"
    shutil.copy(SAMPLES / "images" / "Obama.jpg", still)
    expected = cv2.imread(str(SAMPLES / "images" / "Obama.jpg"))
    np.testing.assert_array_equal(read_image(os.fsdecode(still)), expected)

    folder = base + b"/seq\xe9"
    os.mkdir(folder)
    for p in sorted((SAMPLES / "image_sequence").iterdir())[:3]:
        shutil.copy(p, folder + b"/" + os.fsencode(p.name))
    frames = list(open_source(folder))  # bytes, as os.listdir(bytes) gives them
    assert len(frames) == 3 and all(f.decoded for f in frames)
    # -o over one of its images, refused (OpenCV's image check crashed on the name)
    r = run_cli([folder, "-o", folder + b"/" + os.fsencode(sorted(os.listdir(folder))[0]),
                 "--fast", "--no-progress"])
    assert r.returncode == 2 and b"input" in r.stderr, r.stderr[-300:]
    # and the whole command on the video through its bytes name, in this process too
    source = open_source(os.fsdecode(video))
    assert source.frame_count == 90 and sum(1 for _ in source) == 88


def test_non_utf8_live_source(tmp_path):
    """A file played as a live source (``pyfaceau stream``) under a non-UTF-8 name."""
    from pyfaceau.pipeline.live import open_live

    video = os.fsencode(tmp_path) + b"/caf\xe9.wmv"
    shutil.copy(SAMPLES / "changeLighting.wmv", video)
    source = open_live(os.fsdecode(video))
    try:
        frame = next(iter(source))
        assert frame.image.shape == (480, 640, 3)
    finally:
        source.close()
    with pytest.raises(InputError, match="UTF-8"):
        open_live("rtsp://caf\udce9/stream")


# -- 2. the output is checked before the work, written atomically ------------------------

def _count_frames(calls: list):
    return lambda done, total: calls.append(done)


@pytest.mark.parametrize("case", ["folder", "new_folder", "unwritable", "too_long", "landmarks_csv"])
def test_bad_output_fails_before_the_first_frame(tmp_path, case):
    seq = SAMPLES / "image_sequence"
    lm_csv = tmp_path / "lm.csv"
    shutil.copy(REFERENCE / "image_sequence.csv", lm_csv)
    out = {
        "folder": tmp_path,
        "new_folder": str(tmp_path / "new") + "/",
        "unwritable": Path("/proc/pyfaceau_test.csv"),
        "too_long": tmp_path / ("x" * 300 + ".csv"),
        "landmarks_csv": lm_csv,
    }[case]
    before = lm_csv.read_bytes()
    r = CliRunner().invoke(main, [str(seq), "-o", str(out), "--landmarks-csv", str(lm_csv),
                                  "--no-progress"])
    assert r.exit_code == 2, r.output
    assert len(r.output.strip().splitlines()) == 1 and "error" in r.output
    assert lm_csv.read_bytes() == before  # the input is intact
    assert leftovers(tmp_path) == []
    # the library says so before any frame is processed
    calls: list = []
    with pytest.raises(InputError):
        Pipeline(Options.openface_csv(lm_csv)).process(seq, out, on_frame=_count_frames(calls))
    assert calls == []


def test_output_equal_to_the_input_video_is_refused(tmp_path):
    video = tmp_path / "v.wmv"
    shutil.copy(SAMPLES / "changeLighting.wmv", video)
    before = video.read_bytes()
    r = CliRunner().invoke(main, [str(video), "-o", str(video), "--landmarks-csv",
                                  str(REFERENCE / "changeLighting.csv"), "--no-progress"])
    assert r.exit_code == 2 and "is an input" in r.output
    assert video.read_bytes() == before


def test_a_long_output_name_works(tmp_path):
    """254 characters: the final name fits, and the temporary name stays short."""
    out = tmp_path / ("n" * 250 + ".csv")
    assert check_output_path(out) == out
    r = CliRunner().invoke(main, [str(SAMPLES / "image_sequence"), "-o", str(out),
                                  "--landmarks-csv", str(REFERENCE / "image_sequence.csv"),
                                  "--no-progress"])
    assert r.exit_code == 0, r.output
    assert len(pd.read_csv(out)) == 30 and leftovers(tmp_path) == []


def test_two_writers_of_one_path_leave_one_complete_file(tmp_path):
    """Interleaved writers (two runs at once): the last to finish wins, whole; before,
    both wrote ``OUT.part`` and the result mixed their bytes."""
    out = tmp_path / "o.csv"
    a_rows = "".join(f"{i},a\n" for i in range(20000))
    b_rows = "".join(f"{i},b\n" for i in range(10))
    with atomic_output(out) as fa:
        fa.write("frame,who\n" + a_rows[: len(a_rows) // 2])
        with atomic_output(out) as fb:
            fb.write("frame,who\n" + b_rows)
        assert pd.read_csv(out)["who"].eq("b").all()
        fa.write(a_rows[len(a_rows) // 2:])
    df = pd.read_csv(out)
    assert len(df) == 20000 and df["who"].eq("a").all()
    assert leftovers(tmp_path) == []


def test_concurrent_runs_leave_one_complete_file(tmp_path):
    out = tmp_path / "same.csv"
    args = [str(SAMPLES / "image_sequence"), "-o", str(out), "--landmarks-csv",
            str(REFERENCE / "image_sequence.csv"), "--no-progress"]
    env = dict(os.environ, PYFACEAU_MODELS=MODELS)
    procs = [subprocess.Popen([sys.executable, "-c", CLI, *args], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    df = pd.read_csv(out)
    assert len(df) == 30 and list(df.columns)[:3] == ["frame", "face_id", "timestamp"]
    assert leftovers(tmp_path) == []


def test_file_size_limit_is_one_line_and_leaves_nothing(tmp_path):
    out = tmp_path / "big.csv"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    r = run_cli([str(SAMPLES / "image_sequence"), "-o", str(out), "--landmarks-csv",
                 str(REFERENCE / "image_sequence.csv"), "--no-progress"], preexec_fn=limit)
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert len(err.strip().splitlines()) == 1 and "file size limit" in err
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_while_writing_leaves_nothing(tmp_path, sig, code):
    """A real signal in the middle of writing the CSV: exit 128 + signal, one line, no
    temporary file, an earlier output untouched."""
    out = tmp_path / "o.csv"
    out.write_text("earlier\n")
    script = textwrap.dedent(f"""
        import os, signal, sys
        import pyfaceau.output.table as table
        import pyfaceau.pipeline.pipeline as pipeline
        from pyfaceau.output.atomic import atomic_output

        def write_csv(rows, path, **kwargs):  # the CLI writes its CSV where it is staged
            with atomic_output(path) as f:
                f.write("frame\\n1\\n")
                os.kill(os.getpid(), {int(sig)})
                f.write("2\\n")
            raise AssertionError("not reached")

        pipeline.Pipeline.process = lambda self, input_path, **kwargs: table.FrameTable(["frame"])
        table.write_csv = write_csv
        from pyfaceau.cli import main
        sys.argv = ["pyfaceau", {str(SAMPLES / "image_sequence")!r}, "-o", {str(out)!r},
                    "--landmarks-csv", {str(REFERENCE / "image_sequence.csv")!r}, "--no-progress"]
        main()
    """)
    env = dict(os.environ, PYFACEAU_MODELS=MODELS)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120, env=env)
    assert r.returncode == code, r.stderr.decode()[-500:]
    assert "Traceback" not in r.stderr.decode() and len(r.stderr.decode().strip().splitlines()) == 1
    assert out.read_text() == "earlier\n" and leftovers(tmp_path) == []


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_side_outputs_appear_only_when_the_run_completes(tmp_path, sig, code):
    """Stopped while the HOG file, the tracked video and the aligned faces are being
    written: the earlier files are as they were, nothing partial is left."""
    import time

    out = tmp_path / "r"
    out.mkdir()
    for name in ("k.hog", "k.avi"):
        (out / name).write_text("earlier\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyfaceau.cli", str(SAMPLES / "2015-10-15-15-14.avi"), "-o",
         str(out / "k.csv"), "--fast", "--hog", str(out / "k.hog"), "--tracked",
         str(out / "k.avi"), "--aligned", str(out / "al"), "--no-progress"],
        stderr=subprocess.PIPE, env=dict(os.environ, PYFACEAU_MODELS=MODELS))
    t0 = time.monotonic()
    while not any(p.stat().st_size > 0 for p in out.glob(".k.hog.*.part/staged.hog")):
        assert proc.poll() is None and time.monotonic() - t0 < 300, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err.decode()[-500:]
    assert sorted(p.name for p in out.iterdir()) == ["k.avi", "k.hog"]
    assert (out / "k.hog").read_text() == (out / "k.avi").read_text() == "earlier\n"


def test_outputs_never_replace_inputs_or_special_files(tmp_path):
    """Every output option is checked against the inputs, the other outputs and what is
    not a regular file, before anything is opened; a symbolic link is written through."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for p in sorted((SAMPLES / "image_sequence").glob("*.jpg"))[:3]:
        shutil.copy(p, folder / p.name)
    clip = tmp_path / "clip.wmv"
    shutil.copy(SAMPLES / "default.wmv", clip)
    first = sorted(folder.iterdir())[0]
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    csv = str(tmp_path / "o.csv")
    refused = [
        ([str(clip), "-o", csv, "--tracked", str(clip)], "is an input"),
        ([str(clip), "-o", csv, "--hog", str(clip)], "is an input"),
        ([str(folder), "-o", str(first)], "an image of the input folder"),
        ([str(folder), "-o", csv, "--hog", str(first)], "an image of the input folder"),
        ([str(folder), "-o", csv, "--aligned", str(folder)], "is an input"),
        ([str(folder), "-o", csv, "--hog", csv], "the same path as -o"),
        ([str(folder), "-o", str(fifo)], "not a regular file"),
        ([str(fifo), "-o", csv], "not a regular file or folder"),  # would wait forever
    ]
    before = {p: p.read_bytes() for p in [clip, *folder.iterdir()]}
    for args, message in refused:
        r = CliRunner().invoke(main, [*args, "--fast", "--models", MODELS])
        assert r.exit_code == 2 and message in r.output, (args, r.output)
    assert {p: p.read_bytes() for p in [clip, *folder.iterdir()]} == before
    assert not (tmp_path / "o.csv").exists()
    for _ in range(2):  # a CSV in the image folder, written again: not an image of it
        r = CliRunner().invoke(main, [str(folder), "-o", str(folder / "au.csv"), "--fast",
                                      "--no-progress", "--models", MODELS])
        assert r.exit_code == 0, r.output
    target = tmp_path / "target.csv"
    target.write_text("earlier\n")
    target.chmod(0o640)
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    r = CliRunner().invoke(main, [str(folder), "-o", str(link), "--fast", "--no-progress",
                                  "--models", MODELS])
    assert r.exit_code == 0, r.output
    assert link.is_symlink() and target.read_text().startswith("frame,")
    assert (target.stat().st_mode & 0o777) == 0o640  # the replaced file's permissions


def test_staged_outputs_move_only_what_the_run_wrote(tmp_path, monkeypatch):
    """``--aligned ..`` names the parent by "..": only the new faces go there (the staged
    name is fixed, not the final's); a replaced folder goes only once the new one is in;
    a killed run's staging folders are removed by the next run after 10 minutes."""
    from pyfaceau.output.atomic import StagedOutputs, remove_stale_temps

    work = tmp_path / "parent" / "work"
    work.mkdir(parents=True)
    (work / "input.avi").write_text("input")
    monkeypatch.chdir(work)
    staged = StagedOutputs([".."])
    (staged.path("..")).mkdir()
    (staged.path("..") / "frame_det_00_000001.bmp").write_text("face")
    staged.commit()
    assert sorted(p.name for p in (tmp_path / "parent").iterdir()) == [
        "frame_det_00_000001.bmp", "work"]
    assert sorted(p.name for p in work.iterdir()) == ["input.avi"]

    old = tmp_path / "out" / "clip_aligned"
    old.mkdir(parents=True)
    (old / "stale.bmp").write_text("old")
    staged = StagedOutputs([old], anchor=tmp_path / "out" / "clip.csv", replace_folders=True)
    staged.path(old).mkdir()
    (staged.path(old) / "new.bmp").write_text("new")
    staged.commit()
    assert [p.name for p in old.iterdir()] == ["new.bmp"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip_aligned"]

    left = StagedOutputs([tmp_path / "out" / "k.hog"])  # as a killed run leaves it
    left.path(tmp_path / "out" / "k.hog").write_text("partial")
    remove_stale_temps(tmp_path / "out" / "k.hog")  # young: may be a run still writing
    assert len(list((tmp_path / "out").glob(".k.hog.*.part"))) == 1
    remove_stale_temps(tmp_path / "out" / "k.hog", older_than=-1)
    assert not list((tmp_path / "out").glob(".k.hog.*.part"))


def test_the_csv_is_moved_into_place_with_the_other_outputs(tmp_path):
    """The CSV is staged with the side outputs and moved into place last, after a check
    of every move: a folder in the way of one aligned face leaves every earlier output as
    it was (before, the new CSV was already in place and half of the aligned faces moved,
    and the error named a temporary path); a stop while the outputs are moved waits for
    the renames."""
    import signal as signals

    from pyfaceau.output.atomic import StagedOutputs, signals_deferred

    seq = tmp_path / "seq"
    seq.mkdir()
    for p in sorted((SAMPLES / "image_sequence").iterdir())[:4]:
        shutil.copy(p, seq / p.name)
    out, aligned, hog = tmp_path / "o.csv", tmp_path / "al", tmp_path / "o.hog"
    args = [str(seq), "-o", str(out), "--aligned", str(aligned), "--hog", str(hog), "--fast",
            "--no-progress", "--models", MODELS]
    assert CliRunner().invoke(main, args).exit_code == 0
    (aligned / "frame_det_00_000003.bmp").unlink()
    (aligned / "frame_det_00_000003.bmp").mkdir()
    before = {p.name: p.read_bytes() for p in (out, hog)}
    shutil.copy(SAMPLES / "image_sequence" / "010.jpg", seq / "001.jpg")  # other frames
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2
    assert r.output == (f"pyfaceau: error: {aligned / 'frame_det_00_000003.bmp'}: a folder "
                        "where this run writes a file; nothing was written\n")
    assert {p.name: p.read_bytes() for p in (out, hog)} == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]

    staged = StagedOutputs([tmp_path / "x.csv"])
    staged.path(tmp_path / "x.csv").write_text("new")
    with signals_deferred() as stopped:
        os.kill(os.getpid(), signals.SIGINT)
        staged.commit()  # not stopped half-way
    assert stopped == [signals.SIGINT] and (tmp_path / "x.csv").read_text() == "new"


def test_a_stop_while_the_guard_starts_is_handled():
    """The guard's handlers are in place before it imports the numba helper (about 80 ms):
    a SIGTERM then raises Terminated instead of killing the process silently."""
    script = textwrap.dedent("""
        import os, signal, sys
        import pyfaceau.output.atomic as atomic
        assert "pyfaceau.jit" not in sys.modules

        class StopDuringImport:  # the signal arrives while pyfaceau.jit is imported
            def find_spec(self, name, path, target=None):
                if name == "pyfaceau.jit":
                    os.kill(os.getpid(), signal.SIGTERM)
                return None

        sys.meta_path.insert(0, StopDuringImport())
        try:
            with atomic.stop_on_signals():
                pass
        except atomic.Terminated:
            print("terminated, handled")
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == b"terminated, handled", r


def test_a_signal_put_off_at_the_end_of_the_block_is_not_lost():
    """A signal deferred out of a kernel's callback just as the block ends is raised by
    the block's end, not delivered later to the restored default handler."""
    from pyfaceau.output import atomic

    with pytest.raises(atomic.Terminated):
        with atomic.stop_on_signals():
            atomic._pending_signal = signal.SIGTERM  # as the handler leaves it in a callback
    assert atomic._pending_signal is None


def test_atomic_output_removes_its_file_on_any_exception(tmp_path):
    out = tmp_path / "o.csv"
    for exc in (RuntimeError("x"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            with atomic_output(out) as f:
                f.write("partial")
                raise exc
    assert not out.exists() and leftovers(tmp_path) == []
    write_csv(pd.DataFrame({"frame": [1]}), out)
    assert oct(out.stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode


# -- 3. nothing silent: truncated and corrupt videos ------------------------------------

def _truncated_wmv(tmp_path: Path) -> Path:
    data = (SAMPLES / "changeLighting.wmv").read_bytes()
    cut = tmp_path / "cut.wmv"
    cut.write_bytes(data[: len(data) // 2])
    return cut


def test_truncated_video_warns_with_counts(tmp_path):
    cut = _truncated_wmv(tmp_path)
    source = open_source(cut)
    with pytest.warns(IncompleteInputWarning, match=r"after 39 of the 46 frames"):
        frames = list(source)
    assert len(frames) == 39 == source.frames_read


def test_corrupt_video_warns(tmp_path):
    data = bytearray((SAMPLES / "0686_02_003_gloria_estefan.avi").read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 20000, 7):
        data[i] = 0xFF
    bad = tmp_path / "corrupt.avi"
    bad.write_bytes(bytes(data))
    with pytest.warns(IncompleteInputWarning, match=r"of the 125 frames"):
        n = sum(1 for _ in open_source(bad))
    assert 0 < n < 125 - FRAME_COUNT_SLACK


def test_a_damaged_header_announcing_a_negative_frame_count(tmp_path):
    """An AVI whose RIFF tag is damaged still decodes, but FFmpeg then announces a
    negative frame count (about -1.9e14 for this clip): the source reads every frame with
    its count unknown (0) instead of failing on ``len``, and the batch's probe says 0;
    the probe also takes a file name that is not UTF-8, as the run itself does."""
    from pyfaceau.batch.runner import _probe_frames

    data = bytearray((SAMPLES / "0686_02_003_gloria_estefan.avi").read_bytes())
    data[0:4] = b"XXXX"
    bad = tmp_path / "damaged.avi"
    bad.write_bytes(bytes(data))
    cap = cv2.VideoCapture(str(bad))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) < 0  # what makes this input a case
    cap.release()
    source = open_source(bad)
    assert len(source) == 0 and source.fps == 25.0
    assert sum(1 for _ in source) == 125
    assert _probe_frames(bad) == 0
    odd = tmp_path / os.fsdecode(b"caf\xe9.avi")
    shutil.copyfile(SAMPLES / "0686_02_003_gloria_estefan.avi", odd)
    assert _probe_frames(odd) == 125


def test_an_avi_with_a_damaged_header_list_is_one_line(tmp_path):
    """OpenCV's own AVI parser writes ``Unexpected element. Expected: LIST`` to the
    standard error stream past its log level: the command says only its own line (the
    batch too, whose probe opens the file as well)."""
    data = bytearray((SAMPLES / "0686_02_003_gloria_estefan.avi").read_bytes())
    data[12:300] = bytes(288)
    bad = tmp_path / "damaged.avi"
    bad.write_bytes(bytes(data))
    cap = cv2.VideoCapture(str(bad))
    assert not cap.isOpened()
    r = run_cli([str(bad), "-o", str(tmp_path / "x.csv"), "--fast"])
    assert r.returncode == 2
    assert r.stderr.decode().splitlines() == [
        f"pyfaceau: error: {bad}: cannot be decoded as a video (corrupt or unsupported)"]
    r = run_cli(["batch", str(bad), "-o", str(tmp_path / "b"), "--fast", "--no-progress"])
    assert b"Unexpected element" not in r.stdout + r.stderr
    assert b"cannot be decoded as a video" in r.stdout + r.stderr


def test_complete_videos_do_not_warn():
    """ASF announces 90 frames for the 88 of changeLighting.wmv: within the slack."""
    for name, frames in (("changeLighting.wmv", 88), ("0686_02_003_gloria_estefan.avi", 125)):
        with warnings.catch_warnings():
            warnings.simplefilter("error", IncompleteInputWarning)
            assert sum(1 for _ in open_source(SAMPLES / name)) == frames


def test_cli_truncated_video_warning_and_strict(tmp_path):
    cut = _truncated_wmv(tmp_path)
    out = tmp_path / "cut.csv"
    args = [str(cut), "-o", str(out), "--landmarks-csv", str(REFERENCE / "changeLighting.csv")]
    r = run_cli(args)
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert "pyfaceau: warning:" in err and "39 of the 46 frames" in err and "Traceback" not in err
    assert "39/46" in err  # the progress bar shows how far it got, not a rewritten total
    assert len(pd.read_csv(out)) == 39
    out.unlink()
    r = run_cli([*args, "--strict", "--no-progress"])
    err = r.stderr.decode()
    assert r.returncode == 3 and len(err.strip().splitlines()) == 1 and "39 of the 46" in err
    assert not out.exists() and leftovers(tmp_path) == []


def test_strict_option_makes_a_cut_input_an_error_in_the_api(tmp_path):
    """``Options(strict=True)``: ``Pipeline.process`` raises where it would warn, and
    writes nothing; the filter is its own (the caller's warning settings are left alone)."""
    cut = _truncated_wmv(tmp_path)
    out = tmp_path / "cut.csv"
    with Pipeline(Options.openface_csv(REFERENCE / "changeLighting.csv", strict=True)) as pipe:
        with pytest.raises(IncompleteInputWarning, match="39 of the 46 frames"):
            pipe.process(cut, out)
    assert not out.exists()
    with Pipeline(Options.openface_csv(REFERENCE / "changeLighting.csv")) as pipe:
        with pytest.warns(IncompleteInputWarning, match="39 of the 46 frames"):
            assert len(pipe.process(cut, out)) == 39


# -- 4. one column set per mode ----------------------------------------------------------

@pytest.fixture(scope="module")
def no_face_video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("noface") / "black.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (320, 240))
    for i in range(6):
        w.write(np.full((240, 320, 3), 20 + i, np.uint8))
    w.release()
    return path


def test_no_face_video_has_openfaces_714_columns(no_face_video, tmp_path):
    """Measured with OpenFace's FeatureExtraction on this clip: 714 columns, success 0,
    2D landmarks 0, the models' initial state in 3D (X_0 -190.5, eye_lmk_X_0 -160.0,
    eye_lmk_Z_0 249.9) and pose_Tz 33232396 mm (the initial model at scale 1 projected
    with this camera), gaze 0."""
    df = Pipeline(Options.faithful()).process(no_face_video, tmp_path / "o.csv")
    assert list(df.columns) == list(load_reference("default").columns)
    assert df.shape == (6, 714) and (df["success"] == 0).all()
    row = df.iloc[0]
    assert row["x_0"] == 0 and row["gaze_0_x"] == 0 and row["gaze_angle_x"] == 0
    assert abs(row["X_0"] - -190.5) < 0.06 and abs(row["Z_0"] - 297.7) < 0.06
    assert abs(row["eye_lmk_X_0"] - -160.0) < 0.06 and abs(row["eye_lmk_Z_0"] - 249.9) < 0.06
    assert row["eye_lmk_x_0"] == 0 and row["p_scale"] == 1.0
    assert abs(row["pose_Tz"] / 33232396.0 - 1) < 1e-3
    assert list(pd.read_csv(tmp_path / "o.csv").columns) == list(df.columns)


def test_no_face_still_has_the_same_columns(tmp_path):
    img = tmp_path / "grey.png"
    cv2.imwrite(str(img), np.full((240, 320, 3), 128, np.uint8))
    df = Pipeline(Options.faithful()).process(img)
    assert len(df) == 1 and df["success"].iloc[0] == 0
    assert list(df.columns) == [c for c in OPENFACE_COLUMNS]


# -- 5. image folders --------------------------------------------------------------------

def test_image_folder_with_bad_hidden_and_resized_images(tmp_path):
    """0-byte and undecodable images: success = 0 rows with a warning, the run goes on;
    hidden and ``._*`` files skipped; one warning that the sizes differ."""
    src = sorted((SAMPLES / "image_sequence").iterdir())
    seq = tmp_path / "seq"
    seq.mkdir()
    for i, p in enumerate(src[:3]):
        shutil.copy(p, seq / f"f{i}{p.suffix}")
    first = cv2.imread(str(src[3]))
    cv2.imwrite(str(seq / "f3.png"), cv2.resize(first, (first.shape[1] // 2, first.shape[0] // 2)))
    (seq / "f4.jpg").write_bytes(b"")  # 0 bytes
    (seq / "f5.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    shutil.copy(src[6], seq / "f6.jpg")
    shutil.copy(src[0], seq / "._f0.jpg")  # macOS AppleDouble companion
    shutil.copy(src[0], seq / ".hidden.jpg")
    out = tmp_path / "o.csv"
    r = run_cli([str(seq), "-o", str(out), "--landmarks-csv", str(REFERENCE / "image_sequence.csv"),
                 "--no-progress"])
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert err.count("cannot be decoded as an image: its row has success = 0") == 2, err
    assert err.count("differ in size") == 1 and "Traceback" not in err
    df = pd.read_csv(out)
    assert df["success"].tolist() == [1, 1, 1, 1, 0, 0, 1]
    ref = load_reference("image_sequence")
    # the landmark CSV stays in step past the undecodable images (row 7 = its frame 7)
    np.testing.assert_allclose(df.loc[6, "x_0"], ref.loc[6, "x_0"], atol=0.051)


def test_each_image_size_gets_its_own_camera():
    """The same face at half size is at the same distance with the camera of its own size
    (before: the first image's camera for all, pose_Tz about twice as far)."""
    from pyfaceau.pipeline.backend import AUBackend
    from pyfaceau.pipeline.sources import Frame
    from pyfaceau.pipeline.types import LandmarkResult

    ref = load_reference("image_sequence")
    lm = np.stack([ref.loc[0, [f"x_{i}" for i in range(68)]].to_numpy(float),
                   ref.loc[0, [f"y_{i}" for i in range(68)]].to_numpy(float)], axis=1)
    image = cv2.imread(str(sorted((SAMPLES / "image_sequence").iterdir())[0]))
    h, w = image.shape[:2]
    half = cv2.resize(image, (w // 2, h // 2))
    session = AUBackend().new_session(w, h)
    full_pose = session.add(Frame(0, 0.0, image), LandmarkResult(True, 1.0, lm)).pose
    half_pose = session.add(Frame(1, 0.0, half), LandmarkResult(True, 1.0, lm / 2)).pose
    assert abs(half_pose[2] / full_pose[2] - 1) < 0.02, (full_pose, half_pose)
    np.testing.assert_allclose(half_pose[3:], full_pose[3:], atol=0.02)


def test_folder_of_only_undecodable_images(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"")
    with pytest.raises(InputError, match="none of its 1 images can be decoded"):
        open_source(tmp_path)


# -- 7. the model store check ------------------------------------------------------------

@pytest.fixture()
def model_copy(tmp_path, monkeypatch) -> Path:
    """A models folder of links to the real files (and nothing else searched)."""
    root = tmp_path / "models"
    for rel in MANIFEST:
        src = OPENFACE_DIR / rel if (OPENFACE_DIR / rel).exists() else ONNX_DIR / rel
        dst = root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(src)
    monkeypatch.setenv("PYFACEAU_MODELS", str(root))
    monkeypatch.setattr("pyfaceau.modelstore.store.default_data_dir", lambda: tmp_path / "none")
    return root


def test_models_verify_finds_damaged_and_missing_files(model_copy):
    r = CliRunner().invoke(main, ["models", "verify"])
    assert r.exit_code == 0 and f"all {len(MANIFEST)} model files found" in r.output
    pdm = "AU_predictors/In-the-wild_aligned_PDM_68.txt"
    data = (OPENFACE_DIR / pdm).read_bytes()
    (model_copy / pdm).unlink()
    (model_copy / pdm).write_bytes(data[:-100])
    (model_copy / "pfld.onnx").unlink()
    r = CliRunner().invoke(main, ["models", "verify"])
    assert r.exit_code == 1, r.output
    assert "In-the-wild_aligned_PDM_68.txt" in r.output and "truncated" in r.output
    assert "missing: 1 of" in r.output and "pfld.onnx" in r.output
    altered = bytearray(data)
    altered[1000] ^= 1
    (model_copy / pdm).write_bytes(bytes(altered))
    r = CliRunner().invoke(main, ["models", "verify"])
    assert r.exit_code == 1 and "altered" in r.output


# -- 8. API misuse -----------------------------------------------------------------------

def test_degenerate_landmarks_are_input_errors():
    from pyfaceau.refinement import TargetedCLNFRefiner

    refiner = TargetedCLNFRefiner()
    gray = np.zeros((100, 100), np.uint8)
    for lm in (np.zeros((68, 2)), np.full((68, 2), 5.0), np.c_[np.arange(68.0), np.zeros(68)]):
        with pytest.raises(InputError, match="degenerate"):
            refiner.refine_landmarks(gray, lm)
    with pytest.raises(InputError, match=r"\(68, 2\)"):
        refiner.refine_landmarks(gray, "not landmarks")
    with pytest.raises(InputError, match="grey"):
        refiner.refine_landmarks(np.zeros((100, 100, 3), np.uint8), np.zeros((68, 2)))
    with pytest.raises(InputError, match="NaN"):
        require_landmarks(np.full((68, 2), np.nan))
    # a failed frame's landmarks are valid where OpenFace uses them (pose of a success = 0 row)
    assert require_landmarks(np.zeros((68, 2)), fitted=False).shape == (68, 2)


def test_process_frame_misuse_is_input_error():
    import pyfaceau

    pipe = pyfaceau.FullPythonAUPipeline()
    img = np.zeros((120, 160, 3), np.uint8)
    for bad in ("3", 1.5, -1, True, None):
        with pytest.raises(InputError, match="frame_num"):
            pipe.process_frame(img, bad)
    with pytest.raises(InputError, match="timestamp"):
        pipe.process_frame(img, 0, timestamp="now")
    with pytest.raises(InputError):
        pipe.process_frame(np.zeros((0, 10, 3), np.uint8), 0)
    assert pipe.process_frame(img, np.int64(0)).success is False
