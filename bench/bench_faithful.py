"""Speed of the OpenFace-faithful path beside the fast path, in one run.

Usage::

    .venv/bin/python bench/bench_faithful.py [VIDEO ...] [--frames N] [--repeat R]

For each video (default: ``default.wmv`` and ``2015-10-15-15-14.avi`` from
``../shared/samples``) runs, in one process and on the same frames, end to end from the
video file: (a) decoding only, (b) the faithful landmark front end
(:class:`~pyfaceau.pipeline.faithful.OpenFaceLandmarkFrontEnd`), (c) (b) plus the AU back
end (:class:`~pyfaceau.pipeline.backend.AUBackend`, including the end-of-video
post-processing), i.e. what ``pyfaceau VIDEO -o OUT.csv`` does minus model loading and
CSV writing, and for comparison (d) the fast landmark front end (RetinaFace + PFLD +
refinement) and (e) (d) plus the AU back end (``pyfaceau VIDEO --fast``). BLAS runs on one
thread, as in ``pyfaceau.process``. Prints frames per second, wall and CPU (``time.process_time``) milliseconds
per frame, the cost over decoding, and the ratio to decoding. For OpenFace 2.2 timed in the
same run, whole process, see ``bench/bench_openface.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
os.environ.setdefault(
    "PYFACEAU_MODELS",
    os.pathsep.join([str(SHARED / "openface-2.2"), str(SHARED / "models")]),
)

from pyfaceau.pipeline.backend import AUBackend  # noqa: E402
from pyfaceau.pipeline.fast import FastLandmarkFrontEnd  # noqa: E402
from pyfaceau.pipeline.faithful import OpenFaceLandmarkFrontEnd  # noqa: E402
from pyfaceau.pipeline.session import single_threaded_blas  # noqa: E402
from pyfaceau.pipeline.sources import open_source  # noqa: E402

DEFAULT_VIDEOS = (
    SHARED / "samples" / "default.wmv",
    SHARED / "samples" / "2015-10-15-15-14.avi",
)


def run(
    source, n_frames: int, work: Callable, done: Callable | None = None
) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and frames for decoding and ``work`` on each frame."""
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    for frame in source:
        if n >= n_frames:
            break
        work(frame)
        n += 1
    if done is not None:
        done()
    return time.perf_counter() - t0, time.process_time() - c0, n


def bench_video(path: Path, front_end: OpenFaceLandmarkFrontEnd, fast: FastLandmarkFrontEnd,
                backend: AUBackend, n_frames: int, repeat: int) -> dict[str, tuple[float, float, int]]:
    """Best (wall, cpu, frames) per mode for one video."""
    source = open_source(path)
    state: dict[str, object] = {}

    def resetter(fe, with_session: bool) -> Callable[[], None]:
        def reset() -> None:
            fe.reset()
            if with_session:
                state["session"] = backend.new_session(source.width, source.height)
        return reset

    def with_backend(fe) -> Callable:
        return lambda f: state["session"].add(f, fe.track(f.image))

    def finish() -> None:
        state["session"].finish()

    modes: dict[str, tuple[Callable | None, Callable, Callable | None]] = {
        "(a) decode only": (None, lambda f: None, None),
        "(b) faithful landmarks": (resetter(front_end, False), lambda f: front_end.track(f.image), None),
        "(c) faithful landmarks + AUs": (resetter(front_end, True), with_backend(front_end), finish),
        "(d) fast landmarks": (resetter(fast, False), lambda f: fast.track(f.image), None),
        "(e) fast landmarks + AUs": (resetter(fast, True), with_backend(fast), finish),
    }
    # Warm-up: numba compilation (cached on disk after the first run), first calls.
    for reset, work, done in modes.values():
        if reset is not None:
            reset()
        run(source, 5, work, done)
    # Modes are interleaved and the fastest run of each is kept, so that a load change
    # on a shared machine affects every mode alike.
    # Wall and CPU time are minimised separately.
    results: dict[str, tuple[float, float, int]] = {}
    for _ in range(repeat):
        for name, (reset, work, done) in modes.items():
            if reset is not None:
                reset()
            wall, cpu, n = run(source, n_frames, work, done)
            best_wall, best_cpu, _ = results.get(name, (wall, cpu, n))
            results[name] = (min(wall, best_wall), min(cpu, best_cpu), n)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("videos", nargs="*", default=[str(v) for v in DEFAULT_VIDEOS])
    ap.add_argument("--frames", type=int, default=10**9, help="frames per video (default: all)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per mode; the fastest is kept")
    args = ap.parse_args(argv)

    front_end = OpenFaceLandmarkFrontEnd()
    fast = FastLandmarkFrontEnd()
    backend = AUBackend()
    for video in args.videos:
        path = Path(video)
        with single_threaded_blas():
            results = bench_video(path, front_end, fast, backend, args.frames, args.repeat)
        source = open_source(path)
        dec_wall, _, n = results["(a) decode only"]
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"video: {path.name} ({source.width}x{source.height}), {n} frames, best of "
              f"{args.repeat}, {os.cpu_count()} CPUs, load average {load:.2f}")
        print(f"{'mode':32s} {'fps':>7s} {'ms/frame':>9s} {'cpu ms':>7s} {'extra ms':>9s} "
              f"{'vs decode':>10s}")
        for name, (wall, cpu, nn) in results.items():
            ms = 1e3 * wall / nn
            print(f"{name:32s} {nn / wall:7.1f} {ms:9.2f} {1e3 * cpu / nn:7.2f} "
                  f"{ms - 1e3 * dec_wall / n:9.2f} {wall / dec_wall:9.2f}x")
        print(f"the fast path (e) is "
              f"{results['(c) faithful landmarks + AUs'][0] / results['(e) fast landmarks + AUs'][0]:.2f}x "
              f"the faithful path (c); against OpenFace itself, whole process: "
              f"bench/bench_openface.py\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
