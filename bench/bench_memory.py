"""Memory against length: a long video through the CLI, and a live stream.

Usage::

    .venv/bin/python bench/bench_memory.py [--frames 3000 30000] [--stream-frames 6000]
        [--mode fast|faithful]

1. ``pyfaceau VIDEO -o OUT.csv`` (``--fast`` by default) on videos of each length in
   ``--frames`` made from ``2015-10-15-15-14.avi`` (played forwards and backwards, MJPG,
   as ``bench_openface.py`` makes them): the process's peak memory (max RSS), and the bytes
   per frame it adds between the lengths.
2. ``Pipeline.open_stream()`` fed ``--stream-frames`` frames (the same video, looped):
   resident memory at frame 3,000 and at the end, and the growth per 1,000 frames after
   frame 3,000 (a stream keeps nothing per frame).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_openface import SAMPLES, SHORT_VIDEO, machine, make_long_video, timed  # noqa: E402

PYFACEAU = Path(sys.executable).parent / "pyfaceau"


def rss_mb() -> float:
    """This process's resident memory now (MB), from /proc."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def video_runs(lengths: list[int], mode: str, folder: Path) -> None:
    env = dict(os.environ)
    print(f"\n1. pyfaceau {'--fast ' if mode == 'fast' else ''}on long videos (whole process)")
    print(f"{'frames':>8} {'wall s':>8} {'max RSS MB':>11}")
    peaks = []
    for n in lengths:
        video, frames = make_long_video(SAMPLES / SHORT_VIDEO, n, folder)
        cmd = [str(PYFACEAU), str(video), "-o", str(folder / f"out{n}.csv"), "--no-progress"]
        if mode == "fast":
            cmd.append("--fast")
        t = timed(cmd, env)
        peaks.append((frames, t.max_rss_mb))
        print(f"{frames:>8} {t.wall:>8.1f} {t.max_rss_mb:>11.1f}")
    if len(peaks) >= 2:
        (f0, m0), (f1, m1) = peaks[0], peaks[-1]
        print(f"peak memory added per frame between {f0} and {f1} frames: "
              f"{(m1 - m0) * 1e6 / (f1 - f0) / 1e3:.2f} KB")


def stream_run(n_frames: int, mode: str) -> None:
    import cv2

    from pyfaceau import Options, Pipeline

    options = Options.fast() if mode == "fast" else Options.faithful()
    def frames():  # the video, looped, decoded as it goes (nothing kept here)
        while True:
            cap = cv2.VideoCapture(str(SAMPLES / SHORT_VIDEO))
            while True:
                ok, img = cap.read()
                if not ok:
                    break
                yield img
            cap.release()

    print(f"\n2. Pipeline.open_stream(), {n_frames} frames ({mode})")
    marks = {}
    with Pipeline(options) as pipe:
        stream = pipe.open_stream()
        for i, img in zip(range(n_frames), frames()):
            stream.add(img, timestamp=i / 30.0)
            if i + 1 in (1000, 3000, n_frames):
                marks[i + 1] = rss_mb()
    for k, v in sorted(marks.items()):
        print(f"  after {k:>6} frames: resident {v:8.1f} MB")
    if 3000 in marks and n_frames > 3000:
        growth = (marks[n_frames] - marks[3000]) / ((n_frames - 3000) / 1000)
        print(f"  growth after frame 3000: {growth:.3f} MB per 1000 frames")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[3000, 30000])
    ap.add_argument("--stream-frames", type=int, default=6000)
    ap.add_argument("--mode", choices=["fast", "faithful"], default="fast")
    args = ap.parse_args()
    print(machine())
    print("command:", " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]))
    with tempfile.TemporaryDirectory(prefix="pyfaceau-mem-") as tmp:
        video_runs(args.frames, args.mode, Path(tmp))
    if args.stream_frames:
        stream_run(args.stream_frames, args.mode)
    print(f"(this process's own peak: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3:.0f} MB)")


if __name__ == "__main__":
    main()
