"""Segmentation heads on top of the HRNetV2 1/4-resolution features.

- ``make_fcn_head``: the official ``last_layer`` (1x1 conv with bias, BN, ReLU, 1x1 classifier).
  The OCR model's ``aux_head`` has exactly the same layout.
- OCR (object-contextual representations): ``SpatialGather`` (soft object regions -> region
  features, softmax over *pixels*), ``ObjectAttentionBlock`` (pixel-region attention) and
  ``SpatialOCR`` (context + pixel features -> 1x1 conv, BN-ReLU, Dropout2d).

Sub-module names and ``nn.Sequential`` indices are the official checkpoint keys.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

NormLayer = Callable[[int], nn.Module]


def make_fcn_head(in_channels: int, num_classes: int, norm: NormLayer, final_kernel: int = 1) -> nn.Sequential:
    """``last_layer`` / ``aux_head``: keys ``.0`` conv (bias), ``.1`` BN, ``.3`` classifier (bias)."""
    if final_kernel not in (1, 3):
        raise ValueError(f"final_kernel must be 1 or 3, got {final_kernel}")
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, kernel_size=1),
        norm(in_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_channels, num_classes, kernel_size=final_kernel, padding=final_kernel // 2),
    )


def bn_relu(channels: int, norm: NormLayer) -> nn.Sequential:
    """The official ``ModuleHelper.BNReLU``: keys ``.0`` BN; a non-inplace ReLU."""
    return nn.Sequential(norm(channels), nn.ReLU())


def conv1x1_bn_relu(in_channels: int, out_channels: int, norm: NormLayer) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False), bn_relu(out_channels, norm)]


class SpatialGather(nn.Module):
    """Object-region features: for each class, a softmax over all pixels of its aux logits
    weights the pixel features. Returns (N, C, K, 1). No parameters."""

    def forward(self, feats: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        n, k = logits.shape[:2]
        probs = F.softmax(logits.reshape(n, k, -1), dim=2)  # N x K x HW
        pixels = feats.reshape(n, feats.shape[1], -1).permute(0, 2, 1)  # N x HW x C
        return torch.matmul(probs, pixels).permute(0, 2, 1).unsqueeze(3)


class ObjectAttentionBlock(nn.Module):
    """Pixel (query) to object-region (key, value) attention, scaled by key_channels**-0.5."""

    def __init__(self, in_channels: int, key_channels: int, norm: NormLayer) -> None:
        super().__init__()
        self.key_channels = key_channels
        self.f_pixel = nn.Sequential(*conv1x1_bn_relu(in_channels, key_channels, norm), *conv1x1_bn_relu(key_channels, key_channels, norm))
        self.f_object = nn.Sequential(*conv1x1_bn_relu(in_channels, key_channels, norm), *conv1x1_bn_relu(key_channels, key_channels, norm))
        self.f_down = nn.Sequential(*conv1x1_bn_relu(in_channels, key_channels, norm))
        self.f_up = nn.Sequential(*conv1x1_bn_relu(key_channels, in_channels, norm))

    def forward(self, x: torch.Tensor, proxy: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        query = self.f_pixel(x).reshape(n, self.key_channels, -1).permute(0, 2, 1)  # N x HW x Ck
        key = self.f_object(proxy).reshape(n, self.key_channels, -1)  # N x Ck x K
        value = self.f_down(proxy).reshape(n, self.key_channels, -1).permute(0, 2, 1)  # N x K x Ck
        sim = F.softmax(torch.matmul(query, key) * self.key_channels**-0.5, dim=-1)
        context = torch.matmul(sim, value).permute(0, 2, 1).reshape(n, self.key_channels, h, w)
        return self.f_up(context)


class SpatialOCR(nn.Module):
    """Object context, concatenated *before* the pixel features, fused by a 1x1 conv."""

    def __init__(self, in_channels: int, key_channels: int, out_channels: int, norm: NormLayer, dropout: float = 0.05) -> None:
        super().__init__()
        self.object_context_block = ObjectAttentionBlock(in_channels, key_channels, norm)
        self.conv_bn_dropout = nn.Sequential(
            *conv1x1_bn_relu(2 * in_channels, out_channels, norm),
            nn.Dropout2d(dropout),
        )

    def forward(self, feats: torch.Tensor, proxy: torch.Tensor) -> torch.Tensor:
        context = self.object_context_block(feats, proxy)
        return self.conv_bn_dropout(torch.cat([context, feats], dim=1))
