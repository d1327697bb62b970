"""What a model is, as frozen data and without torch: the HRNet stage configurations of every
backbone (``HRNET_CONFIGS``) and the model part of a recipe (``ModelConfig``).

Recipes, ``hrseg recipe`` and the stages that do no tensor work read these facts; the torch
modules that build the networks (``hrseg.models.hrnet``, ``hrseg.models.segmentation``) import
them from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hrseg.config import bounded

HeadName = Literal["fcn", "ocr"]
InitName = Literal["official", "kaiming"]


@dataclass(frozen=True)
class StageConfig:
    """One HRNet stage: ``num_modules`` HighResolutionModules of ``len(num_channels)`` branches."""

    num_modules: int
    num_blocks: tuple[int, ...]
    num_channels: tuple[int, ...]
    block: Literal["BOTTLENECK", "BASIC"] = "BASIC"

    @property
    def num_branches(self) -> int:
        return len(self.num_channels)


@dataclass(frozen=True)
class HRNetConfig:
    stage1: StageConfig
    stage2: StageConfig
    stage3: StageConfig
    stage4: StageConfig

    @property
    def stages(self) -> tuple[StageConfig, StageConfig, StageConfig, StageConfig]:
        return (self.stage1, self.stage2, self.stage3, self.stage4)


def _cfg(stage1: tuple[int, int], widths: tuple[int, int, int, int], modules: tuple[int, int, int], blocks: int) -> HRNetConfig:
    """Build a config from the numbers that differ between the official variants."""
    s1_blocks, s1_channels = stage1
    return HRNetConfig(
        stage1=StageConfig(1, (s1_blocks,), (s1_channels,), "BOTTLENECK"),
        stage2=StageConfig(modules[0], (blocks,) * 2, widths[:2]),
        stage3=StageConfig(modules[1], (blocks,) * 3, widths[:3]),
        stage4=StageConfig(modules[2], (blocks,) * 4, widths[:4]),
    )


#: Official stage configurations (official.md §2). ``W18-Small`` variants come from the
#: pytorch-v1.1 / master yamls, W18/W32/W48 from ``hrnet_config.py`` and the W48 yamls.
HRNET_CONFIGS: dict[str, HRNetConfig] = {
    "hrnetv2_w18_small_v1": _cfg((1, 32), (16, 32, 64, 128), (1, 1, 1), 2),
    "hrnetv2_w18_small_v2": _cfg((2, 64), (18, 36, 72, 144), (1, 3, 2), 2),
    "hrnetv2_w18": _cfg((4, 64), (18, 36, 72, 144), (1, 4, 3), 4),
    "hrnetv2_w32": _cfg((4, 64), (32, 64, 128, 256), (1, 4, 3), 4),
    "hrnetv2_w48": _cfg((4, 64), (48, 96, 192, 384), (1, 4, 3), 4),
}

#: the backbone names, in ``HRNET_CONFIGS`` order
BACKBONES = tuple(HRNET_CONFIGS)


@dataclass(frozen=True)
class ModelConfig:
    """The model part of a recipe."""

    backbone: str = "hrnetv2_w48"
    head: HeadName = "ocr"
    num_classes: int = bounded(19, ge=1)
    align_corners: bool = True  # the official default; every recipe file states it
    bn_momentum: float = bounded(0.1, ge=0, le=1)
    ocr_mid_channels: int = bounded(512, ge=1)
    ocr_key_channels: int = bounded(256, ge=1)
    ocr_dropout: float = bounded(0.05, ge=0, lt=1)
    # initialisation when no checkpoint is loaded: "official" (conv N(0, 0.001^2), meant to be
    # overwritten by ImageNet weights) or "kaiming" (for training from scratch)
    init: InitName = "official"

    @property
    def name(self) -> str:
        return f"{self.backbone}_{self.head}"
