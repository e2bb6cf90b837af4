"""Throughput of ``pyfaceau batch`` with one worker against the default, and a worker's memory.

Usage::

    .venv/bin/python bench/bench_batch.py [--repeat 3] [--fast] [--long 0] [INPUT ...]

Runs ``pyfaceau batch INPUTS --out-dir TMP --force`` as a subprocess, alternately with
``--jobs 1 --threads 1`` and with the default (jobs x threads = the cores), ``--repeat``
times each; prints the median wall time, frames per second, the speed-up and the CPU time
(user + system of the batch and its workers), and the load average before and after (the
machine may be shared: compare runs made together). Default inputs: every sample video.

``--long K`` then runs one default batch over K copies of the inputs (symbolic links,
so every copy is a new input) and samples each worker's resident memory (``VmRSS``) every
half second: the sample a quarter into the run, the last one and the maximum per worker
show whether memory grows over a long batch.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
os.environ.setdefault(
    "PYFACEAU_MODELS",
    os.pathsep.join([str(SHARED / "openface-2.2"), str(SHARED / "models")]),
)
PYFACEAU = Path(sys.executable).with_name("pyfaceau")
SAMPLE_VIDEOS = sorted(
    p for p in (SHARED / "samples").iterdir() if p.suffix in (".avi", ".wmv")
)


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_batch(inputs: list[str], out: Path, extra: list[str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and frames of one batch run."""
    cpu0, t0 = children_cpu(), time.perf_counter()
    r = subprocess.run(
        [str(PYFACEAU), "batch", *inputs, "--out-dir", str(out), "--force", "--no-progress",
         *extra],
        capture_output=True, text=True,
    )
    wall, cpu = time.perf_counter() - t0, children_cpu() - cpu0
    if r.returncode != 0:
        sys.exit(f"batch failed ({r.returncode}): {r.stderr[-2000:]}")
    frames = 0
    with open(out / "pyfaceau-batch.csv", newline="") as f:
        for row in csv.DictReader(f):
            frames += int(row["frames"] or 0)
    return wall, cpu, frames


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def worker_pids(pid: int) -> list[int]:
    """The batch's worker processes (not multiprocessing's resource tracker)."""
    r = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    pids = []
    for p in r.stdout.split():
        try:
            cmd = Path(f"/proc/{p}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmd and b"resource_tracker" not in cmd:
            pids.append(int(p))
    return pids


def long_batch(inputs: list[str], copies: int, extra: list[str], tmp: Path) -> None:
    links = tmp / "long"
    for k in range(copies):
        d = links / f"copy{k:03d}"
        d.mkdir(parents=True)
        for i, p in enumerate(inputs):
            (d / f"{i:03d}-{Path(p).name}").symlink_to(Path(p).resolve())
    out = tmp / "long-out"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [str(PYFACEAU), "batch", str(links), "--out-dir", str(out), "--no-progress", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    samples: dict[int, list[tuple[float, int]]] = {}
    while proc.poll() is None:
        for pid in worker_pids(proc.pid):
            kb = rss_kb(pid)
            if kb:
                samples.setdefault(pid, []).append((time.perf_counter() - t0, kb))
        time.sleep(0.5)
    if proc.returncode != 0:
        sys.exit(f"long batch failed: {proc.stderr.read()[-2000:] if proc.stderr else ''}")
    print(f"\nlong batch: {copies} x {len(inputs)} inputs in {time.perf_counter() - t0:.0f} s")
    print("resident memory per worker, sampled every 0.5 s; 'at 1/4': a quarter into the run "
          "(models loaded, first inputs done)")
    print("worker   samples  at 1/4 MB  last MB   max MB")
    for pid, s in samples.items():
        mbs = [kb / 1024 for _, kb in s]
        print(f"{pid:<8} {len(s):>7}  {mbs[len(mbs) // 4]:>9.0f}  {mbs[-1]:>7.0f}  {max(mbs):>7.0f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("inputs", nargs="*", default=[str(p) for p in SAMPLE_VIDEOS])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--fast", action="store_true", help="the fast path (default: faithful)")
    ap.add_argument("--long", type=int, default=0, metavar="K",
                    help="then a default batch over K copies of the inputs, memory sampled")
    args = ap.parse_args(argv)
    extra = ["--fast"] if args.fast else []
    modes = {"--jobs 1 --threads 1": ["--jobs", "1", "--threads", "1"], "default": []}
    load0 = os.getloadavg()
    results: dict[str, list[tuple[float, float, int]]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            for name, flags in modes.items():  # alternately: the load is shared fairly
                res = run_batch(args.inputs, Path(tmp) / f"out{i}", flags + extra)
                results[name].append(res)
                print(f"run {i + 1} {name:>20}: {res[0]:6.1f} s wall, {res[1]:6.1f} s CPU, "
                      f"{res[2] / res[0]:6.1f} frames/s", flush=True)
        load1 = os.getloadavg()
        print(f"\n{len(args.inputs)} inputs, path {'fast' if args.fast else 'faithful'}, "
              f"{os.cpu_count()} cores; load average {load0[0]:.1f} before, {load1[0]:.1f} after")
        print("mode                    median wall   frames/s   median CPU")
        walls = {}
        for name, rs in results.items():
            wall = statistics.median(r[0] for r in rs)
            cpu = statistics.median(r[1] for r in rs)
            walls[name] = wall
            print(f"{name:<22} {wall:>10.1f} s {rs[0][2] / wall:>10.1f} {cpu:>10.1f} s")
        print(f"speed-up of the default: {walls['--jobs 1 --threads 1'] / walls['default']:.2f}x")
        if args.long:
            long_batch(args.inputs, args.long, extra, Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
