"""Shared fixtures: paths to ../shared and OpenFace's reference output."""

from __future__ import annotations

import contextlib
import http.server
import os
import threading
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
OPENFACE_DIR = SHARED / "openface-2.2"
ONNX_DIR = SHARED / "models"
SAMPLES = SHARED / "samples"
REFERENCE = SHARED / "reference"

# The product finds models through PYFACEAU_MODELS; the tests point it at ../shared.
os.environ["PYFACEAU_MODELS"] = os.pathsep.join([str(OPENFACE_DIR), str(ONNX_DIR)])
# Kernels through numba in every test, whatever earlier runs saved (pyfaceau/jit.py);
# tests/test_saved_kernels.py turns the saved kernels on with a file of its own.
os.environ.setdefault("PYFACEAU_SAVED_KERNELS", "0")

if not OPENFACE_DIR.is_dir():  # a clear failure, not silent skips
    raise RuntimeError(f"the test data folder {SHARED} is missing")


#: The BLAS kernels the references were made with (``../shared/openface-bin/README.md``):
#: Haswell; NumPy's OpenBLAS runs the same kernels for Zen (bit-identical products).
REFERENCE_KERNELS = frozenset({"Haswell", "Zen"})


def blas_kernel() -> str:
    """The kernel NumPy's OpenBLAS uses here (``OPENBLAS_CORETYPE`` or its own pick for
    the CPU, e.g. ``SkylakeX`` on an AVX-512 CPU), as threadpoolctl reports it."""
    import numpy  # noqa: F401 - its OpenBLAS loaded
    import threadpoolctl

    # NumPy's own (SciPy may load another OpenBLAS build, which can pick another kernel)
    found = [info for info in threadpoolctl.threadpool_info()
             if info.get("internal_api") == "openblas"]
    found.sort(key=lambda info: "numpy" not in str(info.get("filepath", "")))
    return str(found[0].get("architecture")) if found else "unknown"


def samples_with_reference() -> dict[str, str]:
    """Every sample that has an OpenFace reference: reference stem -> input name in
    ``samples/`` (a video file or an image folder)."""
    inputs = {p.stem if p.is_file() else p.name: p.name for p in SAMPLES.iterdir()}
    return {p.stem: inputs[p.stem] for p in sorted(REFERENCE.glob("*.csv")) if p.stem in inputs}


def load_reference(stem: str) -> pd.DataFrame:
    """OpenFace 2.2's FeatureExtraction CSV for a sample, column names stripped."""
    df = pd.read_csv(REFERENCE / f"{stem}.csv", skipinitialspace=True)
    df.columns = [c.strip() for c in df.columns]
    return df


def reference_landmarks(df: pd.DataFrame) -> np.ndarray:
    """(N, 68, 2) float64 pixels from a reference CSV."""
    xs = df[[f"x_{i}" for i in range(68)]].to_numpy(np.float64)
    ys = df[[f"y_{i}" for i in range(68)]].to_numpy(np.float64)
    return np.stack([xs, ys], axis=-1)


@pytest.fixture(scope="session")
def shared() -> Path:
    return SHARED


@pytest.fixture(scope="session")
def default_reference() -> pd.DataFrame:
    return load_reference("default")


#: Test modules that compare with OpenFace's own output on real video, where float32 BLAS
#: rounding can move a detection, a validator bin or a tracked frame: CI runs them again
#: under a second OpenBLAS kernel (``-m parity``, see docs/robustness.md). Not the back end
#: alone (test_backend_parity.py: OpenFace's landmarks in, float64 AU products, bounds far
#: from the kernel spread, and the slowest module).
PARITY_MODULES = {
    "test_faithful.py",
    "test_tracking.py",
    "test_validator.py",
    "test_mtcnn.py",
    "test_fast_clnf.py",
    "test_gaze.py",
    "test_clnf.py",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in PARITY_MODULES:
            item.add_marker(pytest.mark.parity)


@contextlib.contextmanager
def loopback_http(file_for: Callable[[str], Path]) -> Iterator[tuple[str, dict[str, int]]]:
    """A real HTTP server on 127.0.0.1 for download tests: ``file_for(relative URL path)``
    names the file served. Yields ``(base URL ending in '/', {"count": requests})``."""
    served = {"count": 0}

    class Handler(http.server.SimpleHTTPRequestHandler):
        def translate_path(self, path: str) -> str:
            served["count"] += 1
            return str(file_for(path.split("?", 1)[0].lstrip("/")))

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", served
    finally:
        server.shutdown()
        server.server_close()
