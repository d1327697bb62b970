"""HRNetV2 segmentation models (FCN head and OCR head) and their builders.

Both models subclass the backbone so that parameters sit at the top level of the state dict,
exactly as in the official checkpoints (``conv1.weight`` ... ``last_layer.3.bias`` /
``cls_head.weight``). ``model(x)`` returns a dict: ``"out"`` (main logits at 1/4 of the input
resolution) and, for OCR, ``"aux"`` (the soft-object-region logits).

``align_corners`` is an attribute of the model (``model.align_corners``), set when it is built:
every bilinear resize inside the model uses it, and so does every resize of its logits outside
(``resize_logits``: losses, validation, test-time inference, export wrappers). Its constructor
default, True, is the official code's default (``MODEL.ALIGN_CORNERS``); recipes and checkpoints
always say which value a model was trained with.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import torch
from torch import nn

from hrseg.errors import HrsegError
from hrseg.models.config import HRNET_CONFIGS, InitName, ModelConfig
from hrseg.models.heads import SpatialGather, SpatialOCR, make_fcn_head
from hrseg.models.hrnet import HighResolutionNet, NormLayer, resize_to


class HRNetFCN(HighResolutionNet):
    """HRNetV2 + the official ``last_layer`` head (``seg_hrnet.py``)."""

    head_name = "fcn"
    #: prefixes of modules that are not part of the backbone (kept at init when loading
    #: ImageNet weights)
    head_prefixes: tuple[str, ...] = ("last_layer.",)

    def __init__(
        self,
        backbone: str,
        num_classes: int,
        *,
        align_corners: bool = True,
        norm_layer: NormLayer = nn.BatchNorm2d,
        bn_momentum: float = 0.1,
        final_kernel: int = 1,
        init: InitName = "official",
    ) -> None:
        super().__init__(HRNET_CONFIGS[backbone], align_corners=align_corners, norm_layer=norm_layer, bn_momentum=bn_momentum)
        self.backbone_name = backbone
        self.num_classes = num_classes
        self.last_layer = make_fcn_head(self.num_features, num_classes, functools.partial(norm_layer, momentum=bn_momentum), final_kernel)
        initialize(self, init, official_skip=())

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.last_layer(self.forward_features(x))}


class HRNetOCR(HighResolutionNet):
    """HRNetV2 + OCR head (``seg_hrnet_ocr.py``). Attribute order = official key order."""

    head_name = "ocr"
    head_prefixes: tuple[str, ...] = ("conv3x3_ocr.", "ocr_distri_head.", "cls_head.", "aux_head.")

    def __init__(
        self,
        backbone: str,
        num_classes: int,
        *,
        align_corners: bool = True,
        norm_layer: NormLayer = nn.BatchNorm2d,
        bn_momentum: float = 0.1,
        mid_channels: int = 512,
        key_channels: int = 256,
        dropout: float = 0.05,
        init: InitName = "official",
    ) -> None:
        super().__init__(HRNET_CONFIGS[backbone], align_corners=align_corners, norm_layer=norm_layer, bn_momentum=bn_momentum)
        self.backbone_name = backbone
        self.num_classes = num_classes
        norm = functools.partial(norm_layer, momentum=bn_momentum)
        self.conv3x3_ocr = nn.Sequential(
            nn.Conv2d(self.num_features, mid_channels, kernel_size=3, padding=1),
            norm(mid_channels),
            nn.ReLU(inplace=True),
        )
        self.ocr_gather_head = SpatialGather()
        self.ocr_distri_head = SpatialOCR(mid_channels, key_channels, mid_channels, norm, dropout)
        self.cls_head = nn.Conv2d(mid_channels, num_classes, kernel_size=1)
        self.aux_head = make_fcn_head(self.num_features, num_classes, norm)
        # The official init skips every module whose name contains 'cls', 'aux' or 'ocr':
        # those keep PyTorch's default initialisation.
        initialize(self, init, official_skip=("cls", "aux", "ocr"))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.forward_features(x)
        aux = self.aux_head(feats)
        feats = self.conv3x3_ocr(feats)
        context = self.ocr_gather_head(feats, aux)
        out = self.cls_head(self.ocr_distri_head(feats, context))
        return {"out": out, "aux": aux}


SegmentationModel = HRNetFCN | HRNetOCR


def resize_logits(
    logits: torch.Tensor,
    size: Sequence[int] | None,
    *,
    align_corners: bool,
    pad: Sequence[int] = (0, 0),
) -> torch.Tensor:
    """Logits (``N x K x h x w``) of a model, with ``pad = (pad_h, pad_w)`` rows/columns of
    bottom/right padding cropped, then bilinearly resized to ``size`` (height, width) unless
    they have that size already (``None``: crop only). ``align_corners`` is the
    ``align_corners`` of the model the logits come from (``model.align_corners``).

    Resizing to the same size is the identity, so skipping it changes no value; the result may
    then be ``logits`` itself (or a view of it)."""
    pad_h, pad_w = int(pad[0]), int(pad[1])
    if pad_h or pad_w:
        logits = logits[:, :, : logits.shape[-2] - pad_h, : logits.shape[-1] - pad_w]
    if size is not None and tuple(logits.shape[-2:]) != tuple(size):
        logits = resize_to(logits, (int(size[0]), int(size[1])), align_corners)
    return logits
HEADS: dict[str, type[HRNetFCN] | type[HRNetOCR]] = {"fcn": HRNetFCN, "ocr": HRNetOCR}


def init_official(model: nn.Module, skip: tuple[str, ...]) -> None:
    """Official ``init_weights`` without a checkpoint: conv weights ~ N(0, 0.001^2), BN
    weight 1 / bias 0; conv biases keep PyTorch's default; modules named with ``skip``
    substrings are left alone."""
    for name, module in model.named_modules():
        if any(part in name for part in skip):
            continue
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, std=0.001)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def init_kaiming(model: nn.Module) -> None:
    """He-normal convolutions (fan-out, ReLU), zero conv biases, BN weight 1 / bias 0.

    For training from scratch: the official N(0, 0.001^2) is meant to be overwritten by
    ImageNet weights, and from scratch it learns several times slower (README, "Embedded
    profile")."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def initialize(model: nn.Module, init: str, official_skip: tuple[str, ...]) -> None:
    if init == "official":
        init_official(model, skip=official_skip)
    elif init == "kaiming":
        init_kaiming(model)
    else:
        raise HrsegError(f"unknown init {init!r}; valid: official, kaiming")


def _unknown(kind: str, name: str, valid: list[str]) -> HrsegError:
    return HrsegError(f"unknown {kind} {name!r}; valid: {', '.join(sorted(valid))}")


def build_model(
    backbone: str,
    head: str,
    num_classes: int,
    align_corners: bool = True,
    *,
    norm_layer: NormLayer = nn.BatchNorm2d,
    bn_momentum: float = 0.1,
    ocr_mid_channels: int = 512,
    ocr_key_channels: int = 256,
    ocr_dropout: float = 0.05,
    final_kernel: int = 1,
    init: InitName = "official",
) -> SegmentationModel:
    """Build an HRNetV2 segmentation model.

    ``backbone`` is one of ``hrnetv2_w18_small_v1``, ``hrnetv2_w18_small_v2``, ``hrnetv2_w18``,
    ``hrnetv2_w32``, ``hrnetv2_w48``; ``head`` is ``fcn`` or ``ocr``. ``align_corners`` is used
    by every bilinear resize inside this model and becomes ``model.align_corners``, which
    losses, validation and inference read (default: the official code's, True).
    """
    if backbone not in HRNET_CONFIGS:
        raise _unknown("backbone", backbone, list(HRNET_CONFIGS))
    if head not in HEADS:
        raise _unknown("head", head, list(HEADS))
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    common = dict(align_corners=align_corners, norm_layer=norm_layer, bn_momentum=bn_momentum, init=init)
    if head == "ocr":
        return HRNetOCR(backbone, num_classes, mid_channels=ocr_mid_channels, key_channels=ocr_key_channels, dropout=ocr_dropout, **common)
    return HRNetFCN(backbone, num_classes, final_kernel=final_kernel, **common)


def build_model_from_config(cfg: ModelConfig, norm_layer: NormLayer = nn.BatchNorm2d) -> SegmentationModel:
    return build_model(
        cfg.backbone,
        cfg.head,
        cfg.num_classes,
        cfg.align_corners,
        norm_layer=norm_layer,
        bn_momentum=cfg.bn_momentum,
        ocr_mid_channels=cfg.ocr_mid_channels,
        ocr_key_channels=cfg.ocr_key_channels,
        ocr_dropout=cfg.ocr_dropout,
        init=cfg.init,
    )


#: ``"<backbone>_<head>"`` -> builder taking ``num_classes`` and keyword options.
MODELS: dict[str, Callable[..., SegmentationModel]] = {
    f"{backbone}_{head}": functools.partial(build_model, backbone, head) for backbone in HRNET_CONFIGS for head in HEADS
}


def parse_model_name(name: str) -> tuple[str, str]:
    """``hrnetv2_w48_ocr`` -> (``hrnetv2_w48``, ``ocr``); a bare backbone name means FCN."""
    if name in HRNET_CONFIGS:
        return name, "fcn"
    if name in MODELS:
        backbone, _, head = name.rpartition("_")
        return backbone, head
    raise _unknown("model", name, list(MODELS) + list(HRNET_CONFIGS))
