"""HRNetV2 backbone, laid out so that ``state_dict()`` keys are the official ones.

Reading order: residual blocks, ``HighResolutionModule`` (parallel branches + fusion),
``HighResolutionNet`` (stem, stages, transitions and the HRNetV2 concatenation). The stage
configurations (the architecture as frozen data, ``HRNET_CONFIGS``) live in
``hrseg.models.config``, which needs no torch.

Numerics follow the official HRNet-OCR branch: every fusion upsamples with
``F.interpolate(size=target, mode="bilinear", align_corners=...)`` so odd input sizes work,
and ``align_corners`` / BN momentum / the norm class are constructor arguments, never globals.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from hrseg.models.config import HRNetConfig, StageConfig

NormLayer = Callable[..., nn.Module]


# --------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        norm_layer: NormLayer,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        norm_layer: NormLayer,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = norm_layer(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = norm_layer(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"BASIC": BasicBlock, "BOTTLENECK": Bottleneck}


def make_layer(
    block: type[BasicBlock] | type[Bottleneck],
    inplanes: int,
    planes: int,
    num_blocks: int,
    *,
    norm_layer: NormLayer,
    stride: int = 1,
) -> nn.Sequential:
    """A residual stack; the first block gets a 1x1 projection when widths differ."""
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * block.expansion, kernel_size=1, stride=stride, bias=False),
            norm_layer(planes * block.expansion),
        )
    layers: list[nn.Module] = [block(inplanes, planes, stride, downsample, norm_layer=norm_layer)]
    layers += [block(planes * block.expansion, planes, norm_layer=norm_layer) for _ in range(1, num_blocks)]
    return nn.Sequential(*layers)


def resize_to(x: torch.Tensor, size: tuple[int, int], align_corners: bool) -> torch.Tensor:
    """Bilinear resize to an explicit size, the only interpolation the model uses."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


# --------------------------------------------------------------------------------------
# Multi-resolution module
# --------------------------------------------------------------------------------------


class HighResolutionModule(nn.Module):
    """Parallel branches followed by all-to-all fusion (sum), as in the official code."""

    def __init__(
        self,
        stage: StageConfig,
        in_channels: list[int],
        *,
        norm_layer: NormLayer,
        align_corners: bool,
    ) -> None:
        super().__init__()
        if not (len(stage.num_blocks) == len(stage.num_channels) == len(in_channels) == stage.num_branches):
            raise ValueError(
                f"HRNet stage config mismatch: num_blocks has {len(stage.num_blocks)} entries, "
                f"num_channels {len(stage.num_channels)}, inputs {len(in_channels)}"
            )
        self.align_corners = align_corners
        block = BLOCKS[stage.block]
        self.num_branches = stage.num_branches
        self.branches = nn.ModuleList(
            make_layer(block, in_channels[i], stage.num_channels[i], stage.num_blocks[i], norm_layer=norm_layer)
            for i in range(self.num_branches)
        )
        self.out_channels = [c * block.expansion for c in stage.num_channels]
        self.fuse_layers = self._make_fuse_layers(self.out_channels, norm_layer) if self.num_branches > 1 else None
        self.relu = nn.ReLU(inplace=True)

    @staticmethod
    def _make_fuse_layers(channels: list[int], norm_layer: NormLayer) -> nn.ModuleList:
        fuse_layers = nn.ModuleList()
        for i, c_out in enumerate(channels):
            row: list[nn.Module | None] = []
            for j, c_in in enumerate(channels):
                if j > i:  # lower resolution -> 1x1 conv + BN, then bilinear upsampling in forward
                    row.append(nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), norm_layer(c_out)))
                elif j == i:
                    row.append(None)
                else:  # higher resolution -> chain of stride-2 3x3 convs; ReLU on all but the last
                    steps: list[nn.Module] = []
                    for k in range(i - j):
                        last = k == i - j - 1
                        width = c_out if last else c_in
                        layers: list[nn.Module] = [conv3x3(c_in, width, stride=2), norm_layer(width)]
                        if not last:
                            layers.append(nn.ReLU(inplace=True))
                        steps.append(nn.Sequential(*layers))
                    row.append(nn.Sequential(*steps))
            fuse_layers.append(nn.ModuleList(row))
        return fuse_layers

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        x = [branch(xi) for branch, xi in zip(self.branches, x)]
        if self.fuse_layers is None:
            return x
        fused = []
        for i, row in enumerate(self.fuse_layers):
            y = x[0] if i == 0 else row[0](x[0])
            for j in range(1, self.num_branches):
                if j == i:
                    y = y + x[j]
                elif j > i:
                    y = y + resize_to(row[j](x[j]), x[i].shape[-2:], self.align_corners)
                else:
                    y = y + row[j](x[j])
            fused.append(self.relu(y))
        return fused


# --------------------------------------------------------------------------------------
# Backbone
# --------------------------------------------------------------------------------------


class HighResolutionNet(nn.Module):
    """HRNetV2 backbone. ``forward_features`` returns the 1/4-resolution concatenation
    [x0, up(x1), up(x2), up(x3)] that both heads consume (``self.num_features`` channels)."""

    def __init__(
        self,
        config: HRNetConfig,
        *,
        align_corners: bool = True,
        norm_layer: NormLayer = nn.BatchNorm2d,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        self.config = config
        self.align_corners = align_corners

        def norm(channels: int) -> nn.Module:
            return norm_layer(channels, momentum=bn_momentum)

        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = norm(64)
        self.conv2 = nn.Conv2d(64, 64, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn2 = norm(64)
        self.relu = nn.ReLU(inplace=True)

        s1 = config.stage1
        block1 = BLOCKS[s1.block]
        self.layer1 = make_layer(block1, 64, s1.num_channels[0], s1.num_blocks[0], norm_layer=norm)
        channels = [s1.num_channels[0] * block1.expansion]

        for index, stage in enumerate(config.stages[1:], start=2):
            target = [c * BLOCKS[stage.block].expansion for c in stage.num_channels]
            setattr(self, f"transition{index - 1}", self._make_transition(channels, target, norm))
            modules = []
            for _ in range(stage.num_modules):
                module = HighResolutionModule(stage, target if not modules else channels, norm_layer=norm, align_corners=align_corners)
                modules.append(module)
                channels = module.out_channels
            setattr(self, f"stage{index}", nn.Sequential(*modules))
        self.stage_channels = channels
        self.num_features = sum(channels)

    @staticmethod
    def _make_transition(pre: list[int], cur: list[int], norm: NormLayer) -> nn.ModuleList:
        layers: list[nn.Module | None] = []
        for i, c_out in enumerate(cur):
            if i < len(pre):
                if c_out != pre[i]:
                    layers.append(nn.Sequential(conv3x3(pre[i], c_out), norm(c_out), nn.ReLU(inplace=True)))
                else:
                    layers.append(None)
            else:  # a new, lower-resolution branch fed from the last existing one
                steps = []
                for j in range(i + 1 - len(pre)):
                    width = c_out if j == i - len(pre) else pre[-1]
                    steps.append(nn.Sequential(conv3x3(pre[-1], width, stride=2), norm(width), nn.ReLU(inplace=True)))
                layers.append(nn.Sequential(*steps))
        return nn.ModuleList(layers)

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Stem + four stages; returns the four branch outputs (strides 4, 8, 16, 32)."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        y_list = [self.layer1(x)]
        for index in (2, 3, 4):
            transition: nn.ModuleList = getattr(self, f"transition{index - 1}")
            x_list = []
            for i, layer in enumerate(transition):
                source = y_list[i] if i < len(y_list) else y_list[-1]
                x_list.append(source if layer is None else layer(source))
            y_list = getattr(self, f"stage{index}")(x_list)
        return y_list

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        branches = self.stages(x)
        size = branches[0].shape[-2:]
        upsampled = [branches[0]] + [resize_to(b, size, self.align_corners) for b in branches[1:]]
        return torch.cat(upsampled, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)
