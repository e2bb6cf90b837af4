"""``pyfaceau batch``: inputs and outputs, resume, failures, Ctrl-C and kills, Dask.

End-to-end runs use short clips cut from the samples into a temporary folder.
"""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner

from conftest import SAMPLES
from pyfaceau.batch import discover_inputs, plan_workers
from pyfaceau.batch.records import (
    SUMMARY_NAME,
    options_fingerprint,
    read_valid_record,
    record_path,
    write_record,
)
from pyfaceau.batch.inputs import input_signature
from pyfaceau.cli import main
from pyfaceau.errors import InputError
from pyfaceau.options import Options

PYFACEAU = Path(sys.executable).with_name("pyfaceau")
DASK = Path(sys.executable).with_name("dask")


def cut_clip(src: Path, dst: Path, frames: int) -> Path:
    """The first ``frames`` frames of ``src`` as an MJPG AVI."""
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS)
    ok, image = cap.read()
    dst.parent.mkdir(parents=True, exist_ok=True)
    h, w = image.shape[:2]
    writer = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for _ in range(frames):
        writer.write(image)
        ok, image = cap.read()
        if not ok:
            break
    writer.release()
    cap.release()
    return dst


def image_folder(dst: Path, n: int) -> Path:
    dst.mkdir(parents=True)
    for p in sorted((SAMPLES / "image_sequence").iterdir())[:n]:
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def summary_rows(out: Path, inputs: Path) -> dict[str, dict[str, str]]:
    """The summary's rows by input path relative to ``inputs``."""
    with open(out / SUMMARY_NAME, newline="") as f:
        return {Path(r["input"]).relative_to(inputs).as_posix(): r for r in csv.DictReader(f)}


def leftovers(out: Path) -> list[Path]:
    """Half-written files: temporary CSVs, records or summaries."""
    return [p for p in out.rglob("*") if p.name.endswith((".part", ".tmp"))]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """in/a/clip.avi, in/b/clip.avi (same name, other folders), in/seq/ (images),
    in/bad.avi (corrupt)."""
    root = tmp_path_factory.mktemp("study") / "in"
    cut_clip(SAMPLES / "default.wmv", root / "a" / "clip.avi", 10)
    cut_clip(SAMPLES / "changeLighting.wmv", root / "b" / "clip.avi", 10)
    image_folder(root / "seq", 6)
    (root / "bad.avi").write_bytes(b"RIFF\x00\x00\x00\x00AVI garbage" * 100)
    return root


# -- inputs and outputs (no processing) --------------------------------------------------------
def test_discovery_and_output_mapping(tmp_path):
    root = tmp_path / "in"
    for rel in ("a/clip.avi", "b/clip.avi", "b/clip.mp4", "c/deep/x.MOV", ".hidden/h.avi", "notes.txt"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    image_folder(root / "seq", 2)
    (root / "seq" / "readme.txt").write_text("not an image")
    found = {i.path.relative_to(root).as_posix(): i.relative for i in discover_inputs([root])}
    assert found == {
        "a/clip.avi": "a/clip.csv",
        "b/clip.avi": "b/clip.avi.csv",  # same stem in one folder: suffix kept
        "b/clip.mp4": "b/clip.mp4.csv",
        "c/deep/x.MOV": "c/deep/x.csv",
        "seq": "seq.csv",  # a folder of images is one image-sequence input
    }
    # a pattern picks exactly the matching files; the output folder is never searched
    got = discover_inputs([root], pattern="*.avi", exclude=root / "b")
    assert [i.relative for i in got] == ["a/clip.csv"]
    # the common root of two folder arguments is their common folder
    got = discover_inputs([root / "a", root / "b" / "clip.avi"])
    assert [i.relative for i in got] == ["a/clip.csv", "b/clip.csv"]
    # an image folder given itself maps to its own name; a single file to its stem
    assert [i.relative for i in discover_inputs([root / "seq"])] == ["seq.csv"]
    assert [i.relative for i in discover_inputs([root / "a" / "clip.avi"])] == ["clip.csv"]
    # @list files: paths relative to the list's folder, comments and blanks ignored
    lst = tmp_path / "list.txt"
    lst.write_text("# study\nin/a/clip.avi\n\nin/seq\n")
    got = discover_inputs([f"@{lst}"])
    assert [(i.path, i.relative) for i in got] == [
        (root / "a" / "clip.avi", "a/clip.csv"),
        (root / "seq", "seq.csv"),
    ]
    with pytest.raises(InputError, match="no such file"):
        discover_inputs([root / "nope.avi"])
    with pytest.raises(InputError, match="no file matching"):
        discover_inputs([root], pattern="*.mkv")


def test_plan_workers_fills_the_cores():
    assert plan_workers(10, cores=2) == (2, 1)
    assert plan_workers(1, cores=2) == (1, 2)  # one input: its threads get the cores
    assert plan_workers(10, jobs=1, cores=2) == (1, 2)
    assert plan_workers(10, threads=2, cores=4) == (2, 2)
    assert plan_workers(10, jobs=1, threads=1, cores=8) == (1, 1)
    assert plan_workers(6, jobs=100, cores=2) == (6, 1)  # as many as there are inputs


def test_record_is_void_when_anything_changes(tmp_path):
    video = tmp_path / "v.avi"
    video.write_bytes(b"0123456789")
    out = tmp_path / "v.csv"
    out.write_text("frame\n1\n")
    opts = Options.fast()
    sig = input_signature(video)
    write_record(out, input_path=video, input_signature=sig, options=opts, frames=1, faces=1)
    assert read_valid_record(out, input_signature=sig, options=opts)["frames"] == 1
    # threads and model folders do not change the output
    assert read_valid_record(out, input_signature=sig, options=opts.replace(threads=3, models="x"))
    assert read_valid_record(out, input_signature=sig, options=Options.faithful()) is None
    assert "threads" not in options_fingerprint(opts)
    video.write_bytes(b"0123456789")  # same size, new time
    os.utime(video, ns=(sig["mtime_ns"] + 10**9, sig["mtime_ns"] + 10**9))
    assert read_valid_record(out, input_signature=input_signature(video), options=opts) is None
    out.write_text("frame\n1\n2\n")  # the CSV itself replaced
    assert read_valid_record(out, input_signature=sig, options=opts) is None
    record_path(out).write_text("{not json")
    assert read_valid_record(out, input_signature=sig, options=opts) is None


# -- end to end on this machine ------------------------------------------------------------
def single_run(path: Path, out: Path, *flags: str) -> bytes:
    r = CliRunner().invoke(main, [str(path), "-o", str(out), "--no-progress", *flags])
    assert r.exit_code == 0, r.output
    return out.read_bytes()


def test_batch_outputs_equal_single_runs_and_resume(study, tmp_path):
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["batch", str(study), "--out-dir", str(out), "--jobs", "2",
                                  "--no-progress"])
    assert r.exit_code == 1, r.output  # the corrupt input failed
    rows = summary_rows(out, study)
    assert {k: v["status"] for k, v in rows.items()} == {
        "a/clip.avi": "done", "b/clip.avi": "done", "seq": "done", "bad.avi": "failed"
    }
    assert "cannot be decoded as a video" in rows["bad.avi"]["error"]
    assert rows["a/clip.avi"]["frames"] == "10" and rows["seq"]["faces"] == "6"
    # two clip.avi in different folders: two outputs, each byte-identical to a single run
    for rel, out_rel in (("a/clip.avi", "a/clip.csv"), ("b/clip.avi", "b/clip.csv"), ("seq", "seq.csv")):
        single = single_run(study / rel, tmp_path / "single" / out_rel)
        assert (out / out_rel).read_bytes() == single, rel
    assert not leftovers(out)

    # a second run skips the finished inputs, says so, and tries the failed one again
    r = CliRunner().invoke(main, ["batch", str(study), "--out-dir", str(out), "--no-progress"])
    assert r.exit_code == 1
    assert "3 input(s) skipped" in r.output
    rows = summary_rows(out, study)
    assert [rows[k]["status"] for k in ("a/clip.avi", "b/clip.avi", "seq", "bad.avi")] == [
        "skipped", "skipped", "skipped", "failed"
    ]
    assert rows["a/clip.avi"]["frames"] == "10"  # from the record


def test_batch_fast_path_and_changed_input(study, tmp_path):
    inputs = tmp_path / "in"
    cut_clip(study / "a" / "clip.avi", inputs / "clip.avi", 10)
    out = tmp_path / "out"
    args = ["batch", str(inputs), "--out-dir", str(out), "--fast", "--threads", "2", "--no-progress"]
    assert CliRunner().invoke(main, args).exit_code == 0
    first = (out / "clip.csv").read_bytes()
    assert first == single_run(inputs / "clip.avi", tmp_path / "single.csv", "--fast")
    # the input changes: it is made again (options recorded: --fast, not the default)
    cut_clip(study / "b" / "clip.avi", inputs / "clip.avi", 10)
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0 and "done 1, skipped 0" in r.output
    assert (out / "clip.csv").read_bytes() != first
    # other options: made again too
    r = CliRunner().invoke(main, [*args, "--static"])
    assert r.exit_code == 0 and "done 1, skipped 0" in r.output


def test_batch_argument_errors(tmp_path):
    r = CliRunner().invoke(main, ["batch", str(tmp_path / "nope"), "--out-dir", str(tmp_path)])
    assert r.exit_code == 2 and "no such file" in r.output
    r = CliRunner().invoke(main, ["batch", str(SAMPLES / "default.wmv"), "--out-dir", str(tmp_path),
                                  "--no-refine"])
    assert r.exit_code == 2 and "--no-refine goes with --fast" in r.output
    listing = tmp_path / "list.txt"
    listing.write_text("# nothing yet\n\n")
    r = CliRunner().invoke(main, ["batch", f"@{listing}", "--out-dir", str(tmp_path / "o")])
    assert r.exit_code == 2 and r.output == f"pyfaceau: error: @{listing}: names no input (only blank and # lines)\n"


def test_outputs_that_would_replace_inputs_or_each_other_are_refused(tmp_path):
    """Before any work: a side output replacing an input (``-o`` the input folder), an
    input's CSV as the summary, a per-person CSV as another input's CSV."""
    clip = SAMPLES / "default.wmv"
    cases = [
        ({"a.avi": clip, "a_tracked.avi": clip}, ["--tracked"], "an input, which"),
        ({"a.avi": clip, "a_aligned/1.jpg": SAMPLES / "image_sequence" / "001.jpg"},
         ["--aligned"], "an input, which"),
        ({"pyfaceau-batch.avi": clip, "b.avi": clip}, [], "the batch summary"),
        ({"m.avi": clip, "m_face0.avi": clip}, ["--max-faces", "2", "--split"], "per-person"),
    ]
    for k, (files, flags, message) in enumerate(cases):
        folder = tmp_path / f"case{k}"
        for name, source in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).symlink_to(source)
        before = {p: p.stat().st_size for p in folder.rglob("*")}
        out = folder if "an input" in message else tmp_path / f"out{k}"
        r = CliRunner().invoke(main, ["batch", str(folder), "--out-dir", str(out), *flags])
        assert r.exit_code == 2 and message in r.output, r.output
        assert {p: p.stat().st_size for p in folder.rglob("*")} == before  # untouched
        assert not (tmp_path / f"out{k}").exists() or not any((tmp_path / f"out{k}").iterdir())


# -- stopped and killed runs ---------------------------------------------------------------------
def _slow_study(tmp_path: Path, study: Path) -> Path:
    """Three clips: the first short, so that it finishes while the others run."""
    root = tmp_path / "in"
    cut_clip(study / "a" / "clip.avi", root / "1.avi", 5)
    cut_clip(SAMPLES / "default.wmv", root / "2.avi", 60)
    cut_clip(SAMPLES / "changeLighting.wmv", root / "3.avi", 60)
    return root


def _start_batch(inputs: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(PYFACEAU), "batch", str(inputs), "--out-dir", str(out), "--jobs", "1", "--fast",
         "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped) has stopped working
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    t0 = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout, f"{path} did not appear"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL],
                         ids=["ctrl-c", "term", "kill"])
def test_stopped_batch_resumes(study, tmp_path, sig):
    inputs = _slow_study(tmp_path, study)
    out = tmp_path / "out"
    proc = _start_batch(inputs, out)
    _wait_for(record_path(out / "1.csv"), proc)
    workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
    workers = [int(p) for p in workers.stdout.split()]
    assert workers
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    if sig != signal.SIGKILL:
        # Ctrl-C or SIGTERM: a clean stop, nothing half-written, the summary says what is
        # missing; the shell's code for the signal, no traceback or leaked-semaphore warning
        assert proc.returncode == 128 + sig, stderr
        assert "stopping" in stderr and "Traceback" not in stderr and "leaked" not in stderr
        rows = {Path(r["input"]).name: r["status"] for r in csv.DictReader(open(out / SUMMARY_NAME))}
        assert rows["1.avi"] == "done"
        assert rows["2.avi"] in ("interrupted", "done")
        assert {"interrupted", "pending"} & set(rows.values())
        assert not leftovers(out)
    else:
        assert proc.returncode == -signal.SIGKILL
    done_before = {p.name for p in out.glob("*.csv") if record_path(p).exists()}
    assert "1.csv" in done_before and len(done_before) < 3
    # the workers of a killed batch do not live on
    t0 = time.monotonic()
    while any(_alive(p) for p in workers) and time.monotonic() - t0 < 30:
        time.sleep(0.2)
    assert not any(_alive(p) for p in workers)
    # run again: the rest is made, the finished ones are skipped and reported
    proc = _start_batch(inputs, out)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    assert f"{len(done_before)} input(s) skipped" in stderr
    rows = {Path(r["input"]).name: r["status"] for r in csv.DictReader(open(out / SUMMARY_NAME))}
    assert {n for n, s in rows.items() if s == "skipped"} == {n.replace(".csv", ".avi") for n in done_before}
    assert all(s in ("skipped", "done") for s in rows.values())
    assert not leftovers(out)
    single = single_run(inputs / "3.avi", tmp_path / "single3.csv", "--fast")
    assert (out / "3.csv").read_bytes() == single


@pytest.mark.slow
def test_a_worker_killed_mid_input_is_replaced(study, tmp_path):
    """A worker process that dies (here: SIGKILL while it processes 2.avi) breaks the
    pool: a new one is started, the input that was running is run again alone, the
    others go on, and every output is as a single run's."""
    inputs = _slow_study(tmp_path, study)
    out = tmp_path / "out"
    proc = _start_batch(inputs, out)
    _wait_for(record_path(out / "1.csv"), proc)  # the one worker is now on 2.avi
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
    workers = [int(p) for p in children.stdout.split()
               if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert len(workers) == 1
    os.kill(workers[0], signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    assert "a batch worker died" in stderr
    rows = {Path(r["input"]).name: r["status"] for r in csv.DictReader(open(out / SUMMARY_NAME))}
    assert rows == {"1.avi": "done", "2.avi": "done", "3.avi": "done"}
    assert (out / "2.csv").read_bytes() == single_run(inputs / "2.avi", tmp_path / "s2.csv", "--fast")
    assert not leftovers(out)


class WorkerBomb(os.PathLike):
    """An input that kills the worker process opening it, as a crash inside a decoder
    would (pickled by reference: the spawned worker imports this module)."""

    def __fspath__(self) -> str:
        os._exit(3)


def test_an_input_that_kills_its_worker_fails_alone(study, tmp_path):
    """Run on two workers, the input that kills its worker fails with the worker's death
    as its error; the inputs beside it, lost with the broken pool, are done."""
    import threading

    from pyfaceau.batch.local import WORKER_DIED, run_local
    from pyfaceau.batch.records import Status
    from pyfaceau.batch.worker import BatchTask

    clip = cut_clip(study / "a" / "clip.avi", tmp_path / "ok.avi", 3)
    options = Options(threads=1)
    tasks = [
        BatchTask(i, WorkerBomb() if i == 1 else str(clip), str(tmp_path / f"{i}.csv"), options)
        for i in range(4)
    ]
    results = {r.index: r for r in run_local(tasks, 2, on_frames=lambda *a: None,
                                             stop=threading.Event())}
    assert sorted(results) == [0, 1, 2, 3]
    assert results[1].status is Status.FAILED and results[1].error == WORKER_DIED
    assert [results[i].status for i in (0, 2, 3)] == [Status.DONE] * 3
    made = {(tmp_path / f"{i}.csv").read_bytes() for i in (0, 2, 3)}
    assert len(made) == 1 and not (tmp_path / "1.csv").exists()


# -- a real Dask cluster -------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ClusterAddress(str):
    """The scheduler's address, with the cluster's processes (scheduler first)."""

    def __new__(cls, address: str, processes: list) -> "ClusterAddress":
        self = super().__new__(cls, address)
        self.processes = processes
        return self


@pytest.fixture
def dask_cluster(tmp_path):
    """A ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1."""
    pytest.importorskip("distributed")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    procs = [subprocess.Popen(
        [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        stdout=open(logs / "scheduler.log", "w"), stderr=subprocess.STDOUT,
    )]
    try:
        from distributed import Client

        client = Client(address, timeout="60s")
        for i in range(2):
            procs.append(subprocess.Popen(
                [str(DASK), "worker", address, "--nthreads", "1", "--no-dashboard",
                 "--host", "127.0.0.1", "--name", f"w{i}"],
                stdout=open(logs / f"worker{i}.log", "w"), stderr=subprocess.STDOUT,
            ))
        client.wait_for_workers(2, timeout=120)
        client.close()
        yield ClusterAddress(address, procs)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.mark.slow
def test_batch_on_a_dask_cluster(study, tmp_path, dask_cluster):
    out = tmp_path / "out"
    args = ["batch", str(study), "--out-dir", str(out), "--scheduler", dask_cluster,
            "--hog", "--no-progress"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1, r.output
    rows = summary_rows(out, study)
    assert rows["bad.avi"]["status"] == "failed" and "cannot be decoded" in rows["bad.avi"]["error"]
    for rel, out_rel in (("a/clip.avi", "a/clip.csv"), ("b/clip.avi", "b/clip.csv"), ("seq", "seq.csv")):
        assert rows[rel]["status"] == "done"
        hog = (tmp_path / "single" / out_rel).with_suffix(".hog")
        single = single_run(study / rel, tmp_path / "single" / out_rel, "--hog", str(hog))
        assert (out / out_rel).read_bytes() == single, rel
        assert (out / out_rel).with_suffix(".hog").read_bytes() == hog.read_bytes(), rel
    # the same resume rules
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1 and "3 input(s) skipped" in r.output


def test_missing_models_stop_the_batch(study, tmp_path, monkeypatch):
    # the workers are new processes: they find the models through the environment only
    monkeypatch.setenv("PYFACEAU_MODELS", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "none"))
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["batch", str(study / "a"), str(study / "b"), "--out-dir", str(out),
                                  "--jobs", "1", "--no-progress"])
    assert r.exit_code == 2, r.output
    last = r.output.strip().splitlines()[-1]  # one line, after "processing 2 input(s) ..."
    assert last.startswith("pyfaceau: error: model file") and "not found" in last
    assert not list(out.rglob("clip.csv"))


def test_unreadable_part_is_noted_or_fails_under_strict(tmp_path):
    seq = image_folder(tmp_path / "in" / "seq", 4)
    (seq / "005.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    args = ["batch", str(seq), "--out-dir", str(out), "--fast", "--jobs", "1", "--no-progress"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    row = next(csv.DictReader(open(out / SUMMARY_NAME)))
    assert row["status"] == "done" and row["frames"] == "5" and row["faces"] == "4"
    assert row["error"].startswith("warning: ") and "005.jpg" in row["error"]
    assert f"  warning: {seq / '005.jpg'}: " in r.output and f"{seq}: {seq}" not in r.output
    # --strict: the same input fails, and the options differ: not skipped
    r = CliRunner().invoke(main, [*args, "--strict"])
    assert r.exit_code == 1, r.output
    row = next(csv.DictReader(open(out / SUMMARY_NAME)))
    assert row["status"] == "failed" and "005.jpg" in row["error"]
    assert row["error"].endswith("[--strict: stopped, nothing written]")


def test_stale_temp_files_of_a_killed_run(tmp_path):
    from pyfaceau.batch.worker import STALE_TEMP_SECONDS, stale_temp_files

    out = tmp_path / "clip.csv"
    old = tmp_path / ".clip.csv.k3j2h1.part"
    old_record = tmp_path / ".clip.csv.pyfaceau.json.x8y7.part"
    young = tmp_path / ".clip.csv.a1b2c3.part"
    other = tmp_path / ".clip2.csv.zzzz.part"
    # side outputs' folders (batch.outputs.Staged): one untouched, one whose own time is
    # old but whose HOG file is still being written (a folder's time stops changing)
    old_side, live_side = tmp_path / ".clip.csv.q9w8.part", tmp_path / ".clip.csv.r5t6.part"
    for p in (old, old_record, young, other):
        p.write_text("half")
    for folder in (old_side, live_side):
        folder.mkdir()
        (folder / "clip.hog").write_bytes(b"half")
    t = time.time() - STALE_TEMP_SECONDS - 5
    for p in (old, old_record, other, old_side, old_side / "clip.hog", live_side):
        os.utime(p, (t, t))
    assert sorted(stale_temp_files(out)) == sorted([old, old_record, old_side])


def test_batch_side_outputs_equal_single_runs(study, tmp_path):
    """--aligned, --hog, --tracked and --split: each input's files beside its CSV are
    byte-identical to a single run's --aligned DIR, --hog FILE, --tracked FILE and
    --split; a rerun skips, and makes the input again when one of them is missing or
    other side outputs are asked for; a failing input leaves none of them."""
    inputs = tmp_path / "in"
    cut_clip(study / "a" / "clip.avi", inputs / "clip.avi", 8)
    (inputs / "bad.avi").write_bytes((study / "bad.avi").read_bytes())
    out = tmp_path / "out"
    side = ["--aligned", "--hog", "--tracked", "--split"]
    args = ["batch", str(inputs), "--out-dir", str(out), "--jobs", "1", "--no-progress"]
    r = CliRunner().invoke(main, [*args, *side])
    assert r.exit_code == 1, r.output  # bad.avi failed
    single = tmp_path / "single"
    single_run(inputs / "clip.avi", single / "clip.csv", "--aligned", str(single / "al"),
               "--hog", str(single / "x.hog"), "--tracked", str(single / "t.avi"))
    r = CliRunner().invoke(main, ["process", str(inputs / "clip.avi"), "-o",
                                  str(single / "s.csv"), "--split", "--no-progress"])
    assert r.exit_code == 0, r.output  # one face: s_face0.csv only
    assert not (single / "s.csv").exists()
    assert (out / "clip.csv").read_bytes() == (single / "clip.csv").read_bytes()
    assert (out / "clip.hog").read_bytes() == (single / "x.hog").read_bytes()
    assert (out / "clip_tracked.avi").read_bytes() == (single / "t.avi").read_bytes()
    assert (out / "clip_face0.csv").read_bytes() == (single / "s_face0.csv").read_bytes()
    aligned = sorted(p.name for p in (out / "clip_aligned").iterdir())
    assert len(aligned) == 8 and aligned == sorted(p.name for p in (single / "al").iterdir())
    for name in aligned:
        assert (out / "clip_aligned" / name).read_bytes() == (single / "al" / name).read_bytes()
    assert not [p for p in out.iterdir() if p.name.startswith(("bad", "."))]  # nothing of bad.avi
    assert not leftovers(out)

    def statuses(extra):
        r = CliRunner().invoke(main, [*args, *extra])
        assert r.exit_code == 1, r.output
        return summary_rows(out, inputs)["clip.avi"]["status"]

    assert statuses(side) == "skipped"
    (out / "clip.hog").unlink()
    assert statuses(side) == "done" and (out / "clip.hog").exists()
    assert statuses(["--hog"]) == "done"  # other side outputs asked for
    assert statuses(["--hog"]) == "skipped"


def test_side_outputs_in_the_input_folder_are_not_inputs(study, tmp_path):
    """With the output folder the inputs' own, the tracked video and the folder of aligned
    faces written beside a CSV are not taken as new inputs by the next run."""
    folder = tmp_path / "in"
    cut_clip(study / "a" / "clip.avi", folder / "clip.avi", 4)
    args = ["batch", str(folder), "--out-dir", str(folder), "--tracked", "--aligned",
            "--jobs", "1", "--no-progress"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert (folder / "clip_tracked.avi").exists() and (folder / "clip_aligned").is_dir()
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0 and "1 input(s) skipped" in r.output, r.output
    assert list(summary_rows(folder, folder)) == ["clip.avi"]
    # a run without the side outputs redoes the input (its record lists none), and the
    # next run still does not take the earlier tracked video and aligned faces as inputs
    for _ in range(2):
        r = CliRunner().invoke(main, args[:4] + args[6:])
        assert r.exit_code == 0, r.output
        assert list(summary_rows(folder, folder)) == ["clip.avi"]
    # nor does a pattern that matches every file: the CSVs, records and summary are the
    # batch's own, and a repeated command skips its input
    for pattern in ("*", "clip*"):
        r = CliRunner().invoke(main, args[:4] + ["--pattern", pattern, "--jobs", "1",
                                                 "--no-progress"])
        assert r.exit_code == 0 and "1 input(s) skipped" in r.output, (pattern, r.output)
        assert list(summary_rows(folder, folder)) == ["clip.avi"]
    assert sorted(p.name for p in folder.iterdir() if p.suffix == ".csv") == [
        "clip.csv", SUMMARY_NAME]


def test_a_reordered_image_folder_runs_again(tmp_path):
    """Two images of a folder swapped (names, sizes and times kept as a set): the frames
    change, so the folder's record no longer matches."""
    folder = image_folder(tmp_path / "seq", 3)
    before = input_signature(folder)
    first, last = sorted(folder.iterdir())[0], sorted(folder.iterdir())[-1]
    tmp = folder / "swap.tmp"
    first.rename(tmp)
    last.rename(first)
    tmp.rename(last)
    after = input_signature(folder)
    assert {k: after[k] for k in ("size", "mtime_ns", "files")} == {
        k: before[k] for k in ("size", "mtime_ns", "files")}
    assert after != before and input_signature(folder) == after


@pytest.mark.slow
def test_a_lost_dask_scheduler_is_one_line(study, tmp_path, dask_cluster):
    """The scheduler dies while inputs run: one line (no traceback from Dask's client),
    exit 2, the summary says which inputs are done and which are pending; a malformed
    address is one line too."""
    inputs = _slow_study(tmp_path, study)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyfaceau.cli", "batch", str(inputs), "--out-dir", str(out),
         "--scheduler", dask_cluster, "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(record_path(out / "1.csv"), proc)  # the 5-frame input done, 3.avi not yet
    dask_cluster.processes[0].kill()
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2, stderr
    lines = [line for line in stderr.splitlines() if not line.startswith("processing ")]
    assert lines == [f"pyfaceau: error: --scheduler {dask_cluster}: the cluster stopped "
                     "answering (lost the connection to the scheduler); the inputs not "
                     "finished stay pending in the summary"], stderr
    rows = summary_rows(out, inputs)
    assert "pending" in {r["status"] for r in rows.values()}
    r = CliRunner().invoke(main, ["batch", str(inputs), "--out-dir", str(out),
                                  "--scheduler", "garbage"])
    assert r.exit_code == 2 and r.output.startswith("pyfaceau: error: --scheduler garbage: not a")
