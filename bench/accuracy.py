"""Agreement with OpenFace 2.2 on every sample: per-video and per-AU tables (markdown).

    python bench/accuracy.py --mode faithful            # MTCNN + CLNF (default path)
    python bench/accuracy.py --mode fast                # RetinaFace + PFLD, CLNF-refined (--fast)
    python bench/accuracy.py --mode fast --refine svr   # ... SVR refinement of 9 landmarks instead
    python bench/accuracy.py --mode fast --no-refine    # PFLD alone
    python bench/accuracy.py --mode fast --refine clnf-parts  # CLNF with its part models
    python bench/accuracy.py --mode csv                 # OpenFace's landmarks (--landmarks-csv)

Needs ../shared beside the checkout (samples and reference output). Prints markdown to
stdout; ``--save DIR`` also keeps each video's CSV.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLES = SHARED / "samples"
REFERENCE = SHARED / "reference"
os.environ.setdefault(
    "PYFACEAU_MODELS", os.pathsep.join([str(SHARED / "openface-2.2"), str(SHARED / "models")])
)

from pyfaceau.evaluation import au_agreement, common_success, landmark_distances  # noqa: E402
from pyfaceau import Options, Pipeline  # noqa: E402
from pyfaceau.output.table import AU_INTENSITY_NAMES  # noqa: E402

#: Every sample with an OpenFace reference: reference stem -> input in samples/.
_INPUTS = {p.stem if p.is_file() else p.name: p.name for p in SAMPLES.iterdir()}
VIDEOS = {p.stem: _INPUTS[p.stem] for p in sorted(REFERENCE.glob("*.csv")) if p.stem in _INPUTS}
TARGET_POINTS = [17, 18, 19, 20, 21, 22, 26, 48, 54]


def load_reference(stem: str) -> pd.DataFrame:
    df = pd.read_csv(REFERENCE / f"{stem}.csv", skipinitialspace=True)
    df.columns = [c.strip() for c in df.columns]
    return df


def gaze_agreement(ours: pd.DataFrame, ref: pd.DataFrame, both: np.ndarray) -> dict[str, float]:
    """Angle between our and OpenFace's gaze vectors (both eyes), gaze-angle and eye
    landmark differences, over the frames where both succeeded."""
    angles = []
    for e in (0, 1):
        cols = [f"gaze_{e}_{a}" for a in "xyz"]
        a, b = ours.loc[both, cols].to_numpy(), ref.loc[both, cols].to_numpy()
        cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        angles.append(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
    angle = np.concatenate(angles)
    ga = np.abs(ours.loc[both, ["gaze_angle_x", "gaze_angle_y"]].to_numpy()
                - ref.loc[both, ["gaze_angle_x", "gaze_angle_y"]].to_numpy())
    xs = [f"eye_lmk_x_{i}" for i in range(56)]
    ys = [f"eye_lmk_y_{i}" for i in range(56)]
    d = np.hypot(ours.loc[both, xs].to_numpy() - ref.loc[both, xs].to_numpy(),
                 ours.loc[both, ys].to_numpy() - ref.loc[both, ys].to_numpy())
    return {
        "gaze vector median deg": float(np.median(angle)),
        "gaze vector p95 deg": float(np.percentile(angle, 95)),
        "gaze angle median deg": float(np.degrees(np.median(ga))),
        "eye lm median px": float(np.median(d)),
        "eye lm p95 px": float(np.percentile(d, 95)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["faithful", "fast", "csv"], default="faithful")
    ap.add_argument("--no-refine", action="store_true")
    ap.add_argument("--refine", choices=["clnf", "svr", "clnf-parts"], default="clnf",
                    help="with --mode fast: CLNF tracking (default, as --fast), SVR refinement "
                         "of 9 landmarks, or CLNF with its part models")
    ap.add_argument("--videos", nargs="*", default=list(VIDEOS))
    ap.add_argument("--save", type=Path, default=None)
    args = ap.parse_args()

    if args.mode == "fast":
        shared = Pipeline(Options.fast("none" if args.no_refine else args.refine))
    elif args.mode == "faithful":
        shared = Pipeline(Options.faithful())
    per_video, ours_all, ref_all = [], [], []
    gaze_rows: list[dict] = []
    for stem in args.videos:
        ref = load_reference(stem)
        pipeline = (Pipeline(Options.openface_csv(REFERENCE / f"{stem}.csv"))
                    if args.mode == "csv" else shared)
        t0 = time.perf_counter()
        ours = pipeline.process(SAMPLES / VIDEOS[stem])
        fps = len(ours) / (time.perf_counter() - t0)
        if args.mode == "csv":
            pipeline.close()
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            ours.to_csv(args.save / f"{stem}.csv", index=False)
        both = common_success(ours, ref)
        d = landmark_distances(ours, ref, both)
        d9 = landmark_distances(ours, ref, both, TARGET_POINTS)
        table = au_agreement(ours, ref, both)
        varying = table["ref_std"] > 0.05
        pose = {c: float(np.median(np.abs(ours.loc[both, c].to_numpy() - ref.loc[both, c].to_numpy())))
                for c in ["pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"]}
        per_video.append({
            "video": stem,
            "frames": len(ref),
            "success agree": float(np.mean(ours["success"].to_numpy() == ref["success"].to_numpy())),
            "lm median px": float(np.median(d)),
            "lm p95 px": float(np.percentile(d, 95)),
            "lm mean px": float(np.mean(d)),
            "9-pt mean px": float(np.mean(d9)),
            "AU r min": float(table.loc[varying, "r"].min()),
            "AU r mean": float(table.loc[AU_INTENSITY_NAMES, "r"].mean()),
            "MAE max": float(table["mae"].max()),
            "presence min": float(table["presence_agree"].min()),
            "pose T mm": max(pose["pose_Tx"], pose["pose_Ty"], pose["pose_Tz"]),
            "pose R deg": float(np.degrees(max(pose["pose_Rx"], pose["pose_Ry"], pose["pose_Rz"]))),
            "fps": fps,
        })
        if "gaze_0_x" in ours.columns:
            gaze_rows.append({"video": stem, **gaze_agreement(ours, ref, both)})
        ours_all.append(ours.loc[both].assign(frame=ours.loc[both, "frame"] + 100000 * len(ours_all)))
        ref_all.append(ref.loc[both].assign(frame=ref.loc[both, "frame"] + 100000 * len(ref_all)))
        print(f"{stem}: done ({fps:.1f} fps)", file=sys.stderr, flush=True)

    pooled = au_agreement(pd.concat(ours_all, ignore_index=True), pd.concat(ref_all, ignore_index=True))
    mode = args.mode + (" --no-refine" if args.no_refine else "")
    if args.mode == "fast" and not args.no_refine and args.refine != "clnf":
        mode += f" --refine {args.refine}"
    print(f"### Per video, mode `{mode}`\n")
    print(pd.DataFrame(per_video).to_markdown(index=False, floatfmt=".3f"))
    print(f"\n### Per AU, all videos pooled (frames where both succeeded), mode `{mode}`\n")
    print(pooled[["r", "mae", "ref_std", "presence_agree", "n"]].to_markdown(floatfmt=".3f"))
    if gaze_rows:
        print(f"\n### Gaze and eye landmarks, mode `{mode}`\n")
        print(pd.DataFrame(gaze_rows).to_markdown(index=False, floatfmt=".3f"))
    r = pooled.loc[AU_INTENSITY_NAMES, "r"]
    print(f"\nMean r over the 17 intensities: {r.mean():.4f}; AUs with r >= 0.80: {(r >= 0.80).sum()} of 17; "
          f"min r: {r.min():.4f}")


if __name__ == "__main__":
    main()
