"""Evaluation: metrics (``ConfusionMatrix``), the official test-time arithmetic
(``multi_scale_predict``, ``finalize_prediction``), ``evaluate`` (``hrseg evaluate``),
``predict`` (``hrseg predict``) and generic visualisation helpers (``visualize``).

This package file only re-exports the light pieces; import ``evaluate``, ``predict`` and
``visualize`` from their modules (they pull in data loading and plotting).
"""

from hrseg.evaluation.inference import finalize_prediction, multi_scale_predict
from hrseg.metrics import ConfusionMatrix

__all__ = ["ConfusionMatrix", "finalize_prediction", "multi_scale_predict"]
