"""HRNetV2 segmentation models: ``build_model(backbone, head, num_classes, align_corners)``, and
``resize_logits`` for resizing their logits with the model's ``align_corners``."""

from hrseg.models.hrnet import HRNET_CONFIGS, HighResolutionNet, HRNetConfig, StageConfig
from hrseg.models.segmentation import (
    HEADS,
    MODELS,
    HRNetFCN,
    HRNetOCR,
    ModelConfig,
    SegmentationModel,
    build_model,
    build_model_from_config,
    parse_model_name,
    resize_logits,
)

BACKBONES = tuple(HRNET_CONFIGS)

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
