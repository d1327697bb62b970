"""hrseg.evaluation.winograd: NNPACK's Winograd kernel for the large 3x3 convolutions.

Tolerance: a float32 convolution summing 300 x 9 products is ~1e-6 of the output's largest
magnitude from float64 (oneDNN's direct kernel) and ~1e-5 by Winograd F(6x6, 3x3), whose
transforms scale tile values by up to ~100 before rounding. 1e-4 is ten times the Winograd
rounding; a wrong layer (a padding, a transposed kernel, a missing bias) is off by O(1).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hrseg.evaluation.winograd import WinogradConv2d, WinogradRule, use_winograd, winograd_available

pytestmark = pytest.mark.skipif(not winograd_available(), reason="NNPACK does not run on this CPU")

TOL_SCALED = 1e-4
SMALL_RULE = WinogradRule(min_out_channels=64, min_channel_product=64 * 64, min_pixels=16 * 16)


def conv(cin: int = 64, cout: int = 80, *, bias: bool = True, **kwargs) -> nn.Conv2d:
    torch.manual_seed(0)
    layer = nn.Conv2d(cin, cout, 3, padding=1, bias=bias, **kwargs)
    nn.init.kaiming_normal_(layer.weight)
    if bias:
        nn.init.normal_(layer.bias)
    return layer.eval()


def scaled_error(got: torch.Tensor, layer: nn.Conv2d, x: torch.Tensor) -> float:
    truth = layer.double()(x.double())
    layer.float()
    return ((got.double() - truth).abs().max() / truth.abs().max()).item()


def count_nnpack_calls(monkeypatch) -> list[tuple[int, ...]]:
    calls: list[tuple[int, ...]] = []
    nnpack = torch._nnpack_spatial_convolution
    monkeypatch.setattr(torch, "_nnpack_spatial_convolution", lambda *args: calls.append(tuple(args[0].shape)) or nnpack(*args))
    return calls


@pytest.mark.parametrize("bias", [True, False])
def test_winograd_layer_matches_the_convolution(bias, monkeypatch):
    layer = conv(bias=bias)
    x = torch.randn(1, 64, 24, 40)
    calls = count_nnpack_calls(monkeypatch)
    with torch.no_grad():
        got = WinogradConv2d(layer, SMALL_RULE)(x)
    assert calls == [(1, 64, 24, 40)]
    assert got.shape == (1, 80, 24, 40) and got.dtype == torch.float32
    assert scaled_error(got, layer, x) <= TOL_SCALED


def test_batches_run_image_by_image_and_keep_channels_last(monkeypatch):
    layer = conv()
    x = torch.randn(3, 64, 20, 20).contiguous(memory_format=torch.channels_last)
    calls = count_nnpack_calls(monkeypatch)
    with torch.no_grad():
        got = WinogradConv2d(layer, SMALL_RULE)(x)
        one_by_one = torch.cat([WinogradConv2d(layer, SMALL_RULE)(x[i : i + 1]) for i in range(3)])
    assert calls[:3] == [(1, 64, 20, 20)] * 3
    assert got.is_contiguous(memory_format=torch.channels_last) and not got.is_contiguous()
    assert torch.equal(got, one_by_one)
    assert scaled_error(got, layer, x) <= TOL_SCALED


def test_small_inputs_gradients_and_other_dtypes_take_the_direct_convolution(monkeypatch):
    layer = conv()
    wrapped = WinogradConv2d(layer, SMALL_RULE)
    calls = count_nnpack_calls(monkeypatch)
    small = torch.randn(1, 64, 15, 16)  # 240 pixels < 256
    with torch.no_grad():
        assert torch.equal(wrapped(small), layer(small))
    x = torch.randn(1, 64, 16, 16, requires_grad=True)  # autograd needs the direct kernel
    wrapped(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with torch.no_grad():
        assert wrapped.double()(torch.randn(1, 64, 16, 16, dtype=torch.float64)).dtype == torch.float64
    assert calls == []


def test_use_winograd_replaces_only_the_layers_the_rule_takes():
    model = nn.Sequential(
        conv(64, 80),  # taken
        conv(80, 80, stride=2),  # strided
        conv(80, 80, dilation=2),  # dilated
        nn.Conv2d(80, 80, 1),  # 1x1
        conv(80, 40),  # too few channels for the rule: 3,200 < 4,096
        conv(40, 40, groups=4),  # grouped
    )
    assert use_winograd(model, SMALL_RULE) == ["0"]
    assert isinstance(model[0], WinogradConv2d) and all(type(m) is nn.Conv2d for m in model[1:])
    with torch.no_grad():
        assert model(torch.randn(1, 64, 32, 32)).shape == (1, 40, 14, 14)  # stride 2, then dilation 2 at padding 1
    with pytest.raises(ValueError, match="not a layer the Winograd rule"):
        WinogradConv2d(nn.Conv2d(80, 80, 1), SMALL_RULE)


def test_default_rule_takes_ocr_layers_at_evaluation_sizes_only():
    rule = WinogradRule()
    assert rule.takes_layer(nn.Conv2d(720, 512, 3, padding=1)) and rule.takes_layer(nn.Conv2d(270, 512, 3, padding=1))
    for cin, cout in ((48, 48), (192, 192), (384, 384), (240, 32), (240, 512)):  # HRNet branches, tiny OCR
        assert not rule.takes_layer(nn.Conv2d(cin, cout, 3, padding=1)), (cin, cout)
    assert rule.takes_input(torch.empty(1, 1, 128, 256)) and rule.takes_input(torch.empty(1, 1, 32, 64))
    assert not rule.takes_input(torch.empty(1, 1, 16, 64))
