"""Speed with 1, 2 and 3 faces (``max_faces``), against single-face runs of each face.

Usage::

    .venv/bin/python bench/bench_multiface.py [--mode faithful|fast|both] [--frames N] [--repeat R]

Composes, in a temporary folder, videos of 1, 2 and 3 interview clips side by side
(320 x 240 each, lossless; ``tests/multiface_videos.py``) and the single tiles. For each
number of faces n it runs, alternately and ``R`` times, end to end from the video file with
the models loaded: (m) ``max_faces = 3`` on the video of n faces (so with fewer than 3
faces the new-face scan keeps running), and (s) ``max_faces = 1`` on each of the n tile
videos, one after the other. Prints the median wall and CPU
(``time.process_time``) milliseconds per frame, frames per second, and the ratio
(m) / (s): the cost of n faces in one video against n single-face runs of the same faces
(1: an extra face costs what a single-face run of it costs; ``docs/multiface.md`` has the
measured ratios, 1.25-1.32 with the new-face scan). One thread
(``threads=1``) so CPU and wall time measure the same work on a shared machine.

The video of n faces is n tiles wide, so its new-face scan (a full-image detection every
4th frame while a slot is free) grows with n as well. A second table therefore keeps the
frame size: the three tiles side by side with the tiles after the n-th black (n = 0..3),
``max_faces = 3``, and gives each extra face's cost, CPU(n) - CPU(n - 1), beside the CPU of
a single-face run of that face's tile (the scan and the decoding of the wide frame are
the same in both terms, so they cancel).
"""

from __future__ import annotations

import argparse
import os
import statistics
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
sys.path.insert(0, str(REPO / "tests"))

import pyfaceau  # noqa: E402
from multiface_videos import compose, write_lossless  # noqa: E402

CLIPS = (
    "0188_03_021_al_pacino.avi",
    "0244_03_004_anderson_cooper.avi",
    "1878_01_002_vladimir_putin.avi",
)


def timed(pipe: pyfaceau.Pipeline, video: Path) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds, rows of one whole-video run."""
    t0, c0 = time.perf_counter(), time.process_time()
    df = pipe.process(video)
    return time.perf_counter() - t0, time.process_time() - c0, int(df.success.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=["faithful", "fast", "both"], default="both")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    modes = ["faithful", "fast"] if args.mode == "both" else [args.mode]
    tmp = Path(tempfile.mkdtemp(prefix="bench_multiface_"))
    frames, width = compose(CLIPS, args.frames)
    n_frames = len(frames)
    videos, tiles = {}, []
    for n in (1, 2, 3):
        videos[n] = tmp / f"faces{n}.avi"
        write_lossless(videos[n], [f[:, : n * width] for f in frames])
    fixed = {}
    for n in range(4):  # the same 3-tile frame, tiles n.. black
        fixed[n] = tmp / f"fixed{n}.avi"
        write_lossless(fixed[n], [_black_from(f, n * width) for f in frames])
    for t in range(3):
        tiles.append(tmp / f"tile{t}.avi")
        write_lossless(tiles[-1], [f[:, t * width : (t + 1) * width] for f in frames])
    print(
        f"{n_frames} frames of {len(CLIPS)} clips ({width} px wide each), median of "
        f"{args.repeat}, threads 1, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f}"
    )
    for mode in modes:
        options = pyfaceau.Options.faithful() if mode == "faithful" else pyfaceau.Options.fast()
        single = pyfaceau.Pipeline(options, threads=1).load()
        multi = pyfaceau.Pipeline(options, threads=1, max_faces=3).load()
        timed(single, tiles[0])  # warm-up: numba kernels, first-call costs
        print(f"\nmode {mode}")
        print(f"{'faces':>5} {'fps':>8} {'wall ms':>9} {'cpu ms':>8} {'found':>6} "
              f"{'singles cpu ms':>15} {'ratio cpu':>10} {'ratio wall':>11}")
        for n in (1, 2, 3):
            pipe = multi
            mw, mc, sw, sc = [], [], [], []
            found = 0
            for _ in range(args.repeat):
                w, c, found = timed(pipe, videos[n])
                mw.append(w)
                mc.append(c)
                w = c = 0.0
                for t in range(n):
                    tw, tc, _ = timed(single, tiles[t])
                    w, c = w + tw, c + tc
                sw.append(w)
                sc.append(c)
            w, c = statistics.median(mw), statistics.median(mc)
            s_w, s_c = statistics.median(sw), statistics.median(sc)
            print(
                f"{n:>5} {n_frames / w:>8.1f} {1e3 * w / n_frames:>9.2f} {1e3 * c / n_frames:>8.2f}"
                f" {found:>6} {1e3 * s_c / n_frames:>15.2f} {c / s_c:>10.3f} {w / s_w:>11.3f}"
            )
        print("(n faces: max_faces=3 on n tiles side by side; singles: max_faces=1 on each "
              "of the n tiles; ratio = n faces / singles)")

        print(f"\nmode {mode}, the same {len(CLIPS)}-tile frame, tiles after the n-th black")
        print(f"{'faces':>5} {'cpu ms':>8} {'extra face cpu ms':>18} {'its single run cpu ms':>22}"
              f" {'ratio':>6}")
        previous = None
        for n in range(4):
            mc, sc = [], []
            for _ in range(args.repeat):
                mc.append(timed(multi, fixed[n])[1])
                if n:
                    sc.append(timed(single, tiles[n - 1])[1])
            c = 1e3 * statistics.median(mc) / n_frames
            if previous is None:
                print(f"{n:>5} {c:>8.2f}")
            else:
                s_c = 1e3 * statistics.median(sc) / n_frames
                extra = c - previous
                print(f"{n:>5} {c:>8.2f} {extra:>18.2f} {s_c:>22.2f} {extra / s_c:>6.3f}")
            previous = c
        print("(extra face cpu = cpu(n) - cpu(n - 1); ratio = extra face / its single run)")


def _black_from(frame, x: int):
    """``frame`` with every column from ``x`` on black."""
    out = frame.copy()
    out[:, x:] = 0
    return out


if __name__ == "__main__":
    main()
