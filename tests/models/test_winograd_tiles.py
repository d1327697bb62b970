"""Winograd F(4x4, 3x3) by batched matrix products (hrseg.models.winograd_tiles): the transform
matrices, the convolution against float64, the layer's fallbacks and the default rule."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hrseg.models import winograd_tiles
from hrseg.models.winograd_tiles import TiledWinogradConv2d, TileRule, transform_kernel, transform_matrices, winograd_conv3x3

TOL_SCALED = 1e-4  # the NNPACK layer's bound (tests/models/test_winograd.py); measured 0.6-1.1e-5
SMALL_RULE = TileRule(min_channels=8, min_channel_pixels=16 * 16)


def scaled_error(got: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor) -> float:
    truth = F.conv2d(x.double(), weight.double(), None if bias is None else bias.double(), padding=1)
    return ((got.double() - truth).abs().max() / truth.abs().max()).item()


def test_matrices_compute_a_one_dimensional_correlation_exactly():
    bt, g, at = transform_matrices(torch.float64)
    assert bt.shape == (6, 6) and g.shape == (6, 3) and at.shape == (4, 6)
    torch.manual_seed(0)
    for _ in range(5):
        d, k = torch.randn(6, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
        expected = torch.stack([(d[i : i + 3] * k).sum() for i in range(4)])
        torch.testing.assert_close(at @ ((g @ k) * (bt @ d)), expected, rtol=0, atol=1e-12)
    assert torch.equal(at[:, 1], torch.ones(4, dtype=torch.float64))  # where the bias goes in


@pytest.mark.parametrize(
    ("shape", "out_channels", "bias", "channels_last"),
    [
        ((1, 16, 16, 32), 24, True, True),  # tiles fit exactly
        ((2, 24, 13, 21), 8, True, True),  # a batch, sizes not multiples of 4 (cropped)
        ((1, 8, 7, 5), 16, False, False),  # no bias, NCHW input
        ((1, 8, 1, 1), 4, True, True),  # one pixel: every neighbour is padding
    ],
)
def test_convolution_matches_float64(shape, out_channels, bias, channels_last):
    torch.manual_seed(0)
    x = torch.randn(shape)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(out_channels, shape[1], 3, 3)
    b = torch.randn(out_channels) if bias else None
    got = winograd_conv3x3(x, transform_kernel(weight), b)
    assert got.shape == (shape[0], out_channels, *shape[2:]) and got.dtype == torch.float32
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert scaled_error(got, weight, b, x) <= TOL_SCALED


@pytest.mark.parametrize("shape", [(1, 16, 16, 32), (2, 24, 13, 21), (1, 8, 7, 5), (1, 8, 1, 1)])
def test_padding_writes_every_border_element_it_reads(monkeypatch, shape):
    """The padded buffer starts uninitialised and only its border is zeroed: filling fresh buffers
    with NaN must not change a single output bit (a missed border element would spread NaN)."""
    torch.manual_seed(0)
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    kernel, bias = transform_kernel(torch.randn(8, shape[1], 3, 3)), torch.randn(8)
    expected = winograd_conv3x3(x, kernel, bias)
    new_empty = torch.Tensor.new_empty
    monkeypatch.setattr(torch.Tensor, "new_empty", lambda self, size, **kw: new_empty(self, size, **kw).fill_(float("nan")))
    assert torch.equal(winograd_conv3x3(x, kernel, bias), expected)


def conv(cin: int = 16, cout: int = 16, **kwargs) -> nn.Conv2d:
    torch.manual_seed(0)
    return nn.Conv2d(cin, cout, 3, padding=1, **kwargs).eval()


def test_layer_runs_tiles_on_large_float32_inputs_without_autograd(monkeypatch):
    layer = conv()
    wrapped = TiledWinogradConv2d(layer, SMALL_RULE)
    calls = []
    tiled = winograd_tiles.winograd_conv3x3
    monkeypatch.setattr(winograd_tiles, "winograd_conv3x3", lambda x, *a: calls.append(tuple(x.shape)) or tiled(x, *a))
    x = torch.randn(2, 16, 8, 12).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        got = wrapped(x)
        assert calls == [(2, 16, 8, 12)]
        assert scaled_error(got, layer.weight, layer.bias, x) <= TOL_SCALED
        assert torch.equal(got, tiled(x, wrapped.tile_kernel, wrapped.tile_bias))  # the layer's own B^T, A^T are the same
        small = torch.randn(1, 16, 3, 5)  # 16 x 15 channel-pixels < 256: the direct convolution
        assert torch.equal(wrapped(small), layer(small))
        assert wrapped.double()(torch.randn(1, 16, 8, 8, dtype=torch.float64)).dtype == torch.float64
    wrapped.float()
    x = torch.randn(1, 16, 8, 8, requires_grad=True)  # autograd needs the direct kernel
    wrapped(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert calls == [(2, 16, 8, 12)]


def test_layer_rejects_what_the_rule_does_not_take():
    for layer in (conv(16, 16, stride=2), conv(16, 16, dilation=2), conv(16, 16, groups=2), nn.Conv2d(16, 16, 1), conv(4, 16)):
        with pytest.raises(ValueError, match="not a layer the tile rule"):
            TiledWinogradConv2d(layer, SMALL_RULE)


def test_default_rule_takes_the_wide_branches_of_hrnet_at_evaluation_sizes():
    rule = TileRule()
    for c in (96, 128, 144, 192, 384):
        assert rule.takes_layer(nn.Conv2d(c, c, 3, padding=1)), c
    for c in (18, 36, 48, 72):
        assert not rule.takes_layer(nn.Conv2d(c, c, 3, padding=1)), c
    assert rule.takes_input(torch.empty(1, 96, 32, 64)) and rule.takes_input(torch.empty(1, 128, 16, 32))
    assert not rule.takes_input(torch.empty(1, 96, 16, 32)) and not rule.takes_input(torch.empty(1, 384, 8, 16))
