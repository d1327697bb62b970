"""Evaluation: metrics (``ConfusionMatrix``), the official test-time arithmetic
(``multi_scale_predict``, ``finalize_prediction``), ``evaluate`` (``hrseg evaluate``),
``predict`` (``hrseg predict``) and generic visualisation helpers (``visualize``).

This package file only re-exports the light pieces; import ``evaluate``, ``predict`` and
``visualize`` from their modules (they pull in data loading and plotting).

The names below load their module at first use (PEP 562, ``_LAZY``), like ``hrseg.data``'s:
every module of this package imports the package first, and the torch-free one
(``evaluation.options``, read by the commands' ``--help``) must not pay for torch through it.
``tests/test_layers.py`` reads ``_LAZY`` as this package's imports and checks that it, the
``TYPE_CHECKING`` block and ``__all__`` name the same things.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hrseg.lazy import lazy_attributes

if TYPE_CHECKING:
    from hrseg.evaluation.inference import finalize_prediction, multi_scale_predict
    from hrseg.metrics import ConfusionMatrix

#: public name -> the module that defines it (imported when the name is first used)
_LAZY: dict[str, str] = {
    "finalize_prediction": "hrseg.evaluation.inference",
    "multi_scale_predict": "hrseg.evaluation.inference",
    "ConfusionMatrix": "hrseg.metrics",
}

__all__ = ["ConfusionMatrix", "finalize_prediction", "multi_scale_predict"]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())
