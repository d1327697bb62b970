"""HRNetV2 segmentation models: ``build_model(backbone, head, num_classes, align_corners)``, and
``resize_logits`` for resizing their logits with the model's ``align_corners``.

The names below load their module at first use (PEP 562, ``_LAZY``): ``import hrseg.models``
costs nothing, ``hrseg.models.ModelConfig`` loads only ``hrseg.models.config`` (no torch), and
``hrseg.models.build_model`` loads the networks and torch. ``tests/test_layers.py`` reads
``_LAZY`` as this package's imports and checks that it, the ``TYPE_CHECKING`` block and
``__all__`` name the same things.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hrseg.lazy import lazy_attributes

if TYPE_CHECKING:
    from hrseg.models.config import BACKBONES, HRNET_CONFIGS, HRNetConfig, ModelConfig, StageConfig
    from hrseg.models.hrnet import HighResolutionNet
    from hrseg.models.segmentation import (
        HEADS,
        MODELS,
        HRNetFCN,
        HRNetOCR,
        SegmentationModel,
        build_model,
        build_model_from_config,
        parse_model_name,
        resize_logits,
    )

#: public name -> the module that defines it (imported when the name is first used)
_LAZY: dict[str, str] = {
    "BACKBONES": "hrseg.models.config",
    "HRNET_CONFIGS": "hrseg.models.config",
    "HRNetConfig": "hrseg.models.config",
    "ModelConfig": "hrseg.models.config",
    "StageConfig": "hrseg.models.config",
    "HighResolutionNet": "hrseg.models.hrnet",
    "HEADS": "hrseg.models.segmentation",
    "MODELS": "hrseg.models.segmentation",
    "HRNetFCN": "hrseg.models.segmentation",
    "HRNetOCR": "hrseg.models.segmentation",
    "SegmentationModel": "hrseg.models.segmentation",
    "build_model": "hrseg.models.segmentation",
    "build_model_from_config": "hrseg.models.segmentation",
    "parse_model_name": "hrseg.models.segmentation",
    "resize_logits": "hrseg.models.segmentation",
}

__all__ = [
    "BACKBONES",
    "HEADS",
    "HRNET_CONFIGS",
    "MODELS",
    "HRNetConfig",
    "HRNetFCN",
    "HRNetOCR",
    "HighResolutionNet",
    "ModelConfig",
    "SegmentationModel",
    "StageConfig",
    "build_model",
    "build_model_from_config",
    "parse_model_name",
    "resize_logits",
]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())
