"""Winograd convolutions for the large 3x3 layers on CPU (NNPACK), for inference and training.

Why: on a CPU the fp32 paths already run the convolutions near the machine's matrix-multiply
rate (``benchmarks/RESULTS.md``), so only fewer multiplications can make them much faster.
NNPACK, which PyTorch's CPU wheels ship, computes a 3x3 convolution by Winograd's F(6x6, 3x3)
transform: 5.1x fewer multiplications, paid for by transforming input, kernel and output
tiles. That pays only when a layer has many channels *and* many pixels. In HRNet+OCR one layer
is such a layer: OCR's ``conv3x3_ocr`` (720 -> 512 channels for W48, 270 -> 512 for
W18-Small-v2, at 1/4 of the input resolution), a third of W48+OCR's multiply-adds and close to
half of W18-Small-v2+OCR's. On the 2-core development CPU it ran 1.6-2.1x faster this way for
512x1024 and 1024x2048 inputs, the layout conversions included (``benchmarks/bench_winograd.py``).
The backbone's branch convolutions (48-384 channels) are slower that way, or at best equal, at
the sizes they run at; for inference, the wide ones (96 channels and more) go through
``hrseg.models.winograd_tiles`` instead (F(4x4, 3x3) by batched matrix products, which pays
at their sizes), and the narrow ones keep oneDNN's direct convolution.

Numerics: the Winograd transforms round differently from a direct convolution. Measured on
the OCR layers, the error against float64 is 1.2-1.6e-5 of the output's largest magnitude,
against 2-4e-6 for the direct kernel; the inference-path tests hold the whole model to the
same tolerances as every other float32 path.

Memory: NNPACK keeps a per-thread workspace after its first call, sized by the largest input
it has seen: about 610 MiB for W48+OCR's layer at 1024x2048 (a 256x512 input), 170 MiB at
512x1024. A single 1024x2048 W48+OCR forward added 2.2-2.4 GiB to the resident size against
1.6 GiB for ``folded_cl`` (measured 2026-12-01, fresh processes); pick ``folded_cl`` where
that matters.

``WinogradRule`` says which layers and which inputs take this route; it is decided per call
from the input's size, so one prepared model serves every scale and window size.

Two layers use it. ``WinogradConv2d`` (the ``winograd`` inference path) wraps a frozen copy
of a convolution. ``TrainableWinogradConv2d`` (training, ``train.winograd``) is an
``nn.Conv2d`` with the same parameters and state-dict keys whose forward *and input gradient*
run as Winograd: the input gradient of a 3x3 stride-1 convolution is itself a 3x3 stride-1
convolution (of the output gradient, with the kernel flipped and its channels swapped), which
NNPACK ran 2.7x faster than oneDNN's backward for OCR's layer of W18-Small-v2 at 64x128
(125 against 333 ms). The weight gradient stays with oneDNN.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from hrseg.models.winograd_tiles import TiledWinogradConv2d, TileRule, cpu_float32_call_takes, frozen_call_takes, is_plain_3x3

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WinogradRule:
    """Which 3x3 convolutions run as Winograd: those with at least ``min_out_channels``
    outputs and ``min_channel_product`` input x output channels, on inputs of at least
    ``min_pixels`` (height x width) pixels.

    The defaults follow the layer table of ``benchmarks/bench_winograd.py`` (2-core development
    CPU, 2026-12-01/02, three runs): with 512 outputs (OCR's layer) Winograd was 0.9-1.6x the
    direct kernel at 32x64 pixels (break-even for 270 inputs, a gain for 720), 1.5-2.6x at
    64x128 and above, and 0.5-0.66x at 16x32. Layers with fewer outputs
    break even only at 64x128 pixels (384 -> 384: 1.66x there, 0.94x at 32x64; 256 -> 256:
    1.36x / 0.77x; 128 -> 128 at 128x256: 0.88x); HRNet's such 3x3 layers (the 1/32 branch,
    256-384 channels) reach that size only on inputs of 2048x4096, so they are left out, and
    a model without OCR has no layer the default rule takes."""

    min_out_channels: int = 512
    min_channel_product: int = 256 * 512
    min_pixels: int = 32 * 64

    def takes_layer(self, conv: nn.Conv2d) -> bool:
        return is_plain_3x3(conv) and conv.out_channels >= self.min_out_channels and conv.in_channels * conv.out_channels >= self.min_channel_product

    def takes_input(self, x: torch.Tensor) -> bool:
        return x.shape[-2] * x.shape[-1] >= self.min_pixels


def _nchw_copy(x: torch.Tensor) -> torch.Tensor:
    """``x`` as dense NCHW. A channels_last batch is copied image by image as the transpose
    of each image's (pixels x channels) matrix, which PyTorch copies block by block: 40-60 ms
    for OCR's 512-720 x 128 x 256 maps on the development CPU, against 57-107 ms for
    ``contiguous()``'s element-wise copy (one-off timings, 2026-12-02, median of 7)."""
    if not _is_channels_last(x):
        return x.contiguous()
    n, c, h, w = x.shape
    out = torch.empty((n, c, h, w), dtype=x.dtype, device=x.device)
    for i in range(n):
        out[i].view(c, h * w).copy_(x[i].permute(1, 2, 0).reshape(h * w, c).t())
    return out


def _nnpack_per_image(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, padding: list[int]) -> torch.Tensor:
    """NNPACK's convolution of ``x`` with dense NCHW ``weight`` and ``bias``, one image per
    call: PyTorch hands a batch of one to NNPACK's inference kernel (Winograd for 3x3) and
    larger batches to its training kernel, slower here. Each image's NCHW copy is freed
    before the next one is made. The output is dense NCHW."""
    outputs = []
    for i in range(x.shape[0]):
        image = _nchw_copy(x[i : i + 1])
        outputs.append(torch._nnpack_spatial_convolution(image, weight, bias, padding, [1, 1]))
        del image
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _as_format(y: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """Dense NCHW ``y`` as it is, or copied to channels_last image by image, each as the
    transpose of its (channels x pixels) matrix (see :func:`_nchw_copy`)."""
    if not channels_last:
        return y
    n, c, h, w = y.shape
    out = torch.empty((n, h, w, c), dtype=y.dtype, device=y.device)
    for i in range(n):
        out[i].view(h * w, c).copy_(y[i].view(c, h * w).t())
    return out.permute(0, 3, 1, 2)


def winograd_available() -> bool:
    """True when this PyTorch build has NNPACK and it initialises on this CPU (it needs AVX2
    on x86-64, NEON on ARM). The first call initialises NNPACK; its thread pool is created at
    its first convolution with ``torch.get_num_threads()`` threads and keeps that size."""
    return bool(torch.backends.nnpack.is_available() and torch._nnpack_available())


class WinogradConv2d(nn.Module):
    """A 3x3 convolution that runs NNPACK's Winograd kernel on large enough float32 CPU
    inputs without autograd, and the wrapped ``nn.Conv2d`` otherwise. The output has the
    input's memory format either way. The weights are copied when the layer is wrapped (the
    inference paths freeze them), so later changes to ``conv``'s weights do not reach NNPACK."""

    def __init__(self, conv: nn.Conv2d, rule: WinogradRule) -> None:
        super().__init__()
        if not rule.takes_layer(conv):
            raise ValueError(f"{conv} is not a layer the Winograd rule {rule} takes")
        self.conv = conv
        self.rule = rule
        # NNPACK reads the weight and bias memory as they are: keep dense NCHW copies.
        weight = conv.weight.detach().contiguous(memory_format=torch.contiguous_format)
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels, dtype=weight.dtype, device=weight.device)
        self.register_buffer("nchw_weight", weight.clone(), persistent=False)
        self.register_buffer("nchw_bias", bias.contiguous().clone(), persistent=False)

    def _takes(self, x: torch.Tensor) -> bool:
        return frozen_call_takes(x, self.conv, self.nchw_weight, self.rule)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._takes(x):
            return self.conv(x)
        return _as_format(_nnpack_per_image(x, self.nchw_weight, self.nchw_bias, list(self.conv.padding)), _is_channels_last(x))


class _WinogradConvFunction(torch.autograd.Function):
    """3x3, stride-1, padding-1 convolution: forward and input gradient by NNPACK (Winograd),
    the weight gradient (a correlation of the input with the output gradient over all pixels,
    which has no Winograd kernel here) by oneDNN. Outputs keep the input's memory format."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:  # type: ignore[override]
        x_nchw, w_nchw = _nchw_copy(x), weight.detach().contiguous()
        ctx.save_for_backward(x_nchw, w_nchw)
        ctx.has_bias, ctx.channels_last = bias is not None, _is_channels_last(x)
        b = bias.detach() if bias is not None else w_nchw.new_zeros(w_nchw.shape[0])
        return _as_format(_nnpack_per_image(x_nchw, w_nchw, b, [1, 1]), ctx.channels_last)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad = _nchw_copy(grad)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            flipped = weight.flip(2, 3).transpose(0, 1).contiguous()
            grad_x = _as_format(_nnpack_per_image(grad, flipped, weight.new_zeros(weight.shape[1]), [1, 1]), ctx.channels_last)
        if ctx.needs_input_grad[1]:
            grad_w = torch.ops.aten.convolution_backward(grad, x, weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [False, True, False])[1]
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b


class TrainableWinogradConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (same parameters, same state-dict keys) whose forward and input
    gradient run NNPACK's Winograd kernel on float32 CPU inputs that ``rule`` takes, outside
    autocast; every other input runs ``nn.Conv2d``'s own forward. Made by
    :func:`use_winograd_training`, which hands it the original layer's parameter objects, so an
    optimizer built before or after the swap updates the same tensors."""

    def __init__(self, conv: nn.Conv2d, rule: WinogradRule) -> None:
        if not rule.takes_layer(conv):
            raise ValueError(f"{conv} is not a layer the Winograd rule {rule} takes")
        super().__init__(conv.in_channels, conv.out_channels, 3, padding=1, bias=conv.bias is not None, device="meta")
        self.weight, self.bias = conv.weight, conv.bias
        self.train(conv.training)
        self.rule = rule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not cpu_float32_call_takes(x, self.weight, self.rule):
            return super().forward(x)
        return _WinogradConvFunction.apply(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + ", winograd=NNPACK"


def has_winograd_layers(model: nn.Module, rule: WinogradRule | None = None) -> bool:
    """Whether ``model`` has a convolution that ``rule`` takes (the embedded profile's small
    OCR models have none)."""
    rule = rule or WinogradRule()
    return any(isinstance(m, nn.Conv2d) and rule.takes_layer(m) for m in model.modules())


def _nnpack_or_say_why() -> bool:
    """:func:`winograd_available`, logging why nothing is replaced when it is False."""
    if winograd_available():
        return True
    log.info("NNPACK is not available on this machine: no Winograd convolutions")
    return False


def _replace_layers(model: nn.Module, takes, make) -> list[str]:
    """Replace every ``nn.Conv2d`` of ``model`` that ``takes`` by ``make(conv)``; their names."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d) and takes(module)]
    for name in names:
        parent_name, _, leaf = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, leaf, make(getattr(parent, leaf)))
    return names


def use_winograd_training(model: nn.Module, rule: WinogradRule | None = None) -> list[str]:
    """Replace, in place, every convolution of ``model`` that ``rule`` takes by a
    :class:`TrainableWinogradConv2d` sharing its parameters; returns the replaced modules'
    names (none when NNPACK is not available here). State-dict keys do not change, so
    checkpoints load and save as before."""
    if not _nnpack_or_say_why():
        return []
    rule = rule or WinogradRule()
    names = _replace_layers(model, rule.takes_layer, lambda conv: TrainableWinogradConv2d(conv, rule))
    log.debug("Winograd (NNPACK) for %d convolutions in training: %s", len(names), ", ".join(names))
    return names


def use_winograd(model: nn.Module, rule: WinogradRule | None = None, tile_rule: TileRule | None = None) -> list[str]:
    """Replace, in place, every convolution of ``model`` that ``rule`` takes by a
    :class:`WinogradConv2d` (NNPACK) wrapping it, then every other one that ``tile_rule``
    takes by a :class:`~hrseg.models.winograd_tiles.TiledWinogradConv2d` (HRNet's wide branch
    convolutions); returns the replaced modules' names, NNPACK's first. Replaces nothing when
    NNPACK is not available here (see :func:`winograd_available`): the ``winograd`` inference
    path, which calls this, is then not chosen by ``auto``."""
    if not _nnpack_or_say_why():
        return []
    rule, tile_rule = rule or WinogradRule(), tile_rule or TileRule()
    nnpack = _replace_layers(model, rule.takes_layer, lambda conv: WinogradConv2d(conv, rule))
    tiled = _replace_layers(model, lambda conv: tile_rule.takes_layer(conv) and not rule.takes_layer(conv), lambda conv: TiledWinogradConv2d(conv, tile_rule))
    log.debug("Winograd for %d convolutions by NNPACK (%s) and %d by tiles", len(nnpack), ", ".join(nnpack), len(tiled))
    return nnpack + tiled
