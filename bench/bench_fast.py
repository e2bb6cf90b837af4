"""Speed of the fast path on one video: decoding, landmarks, refinement, AU back end.

Usage::

    .venv/bin/python bench/bench_fast.py [VIDEO] [--frames N] [--threads T] [--no-backend]

Runs, in one process and on the same frames, end to end from the video file:
(a) decoding only, (b) fast front end without refinement, (c) with the targeted
refinement, (c2) with refinement and its PDM fit (``pdm_constrain=True``), (e) tracked
with CLNF (``refine="clnf"``) and (e2) the same with CLNF's part models, and, when
``pyfaceau.pipeline.backend`` is importable, (d) (c) plus the AU back end and (f) (e)
plus the AU back end. Prints fps, ms/frame and the ratios side by side, and the
refinement's cost relative to (b).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
os.environ.setdefault(
    "PYFACEAU_MODELS",
    os.pathsep.join([str(SHARED / "openface-2.2"), str(SHARED / "models")]),
)

from pyfaceau.pipeline.fast import FastLandmarkFrontEnd  # noqa: E402
from pyfaceau.pipeline.sources import open_source  # noqa: E402
from pyfaceau.refinement import TargetedCLNFRefiner  # noqa: E402


def run(source, n_frames: int, work) -> tuple[float, int]:
    """Seconds and frames for decoding ``n_frames`` frames and calling ``work`` on each."""
    t0 = time.perf_counter()
    n = 0
    for frame in source:
        if n >= n_frames:
            break
        work(frame)
        n += 1
    return time.perf_counter() - t0, n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video", nargs="?", default=str(SHARED / "samples" / "2015-10-15-15-14.avi"))
    ap.add_argument("--frames", type=int, default=10**9)
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    ap.add_argument("--no-backend", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="runs per mode; the fastest is kept")
    args = ap.parse_args(argv)

    source = open_source(args.video)
    fe_plain = FastLandmarkFrontEnd(refine=False, intra_op_threads=args.threads)
    fe_ref = FastLandmarkFrontEnd(
        detector=fe_plain.detector, landmarker=fe_plain.landmarker, refine=True
    )
    fe_pdm = FastLandmarkFrontEnd(
        detector=fe_plain.detector,
        landmarker=fe_plain.landmarker,
        refine=TargetedCLNFRefiner(pdm_constrain=True),
    )
    fe_clnf = FastLandmarkFrontEnd(
        detector=fe_plain.detector, landmarker=fe_plain.landmarker, refine="clnf"
    )
    fe_parts = FastLandmarkFrontEnd(
        detector=fe_plain.detector,
        landmarker=fe_plain.landmarker,
        refine="clnf",
        clnf=fe_clnf.clnf,
        clnf_hierarchical=True,
    )
    modes: dict[str, object] = {
        "(a) decode only": lambda f: None,
        "(b) fast, no refinement": lambda f: fe_plain.track(f.image),
        "(c) fast + refinement": lambda f: fe_ref.track(f.image),
        "(c2) fast + refinement + PDM fit": lambda f: fe_pdm.track(f.image),
        "(e) fast, CLNF tracking": lambda f: fe_clnf.track(f.image),
        "(e2) fast, CLNF tracking + parts": lambda f: fe_parts.track(f.image),
    }
    resets = {
        "(b) fast, no refinement": fe_plain.reset,
        "(c) fast + refinement": fe_ref.reset,
        "(c2) fast + refinement + PDM fit": fe_pdm.reset,
        "(e) fast, CLNF tracking": fe_clnf.reset,
        "(e2) fast, CLNF tracking + parts": fe_parts.reset,
    }
    backend = None
    if not args.no_backend:
        try:
            from pyfaceau.pipeline.backend import AUBackend

            backend = AUBackend()
        except Exception as exc:  # the back end may not be ready
            print(f"AU back end not available ({type(exc).__name__}: {exc}); skipping (d)")
    if backend is not None:
        state = {}

        def with_backend_of(fe):
            def reset_backend() -> None:
                fe.reset()
                state["s"] = backend.new_session(source.width, source.height)

            def with_backend(f) -> None:
                state["s"].add(f, fe.track(f.image))

            return reset_backend, with_backend

        try:  # the back end may still be in progress: check that a session runs
            reset_backend, with_backend = with_backend_of(fe_ref)
            reset_backend()
            run(source, 2, with_backend)
        except Exception as exc:
            print(f"AU back end not usable ({type(exc).__name__}: {exc}); skipping (d)")
        else:
            for name, fe in (
                ("(d) fast + refinement + AU back end", fe_ref),
                ("(f) fast, CLNF tracking + AU back end", fe_clnf),
            ):
                resets[name], modes[name] = with_backend_of(fe)

    # warm-up (numba compilation, onnxruntime first calls)
    for name, work in modes.items():
        if name in resets:
            resets[name]()
        run(source, 5, work)

    # Modes are interleaved and the fastest run of each is kept, so that a load change
    # on a shared machine affects every mode alike.
    results: dict[str, tuple[float, int]] = {}
    for _ in range(args.repeat):
        for name, work in modes.items():
            if name in resets:
                resets[name]()
            dt, n = run(source, args.frames, work)
            if name not in results or dt < results[name][0]:
                results[name] = (dt, n)

    dec_t, n = results["(a) decode only"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"video: {args.video} ({source.width}x{source.height}), {n} frames, "
          f"onnxruntime threads {args.threads}, best of {args.repeat}, "
          f"{os.cpu_count()} CPUs, load average {load:.2f}")
    print(f"{'mode':40s} {'fps':>8s} {'ms/frame':>9s} {'extra ms':>9s} {'vs decode':>10s}")
    for name, (dt, nn) in results.items():
        ms = 1e3 * dt / nn
        print(f"{name:40s} {nn / dt:8.1f} {ms:9.2f} {ms - 1e3 * dec_t / n:9.2f} "
              f"{dt / dec_t:9.2f}x")
    b = results["(b) fast, no refinement"][0]
    c = results["(c) fast + refinement"][0]
    b_work = b - dec_t
    print(f"refinement cost: {1e3 * (c - b) / n:.2f} ms/frame = {100 * (c - b) / b:.1f}% of (b) "
          f"end to end, {100 * (c - b) / b_work:.1f}% of (b)'s landmark work")
    if "(d) fast + refinement + AU back end" in results:
        d = results["(d) fast + refinement + AU back end"][0]
        print(f"AU back end: {1e3 * (d - c) / n:.2f} ms/frame")
    print(f"front-end stats (c), all runs: {fe_ref.stats}")
    print(f"front-end stats (e), all runs: {fe_clnf.stats}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
