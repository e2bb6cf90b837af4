"""pyfaceau: OpenFace 2.2's facial Action Unit pipeline in Python.

Entry points:

- :class:`Options` and :class:`Pipeline`: what to compute, and the loaded models that
  compute it: ``Pipeline(Options.fast()).process("video.mp4", "video.csv")``,
  ``Pipeline().stream(...)`` for per-frame results.
- :class:`FullPythonAUPipeline` and :class:`TargetedCLNFRefiner`: the seed's API, kept.
- :class:`AUBackend`: the AU back end given frames and 68 landmarks.

Names are imported on first use, so ``import pyfaceau`` stays cheap.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from ._version import __version__

#: public name -> module that defines it
_EXPORTS = {
    "Options": ".options",
    "Detector": ".options",
    "LandmarkMethod": ".options",
    "Refinement": ".options",
    "AUModelSet": ".options",
    "Pipeline": ".pipeline.pipeline",
    "StreamSession": ".pipeline.pipeline",
    "InputSession": ".pipeline.session",
    "FaceTrack": ".pipeline.track",
    "AUBackend": ".pipeline.backend",
    "FrameResult": ".pipeline.backend",
    "Frame": ".pipeline.sources",
    "LandmarkResult": ".pipeline.types",
    "FullPythonAUPipeline": ".pipeline.full_python",
    "TargetedCLNFRefiner": ".refinement",
    "make_front_end": ".pipeline.session",
    "process": ".pipeline.session",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        # a submodule not imported yet (pyfaceau.errors, pyfaceau.output), as after
        # "import pyfaceau.errors"
        if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}"):
            return importlib.import_module(f"{__name__}.{name}")
        raise AttributeError(f"module 'pyfaceau' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # for type checkers and IDEs
    from .options import AUModelSet, Detector, LandmarkMethod, Options, Refinement
    from .pipeline.backend import AUBackend, FrameResult
    from .pipeline.full_python import FullPythonAUPipeline
    from .pipeline.pipeline import Pipeline, StreamSession
    from .pipeline.session import InputSession, make_front_end, process
    from .pipeline.sources import Frame
    from .pipeline.track import FaceTrack
    from .pipeline.types import LandmarkResult
    from .refinement import TargetedCLNFRefiner
