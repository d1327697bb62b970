"""Winograd F(4x4, 3x3) by batched matrix products, for HRNet's wide branch convolutions on CPU.

Why: the direct convolutions of HRNet's branches already run near the CPU's multiply-add peak
(``benchmarks/results/profile.md``), and NNPACK's Winograd kernel, which pays for OCR's large
layer (``hrseg.models.winograd``), is slower than oneDNN at the branches' sizes. This module
computes the same transform with PyTorch's own operators: the input tiles' transform and the
output tiles' inverse transform are small matrix products over whole maps, and the 36
channel-mixing products, which hold the multiplications, are one batched matrix product
(MKL), 4x fewer multiply-adds than the direct convolution. On the 2-core development CPU a
single 3x3 layer at W48's 512x1024 sizes ran 1.23-1.25x (96 channels at 64x128), 1.56-1.57x
(192 at 32x64) and 1.53-1.72x (384 at 16x32) faster than oneDNN's channels_last kernel (two
runs), and 0.6-1.0x at
48-72 channels, where the transforms' memory traffic outweighs the saved multiplications
(``benchmarks/results/winograd.md``; :class:`TileRule` says which layers take it).

How: the output is cut into 4x4 tiles; tile ``t`` reads the 6x6 input patch around it. With
the matrices of Winograd's minimal filtering algorithm (Lavin and Gray, Fast Algorithms for
Convolutional Neural Networks, 2016; the points are chosen for accuracy, see ``_BT``), the
output tile is ``A^T [(G g G^T) * (B^T d B)] A`` summed over
input channels, where ``g`` is a 3x3 kernel and ``d`` a patch. ``G g G^T`` is computed once
per layer in float64 and stored (36 x in x out floats, 4x the weight). Per call:

1. zero-pad the channels_last input by one pixel (and up to a multiple of 4), writing zeros
   only to the border;
2. ``B^T`` along the rows of all patches at once (one product of a 6x6 matrix with the
   padded rows, read through a strided view);
3. gather the 6x6 patches into (6, 6, tiles, channels) and apply ``B`` along the columns;
4. one batched product: for each of the 36 positions, (tiles x in) @ (in x out); the bias is
   added at the position that ``A`` spreads evenly over a tile (column 1 of ``A^T`` is all ones);
5. ``A^T`` along both tile axes, and scatter the 4x4 tiles into a channels_last output.

Numerics: float32 throughout; the transforms' coefficients (up to 8 in ``A^T``, 5/2 in
``B^T``) grow rounding errors: 2-3x the direct kernel's on random layers (``_BT``), against
about 10x for NNPACK's F(6x6, 3x3), which the ``winograd`` path already uses for OCR's layer. The inference-path tests hold
the whole model to the same tolerances as every other float32 path, with every 3x3 layer of
the parity model on this route.

Inference only (no autograd): the ``winograd`` path wraps frozen copies of the layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

#: F(4x4, 3x3) by Cook and Toom's construction at the points 0, 1, -1, 1/2, -2 (and infinity).
#: The choice of points decides the rounding: Lavin and Gray's 0, 1, -1, 2, -2 (integer
#: matrices) gave 6.4e-6 of the output's largest magnitude on a random 96-channel layer, these
#: 2.3-2.6e-6, against 1.1e-6 for the direct convolution (the point set follows Barabasz et al.,
#: "Error analysis and improving the accuracy of Winograd convolution for deep neural
#: networks", 2020). Every entry of B^T and A^T is a dyadic fraction, exact in float32.
_BT = (
    (1, -3 / 2, -2, 3 / 2, 1, 0),
    (0, -1, 1 / 2, 5 / 2, 1, 0),
    (0, 1, -5 / 2, 1 / 2, 1, 0),
    (0, -2, -1, 2, 1, 0),
    (0, 1 / 2, -1, -1 / 2, 1, 0),
    (0, 1, -3 / 2, -2, 3 / 2, 1),
)
_G = (
    (1, 0, 0),
    (1 / 3, 1 / 3, 1 / 3),
    (-1 / 3, 1 / 3, -1 / 3),
    (-16 / 15, -8 / 15, -4 / 15),
    (1 / 15, -2 / 15, 4 / 15),
    (0, 0, 1),
)
_AT = (
    (1, 1, 1, 1, 1, 0),
    (0, 1, -1, 1 / 2, -2, 0),
    (0, 1, 1, 1 / 4, 4, 0),
    (0, 1, -1, 1 / 8, -8, 1),
)
TILE = 4  #: output tile size m
PATCH = TILE + 2  #: input patch size m + r - 1
_BIAS_POSITION = 1 * PATCH + 1  #: (row 1, column 1): A^T's all-ones column in both directions


def transform_matrices(dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(B^T, G, A^T)`` as tensors of ``dtype``."""
    return tuple(torch.tensor(m, dtype=dtype) for m in (_BT, _G, _AT))  # type: ignore[return-value]


def transform_kernel(weight: torch.Tensor) -> torch.Tensor:
    """``G g G^T`` of every (out, in) 3x3 kernel of ``weight`` (out, in, 3, 3), computed in
    float64 and returned as (36, in, out) in ``weight``'s dtype, position ``column * 6 + row``
    (the order :func:`winograd_conv3x3` produces the input tiles in)."""
    _, g, _ = transform_matrices(torch.float64)
    g = g.to(weight.device)
    u = torch.einsum("ar,oirs,bs->baio", g, weight.detach().double(), g)
    return u.reshape(PATCH * PATCH, weight.shape[1], weight.shape[0]).to(weight.dtype).contiguous()


def data_transforms(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B^T, A^T)``, the two matrices :func:`winograd_conv3x3` applies to the data."""
    bt, _, at = transform_matrices(dtype)
    return bt.to(device), at.to(device)


def winograd_conv3x3(x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None, data_matrices: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """3x3, stride-1, padding-1 convolution of ``x`` (N, C, H, W) with a kernel transformed by
    :func:`transform_kernel` (36, C, K) and ``bias`` (K,) or None; the output (N, K, H, W) is
    channels_last. ``x`` in any memory format (channels_last costs no copy). ``data_matrices``:
    ``(B^T, A^T)`` in ``x``'s dtype and device, made here when not given (a layer keeps its own,
    so that its calls do not build them again)."""
    n, c, h, w = x.shape
    k = kernel.shape[2]
    bt, at = data_transforms(x.dtype, x.device) if data_matrices is None else data_matrices
    rows, cols = -(-h // TILE), -(-w // TILE)
    tiles = n * rows * cols
    width = cols * TILE + 2
    # zero only the border (one pixel, and up to the tiles' multiple of 4), then copy the interior
    padded = x.new_empty((n, rows * TILE + 2, width, c))
    padded[:, 0].zero_()
    padded[:, h + 1 :].zero_()
    padded[:, 1 : h + 1, 0].zero_()
    padded[:, 1 : h + 1, w + 1 :].zero_()
    padded[:, 1 : h + 1, 1 : w + 1] = x.permute(0, 2, 3, 1)
    s_n, s_h = padded.stride(0), padded.stride(1)
    # 2. B^T along the rows of every patch: (n, rows, 6 row positions, width * c)
    row_windows = padded.as_strided((n, rows, PATCH, width * c), (s_n, TILE * s_h, s_h, 1))
    half = torch.matmul(bt, row_windows)
    # 3. gather the patches as (column j, row position a, tiles, c), then B along the columns
    t = half.stride()
    patches = half.as_strided((PATCH, PATCH, n, rows, cols, c), (c, t[2], t[0], t[1], TILE * c, 1)).contiguous()
    transformed = torch.matmul(bt, patches.view(PATCH, -1)).view(PATCH * PATCH, tiles, c)
    # 4. channel mixing at each of the 36 positions (position column * 6 + row here)
    products = torch.bmm(transformed, kernel)
    if bias is not None:
        products[_BIAS_POSITION] += bias
    # 5. A^T along the columns, then the rows: (out column y, out row x, tiles * k)
    tiles_out = torch.matmul(at, torch.matmul(at, products.view(PATCH, -1)).view(TILE, PATCH, tiles * k))
    out = x.new_empty((n, rows * TILE, cols * TILE, k))
    o = out.stride()
    out.as_strided((TILE, TILE, n, rows, cols, k), (o[2], o[1], o[0], TILE * o[1], TILE * o[2], 1)).copy_(tiles_out.view(TILE, TILE, n, rows, cols, k))
    if rows * TILE != h or cols * TILE != w:
        out = out[:, :h, :w].contiguous()
    return out.permute(0, 3, 1, 2)


def is_plain_3x3(conv: nn.Module) -> bool:
    """A plain ``nn.Conv2d`` (not a subclass) with a 3x3 kernel, stride 1, padding 1 of zeros,
    no dilation and no groups: the convolutions a Winograd F(m x m, 3x3) transform computes."""
    return (
        type(conv) is nn.Conv2d
        and conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and conv.padding == (1, 1)
    )


def cpu_float32_call_takes(x: torch.Tensor, weight: torch.Tensor, rule) -> bool:
    """Whether a CPU Winograd layer computes this call (anything else runs the direct
    convolution): ``x`` and ``weight`` are float32 CPU tensors, CPU autocast is off, and
    ``rule`` (anything with ``takes_input``) takes ``x``."""
    on_cpu_float32 = x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
    return on_cpu_float32 and not torch.is_autocast_enabled("cpu") and rule.takes_input(x)


def frozen_call_takes(x: torch.Tensor, conv: nn.Conv2d, weight: torch.Tensor, rule) -> bool:
    """Whether an inference-only Winograd layer wrapping ``conv`` (its own copy of the weights
    is ``weight``) computes this call: no autograd is needed and :func:`cpu_float32_call_takes`."""
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or conv.weight.requires_grad)
    return not needs_grad and cpu_float32_call_takes(x, weight, rule)


@dataclass(frozen=True)
class TileRule:
    """Which 3x3 convolutions :class:`TiledWinogradConv2d` takes: those with at least
    ``min_channels`` inputs and outputs, on inputs whose pixels times the layer's input
    channels reach ``min_channel_pixels``.

    The defaults follow the "Branch layers" rows of ``benchmarks/bench_winograd.py`` (2-core
    development CPU, two runs on 2026-12-03, the second in ``benchmarks/results/winograd.md``):
    against oneDNN's channels_last kernel, 96 channels ran 1.07-1.25x faster at 32x64 pixels and
    above, 128-144 channels 1.11-1.41x, 192 channels 1.25-1.84x and 384 channels 1.53-2.27x from
    16x32 pixels; below 65,536 channel-pixels (96 channels at 16x32, 144-384 at 8x16 and less)
    they ran 0.74-1.04x, and 48-72 channels 0.61-1.02x. In W48 that takes the 1/8, 1/16 and 1/32 branches
    (96, 192 and 384 channels) at 512x1024 (145 layers), in W18-Small-v2 the 1/32 branch (144
    channels) on inputs from 512x1024."""

    min_channels: int = 96
    min_channel_pixels: int = 128 * 16 * 32

    def takes_layer(self, conv: nn.Module) -> bool:
        return is_plain_3x3(conv) and min(conv.in_channels, conv.out_channels) >= self.min_channels

    def takes_input(self, x: torch.Tensor) -> bool:
        return x.shape[-3] * x.shape[-2] * x.shape[-1] >= self.min_channel_pixels


class TiledWinogradConv2d(nn.Module):
    """A 3x3 convolution computed by :func:`winograd_conv3x3` on float32 CPU inputs that
    ``rule`` takes, without autograd; the wrapped ``nn.Conv2d`` otherwise. The output is
    channels_last on the Winograd route (the ``winograd`` inference path runs channels_last
    throughout). The transformed kernel is computed when the layer is wrapped (the inference
    paths freeze the weights), so later changes to ``conv``'s weights do not reach it."""

    def __init__(self, conv: nn.Conv2d, rule: TileRule) -> None:
        super().__init__()
        if not rule.takes_layer(conv):
            raise ValueError(f"{conv} is not a layer the tile rule {rule} takes")
        self.conv = conv
        self.rule = rule
        self.register_buffer("tile_kernel", transform_kernel(conv.weight), persistent=False)
        self.register_buffer("tile_bias", None if conv.bias is None else conv.bias.detach().clone(), persistent=False)
        bt, at = data_transforms(conv.weight.dtype, conv.weight.device)
        self.register_buffer("tile_bt", bt, persistent=False)
        self.register_buffer("tile_at", at, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not frozen_call_takes(x, self.conv, self.tile_kernel, self.rule):
            return self.conv(x)
        return winograd_conv3x3(x, self.tile_kernel, self.tile_bias, (self.tile_bt, self.tile_at))
