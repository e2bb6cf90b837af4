"""OpenFace 2.2's Action Unit models and the per-video AU session.

- :func:`load_au_models` / :class:`AUModels`: the SVR (intensity) and SVM (presence)
  predictors, in OpenFace's CSV column order.
- :class:`AUAnalyser`: one video's session (running medians, online predictions,
  :meth:`AUAnalyser.finalize` for the offline post-processed values).
- :func:`predict_static_aus`: a single image with the static models.
"""

from .analyser import (
    AUAnalyser,
    AUFramePrediction,
    AUVideoPrediction,
    MAX_INIT_FRAMES,
    predict_static_aus,
)
from .models import AUModels, LinearAUGroup, load_au_models
from .postprocess import offline_intensity, offline_presence

__all__ = [
    "AUAnalyser",
    "AUFramePrediction",
    "AUVideoPrediction",
    "AUModels",
    "LinearAUGroup",
    "MAX_INIT_FRAMES",
    "load_au_models",
    "offline_intensity",
    "offline_presence",
    "predict_static_aus",
]
