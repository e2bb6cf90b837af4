"""Speed of the fast path on one video: decoding, landmarks, refinement, AU back end.

Usage::

    .venv/bin/python bench/bench_fast.py [VIDEO] [--frames N] [--threads T] [--no-backend]

Runs, in one process and on the same frames, end to end from the video file: (a) decoding
only; the front end (b) without refinement, (c) with the default refinement (tracked with
OpenFace's CLNF), (c2) with CLNF and its part models, (s) with the targeted SVR refinement
of 9 landmarks, (s2) the same followed by a PDM fit; and, with the AU back end, (B), (C)
and (S): (b), (c) and (s) plus the AUs, i.e. ``pyfaceau VIDEO --fast`` with
``--no-refine``, the default and ``--refine svr``. Prints fps, ms/frame and the ratios
side by side, and each refinement's cost: the fraction of the unrefined path's speed it
loses, ``1 - fps(refined) / fps(unrefined)``, end to end with the AUs.
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
from pyfaceau.pipeline.session import single_threaded_blas  # noqa: E402
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
    shared = {"detector": fe_plain.detector, "landmarker": fe_plain.landmarker}
    fe_clnf = FastLandmarkFrontEnd(**shared, refine="clnf")
    fe_parts = FastLandmarkFrontEnd(
        **shared, refine="clnf", clnf=fe_clnf.clnf, clnf_hierarchical=True
    )
    fe_svr = FastLandmarkFrontEnd(**shared, refine=True)
    fe_svr_pdm = FastLandmarkFrontEnd(**shared, refine=TargetedCLNFRefiner(pdm_constrain=True))
    front_ends = {
        "(b) front end, no refinement": fe_plain,
        "(c) front end, CLNF refinement (default)": fe_clnf,
        "(c2) front end, CLNF + part models": fe_parts,
        "(s) front end, SVR refinement": fe_svr,
        "(s2) front end, SVR refinement + PDM fit": fe_svr_pdm,
    }
    modes: dict[str, object] = {"(a) decode only": lambda f: None}
    resets: dict[str, object] = {}
    for name, fe in front_ends.items():
        modes[name] = lambda f, fe=fe: fe.track(f.image)
        resets[name] = fe.reset
    if not args.no_backend:
        from pyfaceau.pipeline.backend import AUBackend

        backend = AUBackend()
        state = {}

        def with_backend_of(fe):
            def reset_backend() -> None:
                fe.reset()
                state["s"] = backend.new_session(source.width, source.height)

            def with_backend(f) -> None:
                state["s"].add(f, fe.track(f.image))

            return reset_backend, with_backend

        for name, fe in (
            ("(B) --fast --no-refine, with AUs", fe_plain),
            ("(C) --fast (CLNF refinement), with AUs", fe_clnf),
            ("(S) --fast --refine svr, with AUs", fe_svr),
        ):
            resets[name], modes[name] = with_backend_of(fe)

    # BLAS single-threaded, as pyfaceau runs (pyfaceau.pipeline.session.process)
    with single_threaded_blas():
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
    print(f"{'mode':42s} {'fps':>8s} {'ms/frame':>9s} {'extra ms':>9s} {'vs decode':>10s}")
    for name, (dt, nn) in results.items():
        ms = 1e3 * dt / nn
        print(f"{name:42s} {nn / dt:8.1f} {ms:9.2f} {ms - 1e3 * dec_t / n:9.2f} "
              f"{dt / dec_t:9.2f}x")

    def cost(refined: str, plain: str) -> str:
        loss = 1.0 - results[plain][0] / results[refined][0]
        return f"{100 * loss:.1f}% ({1e3 * (results[refined][0] - results[plain][0]) / n:.2f} ms/frame)"

    print("refinement cost = speed lost against the unrefined path, 1 - fps(refined) / fps(unrefined):")
    if "(C) --fast (CLNF refinement), with AUs" in results:
        print(f"  end to end with AUs: CLNF (default) "
              f"{cost('(C) --fast (CLNF refinement), with AUs', '(B) --fast --no-refine, with AUs')}, "
              f"SVR {cost('(S) --fast --refine svr, with AUs', '(B) --fast --no-refine, with AUs')}")
    print(f"  front end only:      CLNF (default) "
          f"{cost('(c) front end, CLNF refinement (default)', '(b) front end, no refinement')}, "
          f"SVR {cost('(s) front end, SVR refinement', '(b) front end, no refinement')}")
    print(f"front-end stats (c), all runs: {fe_clnf.stats}")
    print(f"front-end stats (s), all runs: {fe_svr.stats}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
