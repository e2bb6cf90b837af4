"""pyfaceau against OpenFace 2.2, whole process, same machine, same run.

Usage::

    .venv/bin/python bench/bench_openface.py [--runs 3] [--videos NAME_OR_PATH ...]
        [--long-frames 5000] [--threads N] [--no-openface] [--keep DIR]

Times, alternately and as whole processes (start to exit, including imports, model
loading and writing the CSV):

- OpenFace 2.2 ``FeatureExtraction`` via ``../shared/openface-bin/run`` with
  ``-2Dfp -3Dfp -pdmparams -pose -aus -gaze`` (every column pyfaceau writes; skipped, with
  a note, when the programs are absent or cannot run here),
- ``pyfaceau INPUT -o OUT.csv`` (faithful path) and ``pyfaceau INPUT -o OUT.csv --fast``
  (``--threads N`` added when given),

on the 30-frame ``image_sequence`` (start-up), ``2015-10-15-15-14.avi`` (842 frames) and a
long video the benchmark makes itself (``--long-frames``, default 5,000 frames or more:
``2015-10-15-15-14.avi`` played forwards and backwards, re-encoded as MJPG at quality 95 in
a temporary folder, so that tracking never jumps). Per input and program it prints the
median of ``--runs`` runs of wall time, CPU time (user + system of the process and its
children, from ``os.wait4``) and peak memory (max RSS), the ratio to OpenFace's wall time
(``x OpenFace`` > 1: faster than OpenFace), and the steady-state frames/s (frames added
by the long video over the time they added). The model cache is warmed by one untimed
run of each pyfaceau mode first (see the README: the first run after installation is
slower). The machine (CPU, cores this process may use, load average) is printed first.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLES = SHARED / "samples"
OPENFACE_RUN = SHARED / "openface-bin" / "run"
PYFACEAU = Path(sys.executable).parent / "pyfaceau"

#: OpenFace's outputs matching pyfaceau's columns (FeatureExtraction's options).
OPENFACE_OUTPUTS = ["-2Dfp", "-3Dfp", "-pdmparams", "-pose", "-aus", "-gaze"]
SHORT_VIDEO = "2015-10-15-15-14.avi"
START_UP_INPUT = "image_sequence"


@dataclass
class Timing:
    wall: float
    cpu: float
    max_rss_mb: float


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"{model}, {os.cpu_count()} logical CPUs ({usable} usable by this process), "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
            f"load average {load}")


def timed(cmd: list[str], env: dict[str, str]) -> Timing:
    """Run ``cmd`` to its end; wall, CPU (user + system, with its children) and max RSS."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:  # interrupted: do not leave the program running
        proc.kill()
        proc.wait()
        raise
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}: {err[-500:]}")
    # Linux reports ru_maxrss in KiB (the largest of the process and its waited children)
    return Timing(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0)


def make_long_video(src: Path, n_frames: int, folder: Path) -> tuple[Path, int]:
    """``src`` played forwards, backwards, forwards ... until ``n_frames``, as MJPG.

    Made in a child process: the decoded frames must not stay in this process, whose
    memory the timed programs would otherwise inherit in their max RSS (Linux counts a
    child's memory before ``exec``).
    """
    out = folder / f"long_{n_frames}.avi"
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"import bench_openface as b; "
            f"print(b._write_long_video({str(src)!r}, {n_frames}, {str(out)!r}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out, int(r.stdout.split()[-1])


def _write_long_video(src: str, n_frames: int, out: str) -> int:
    import cv2

    cap = cv2.VideoCapture(src)
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    cap.release()
    if not frames:
        raise RuntimeError(f"{src}: no frames decoded")
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(out, cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 95)
    written, forward = 0, True
    while written < n_frames:
        for img in frames if forward else frames[::-1]:
            writer.write(img)
            written += 1
        forward = not forward
    writer.release()
    return written


def openface_ready() -> tuple[bool, str]:
    if not OPENFACE_RUN.is_file():
        return False, f"{OPENFACE_RUN} not found"
    try:
        r = subprocess.run([str(OPENFACE_RUN), "FeatureExtraction", "-h"], capture_output=True,
                           timeout=60, text=True)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    if r.returncode == 2 and "missing" in r.stderr:
        return False, r.stderr.strip()
    return True, ""


def count_rows(csv: Path) -> int:
    with open(csv, "rb") as f:
        return max(0, sum(1 for _ in f) - 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="timed runs per input and program")
    ap.add_argument("--videos", nargs="*", default=None,
                    help=f"inputs (names in ../shared/samples or paths); default: "
                         f"{START_UP_INPUT} {SHORT_VIDEO} and the long video")
    ap.add_argument("--long-frames", type=int, default=5000,
                    help="length of the long video made from the short one (0: none)")
    ap.add_argument("--threads", type=int, default=None,
                    help="passed to pyfaceau as --threads N (when given)")
    ap.add_argument("--modes", nargs="*", default=["faithful", "fast"],
                    choices=["faithful", "fast"], help="pyfaceau modes to time")
    ap.add_argument("--no-openface", action="store_true", help="do not time OpenFace")
    ap.add_argument("--keep", type=Path, default=None, help="keep outputs in this folder")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="another pyfaceau executable (e.g. an older checkout's) timed the "
                         "same way, labelled 'baseline'")
    args = ap.parse_args()
    # a terminated benchmark stops the program it is timing and removes its temporary files
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    env = dict(os.environ)
    env.setdefault("PYFACEAU_MODELS", os.pathsep.join(
        [str(SHARED / "openface-2.2"), str(SHARED / "models")]))
    print(f"machine: {machine()}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")

    work = Path(tempfile.mkdtemp(prefix="bench_openface."))
    out_root = args.keep or work
    out_root.mkdir(parents=True, exist_ok=True)
    try:
        inputs: list[tuple[str, Path]] = []
        names = args.videos if args.videos is not None else [START_UP_INPUT, SHORT_VIDEO]
        for name in names:
            p = Path(name) if Path(name).exists() else SAMPLES / name
            if not p.exists():
                sys.exit(f"bench_openface: input {name} not found")
            inputs.append((p.name, p))
        long_name = None
        if args.videos is None and args.long_frames > 0:
            t0 = time.perf_counter()
            long_path, n = make_long_video(SAMPLES / SHORT_VIDEO, args.long_frames, work)
            long_name = long_path.name
            inputs.append((long_name, long_path))
            print(f"long video: {n} frames ({SHORT_VIDEO} forwards and backwards, MJPG q95), "
                  f"made in {time.perf_counter() - t0:.1f} s")

        programs: dict[str, callable] = {}
        use_openface = not args.no_openface
        if use_openface:
            ok, why = openface_ready()
            if not ok:
                print(f"OpenFace not timed: {why}")
                use_openface = False
        if use_openface:
            def openface_cmd(inp: Path, out: Path) -> list[str]:
                src = ["-fdir", str(inp)] if inp.is_dir() else ["-f", str(inp)]
                return [str(OPENFACE_RUN), "FeatureExtraction", *src, "-out_dir", str(out),
                        *OPENFACE_OUTPUTS]
            programs["OpenFace 2.2 FeatureExtraction"] = openface_cmd
        threads = ["--threads", str(args.threads)] if args.threads is not None else []
        executables = [("pyfaceau", PYFACEAU, threads)]
        if args.baseline is not None:
            executables.append(("baseline pyfaceau", args.baseline, []))
        for mode in args.modes:
            flag = ["--fast"] if mode == "fast" else []
            for name, exe, extra in executables:
                def py_cmd(inp: Path, out: Path, flag=flag, exe=exe, extra=extra) -> list[str]:
                    return [str(exe), str(inp), "-o", str(out / f"{inp.stem}.csv"),
                            "--no-progress", *flag, *extra]
                programs[f"{name}{' --fast' if flag else ''}"] = py_cmd

        for label, make in programs.items():
            example = make(Path("INPUT"), Path("OUT"))
            print(f"  {label}: {' '.join(example)}")

        # warm the model and numba caches (not timed)
        for label, make in programs.items():
            if "pyfaceau" in label:
                d = work / "warm"
                d.mkdir(exist_ok=True)
                timed(make(SAMPLES / START_UP_INPUT, d), env)

        results: dict[tuple[str, str], list[Timing]] = {}
        rows: dict[tuple[str, str], int] = {}
        for run in range(args.runs):
            for name, path in inputs:
                for label, make in programs.items():  # alternating programs
                    out = out_root / f"run{run}" / label.replace(" ", "_") / name
                    out.mkdir(parents=True, exist_ok=True)
                    t = timed(make(path, out), env)
                    results.setdefault((name, label), []).append(t)
                    csvs = sorted(out.glob("*.csv"))
                    rows[(name, label)] = count_rows(csvs[0]) if csvs else 0
                    print(f"run {run + 1}/{args.runs} {name:28s} {label:32s} "
                          f"{t.wall:7.2f} s wall {t.cpu:7.2f} s CPU {t.max_rss_mb:7.0f} MB",
                          flush=True)

        print()
        print(f"medians of {args.runs} runs; x OpenFace = OpenFace's wall time / this wall time")
        header = (f"| input | frames | program | wall s | CPU s | cores used | max RSS MB "
                  f"| x OpenFace |")
        print(header)
        print("|" + "---|" * 8)
        median: dict[tuple[str, str], Timing] = {}
        for name, _ in inputs:
            of = None
            for label in programs:
                ts = results[(name, label)]
                m = Timing(statistics.median(t.wall for t in ts),
                           statistics.median(t.cpu for t in ts),
                           max(t.max_rss_mb for t in ts))
                median[(name, label)] = m
                if label.startswith("OpenFace"):
                    of = m
                ratio = f"{of.wall / m.wall:.2f}x" if of is not None else "-"
                print(f"| {name} | {rows[(name, label)]} | {label} | {m.wall:.2f} | {m.cpu:.2f} "
                      f"| {m.cpu / m.wall:.2f} | {m.max_rss_mb:.0f} | {ratio} |")
        if long_name is not None:
            print()
            print(f"steady state (frames/s = extra frames of {long_name} over {SHORT_VIDEO} "
                  f"/ the extra wall time):")
            of_fps = None
            for label in programs:
                a, b = median[(SHORT_VIDEO, label)], median[(long_name, label)]
                extra = rows[(long_name, label)] - rows[(SHORT_VIDEO, label)]
                dt = b.wall - a.wall
                fps = extra / dt if dt > 0 else float("nan")
                if label.startswith("OpenFace"):
                    of_fps = fps
                ratio = f"  {fps / of_fps:.2f}x OpenFace" if of_fps else ""
                print(f"  {label:32s} {fps:7.1f} frames/s{ratio}")
        print(f"\nmachine at the end: load average "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
