"""pyfaceau: OpenFace 2.2's facial Action Unit pipeline in Python."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
