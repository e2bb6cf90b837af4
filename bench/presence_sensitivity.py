"""How far AU presence can agree when landmarks are printed at 0.1 px (issue 2's limit).

For each video: run the OpenFace-faithful path, keep its unrounded landmarks and PDM
parameters, round them as OpenFace's CSV does (landmarks %.1f, parameters %.3f), recover
them with the ``--landmarks-csv`` input's dequantisation, and score the AUs from the
recovered landmarks against the AUs from the unrounded ones. This is pyfaceau against
itself, so every difference comes from the rounding alone. A third row shrinks the
recovered landmarks' error tenfold, to show how presence behaves as the input approaches
the exact landmarks.

    python bench/presence_sensitivity.py [STEM ...]   # default: three sample videos

Needs ../shared beside the checkout. Prints one markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLES = SHARED / "samples"
os.environ.setdefault(
    "PYFACEAU_MODELS", os.pathsep.join([str(SHARED / "openface-2.2"), str(SHARED / "models")])
)

from pyfaceau import Pipeline  # noqa: E402
from pyfaceau.evaluation import au_agreement  # noqa: E402
from pyfaceau.modelstore import resolve  # noqa: E402
from pyfaceau.output.table import FrameTable  # noqa: E402
from pyfaceau.pdm import load_pdm  # noqa: E402
from pyfaceau.pdm.dequantise import dequantise_landmarks  # noqa: E402
from pyfaceau.pipeline.session import InputSession  # noqa: E402
from pyfaceau.pipeline.sources import open_source  # noqa: E402
from pyfaceau.pipeline.types import LandmarkResult  # noqa: E402

PARAM_COLUMNS = ["p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty"] + [f"p_{i}" for i in range(34)]
DEFAULT_VIDEOS = ["default.wmv", "0686_02_003_gloria_estefan.avi", "1804_03_006_sylvester_stallone.avi"]


class ReplayFrontEnd:
    """Replays given ``(N, 68, 2)`` landmarks; frames marked unsuccessful fail."""

    def __init__(self, landmarks: np.ndarray, success: np.ndarray) -> None:
        self.landmarks, self.success, self.i = landmarks, success, 0

    def reset(self) -> None:
        self.i = 0

    def track(self, frame_bgr: np.ndarray) -> LandmarkResult:
        i, self.i = self.i, self.i + 1
        if i >= len(self.landmarks) or not self.success[i]:
            return LandmarkResult.failed()
        return LandmarkResult(success=True, confidence=1.0, landmarks=self.landmarks[i].copy())


def replay(
    pipe: Pipeline, path: Path, landmarks: np.ndarray, success: np.ndarray
) -> pd.DataFrame:
    """``pipe``'s back end on ``path``'s frames with the given landmarks (one input
    session, as :meth:`Pipeline.process` runs it, with a replaying landmark tracker)."""
    source = open_source(path)
    session = InputSession(
        source.kind, source.width, source.height,
        new_tracker=lambda: ReplayFrontEnd(landmarks, success),
        backend=pipe.models.backend(pipe.options.dynamic_for(source.kind)),
        batched=True,
    )
    session.run(source, threads=1, total=len(source))
    table = session.finish_table()
    return table.to_dataframe() if isinstance(table, FrameTable) else table


def landmarks_of(df: pd.DataFrame) -> np.ndarray:
    xs = df[[f"x_{i}" for i in range(68)]].to_numpy(np.float64)
    ys = df[[f"y_{i}" for i in range(68)]].to_numpy(np.float64)
    return np.stack([xs, ys], axis=-1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="*", default=DEFAULT_VIDEOS, help="file names in ../shared/samples")
    args = parser.parse_args()
    pipe = Pipeline()  # the OpenFace-faithful path
    pdm = load_pdm(resolve("model/pdms/In-the-wild_aligned_PDM_68.txt"))
    rows = []
    for name in args.videos:
        path = SAMPLES / name
        faithful = pipe.process(path)
        success = faithful["success"].to_numpy() > 0
        truth = landmarks_of(faithful)
        params = np.round(faithful[PARAM_COLUMNS].to_numpy(np.float64), 3)
        printed = np.round(truth, 1)
        recovered = printed.copy()
        for i in np.flatnonzero(success):
            recovered[i] = dequantise_landmarks(pdm, printed[i], params[i, :6], params[i, 6:])
        exact = replay(pipe, path, truth, success)
        # the recovered landmarks' error shrunk tenfold: how presence behaves as the input
        # approaches the exact landmarks
        closer = truth + 0.1 * (recovered - truth)
        for label, lms in [
            ("printed (0.1 px)", printed),
            ("recovered", recovered),
            ("recovered, error / 10", closer),
        ]:
            ours = replay(pipe, path, lms, success)
            table = au_agreement(ours, exact)
            worst = table["presence_agree"].idxmin()
            rows.append({
                "video": Path(name).stem,
                "landmarks": label,
                "landmark RMS error px": float(np.sqrt(np.mean((lms - truth)[success] ** 2))),
                "AU r min": float(table["r"].min()),
                "presence min": float(table.loc[worst, "presence_agree"]),
                "worst AU": worst,
                "AUs below 0.98": int((table["presence_agree"] < 0.98).sum()),
            })
        print(f"{name}: done", file=sys.stderr, flush=True)
    pipe.close()
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".4f"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
