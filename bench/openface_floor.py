"""How close OpenFace 2.2 is to itself on other BLAS kernels, beside pyfaceau.

Usage::

    .venv/bin/python bench/openface_floor.py [--coretypes Sandybridge Nehalem] [--keep DIR]

OpenFace's output depends on the BLAS kernels OpenBLAS picks for the CPU
(``../shared/openface-bin/README.md``); the references in ``../shared/reference`` were made
with the Haswell kernels. This runs OpenFace's ``FeatureExtraction`` on ``default.wmv``
with ``OPENBLAS_CORETYPE`` set to each of ``--coretypes`` (kernels of other x86-64 CPUs,
all of which run on this one) and pyfaceau's faithful path, each writing the CSV, the
aligned faces and the HOG file, and compares each with the reference:

- HOG: mean absolute difference over all values of all frames, and the worst frame's;
- aligned faces: mean absolute difference in grey levels (every channel), mean over
  frames and worst frame;
- 2D landmarks: the share of printed values identical to the reference's (0.1 px), and
  the mean distance in pixels (:func:`pyfaceau.evaluation.landmark_distances`, as in the
  accuracy tables).

So a criterion such as "HOG within 2e-3 of ``default.hog``" can be read against
OpenFace's own reproducibility from one CPU to another. Needs ``../shared`` beside the
checkout and OpenFace's programs ready (``../shared/openface-bin/setup``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
VIDEO = SHARED / "samples" / "default.wmv"
REFERENCE = SHARED / "reference"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_openface import OPENFACE_RUN, PYFACEAU, openface_ready  # noqa: E402
from pyfaceau.evaluation import (  # noqa: E402
    aligned_face_differences, hog_differences, landmark_distances,
)


def compare(csv: Path, hog: Path, aligned: Path) -> dict[str, float]:
    """One run's outputs against the reference (see the module notes)."""
    hog_err = hog_differences(hog, REFERENCE / "default.hog")
    grey = aligned_face_differences(aligned, REFERENCE / "default_aligned")
    a = pd.read_csv(csv, skipinitialspace=True)
    b = pd.read_csv(REFERENCE / "default.csv", skipinitialspace=True)
    cols = [c for c in b.columns if c[:2] in ("x_", "y_") and c[2:].isdigit()]
    identical = np.round(a[cols].to_numpy(), 1) == np.round(b[cols].to_numpy(), 1)
    return {
        "HOG mean": float(hog_err.mean()),
        "HOG worst frame": float(hog_err.max()),
        "aligned grey mean": float(grey.mean()),
        "aligned grey worst frame": float(grey.max()),
        "landmarks identical %": float(100.0 * identical.mean()),
        "landmarks mean px": float(landmark_distances(a, b).mean()),
    }


def run_openface(coretype: str, out: Path) -> tuple[Path, Path, Path]:
    env = dict(os.environ, OPENBLAS_CORETYPE=coretype)
    subprocess.run(
        [str(OPENFACE_RUN), "FeatureExtraction", "-f", str(VIDEO), "-out_dir", str(out),
         "-2Dfp", "-hogalign", "-simalign", "-q"],
        env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return out / "default.csv", out / "default.hog", out / "default_aligned"


def run_pyfaceau(out: Path) -> tuple[Path, Path, Path]:
    env = dict(os.environ)
    env.setdefault(
        "PYFACEAU_MODELS",
        os.pathsep.join([str(SHARED / "openface-2.2"), str(SHARED / "models")]),
    )
    csv, hog, aligned = out / "default.csv", out / "default.hog", out / "default_aligned"
    subprocess.run(
        [str(PYFACEAU), str(VIDEO), "-o", str(csv), "--hog", str(hog), "--aligned",
         str(aligned), "--no-progress"],
        env=env, check=True, stdout=subprocess.DEVNULL,
    )
    return csv, hog, aligned


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--coretypes", nargs="+", default=["Sandybridge", "Nehalem"],
                    help="OpenBLAS kernel sets to run OpenFace with (OPENBLAS_CORETYPE)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the outputs in this folder")
    args = ap.parse_args()
    ready, why = openface_ready()
    if not ready:
        sys.exit(f"OpenFace cannot run here: {why}")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        rows = {}
        for coretype in ["Haswell", *args.coretypes]:
            rows[f"OpenFace, {coretype} kernels"] = compare(
                *run_openface(coretype, root / f"openface_{coretype}"))
        rows["pyfaceau (faithful path)"] = compare(*run_pyfaceau(root / "pyfaceau"))
    table = pd.DataFrame(rows).T
    print("default.wmv against ../shared/reference (OpenFace 2.2, Haswell kernels)\n")
    print(table.to_markdown(floatfmt=("", ".2e", ".2e", ".3f", ".3f", ".1f", ".4f")))


if __name__ == "__main__":
    main()
