"""pyfaceau: OpenFace 2.2's facial Action Unit pipeline in Python.

Entry points:

- :func:`process` with :func:`make_front_end` (``"faithful"``, ``"fast"`` or ``"csv"``):
  a whole video, image folder or image to an OpenFace-compatible table.
- :class:`FullPythonAUPipeline`: the fast path as one object.
- :class:`TargetedCLNFRefiner`: SVR patch-expert refinement of landmarks.
- :class:`AUBackend`: the AU back end given frames and 68 landmarks.
"""

from __future__ import annotations

from ._version import __version__

from .pipeline.backend import AUBackend, FrameResult
from .pipeline.full_python import FullPythonAUPipeline
from .pipeline.session import make_front_end, process
from .refinement import TargetedCLNFRefiner

__all__ = [
    "__version__",
    "AUBackend",
    "FrameResult",
    "FullPythonAUPipeline",
    "TargetedCLNFRefiner",
    "make_front_end",
    "process",
]
