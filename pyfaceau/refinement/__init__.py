"""Targeted landmark refinement with OpenFace's SVR patch experts (fast path)."""

from .targeted import TARGET_LANDMARKS, Refinement, TargetedCLNFRefiner

__all__ = ["TargetedCLNFRefiner", "Refinement", "TARGET_LANDMARKS"]
