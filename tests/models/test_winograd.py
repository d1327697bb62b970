"""hrseg.models.winograd: NNPACK's Winograd kernel for the large 3x3 convolutions.

Tolerance: a float32 convolution summing 300 x 9 products is ~1e-6 of the output's largest
magnitude from float64 (oneDNN's direct kernel) and ~1e-5 by Winograd F(6x6, 3x3), whose
transforms scale tile values by up to ~100 before rounding. 1e-4 is ten times the Winograd
rounding; a wrong layer (a padding, a transposed kernel, a missing bias) is off by O(1).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hrseg.models import build_model
from hrseg.models.winograd import TrainableWinogradConv2d, WinogradConv2d, WinogradRule, use_winograd, use_winograd_training, winograd_available
from hrseg.models.winograd_tiles import TiledWinogradConv2d, TileRule

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


@pytest.mark.parametrize("channels_last", [True, False])
def test_layout_copies_around_nnpack_are_exact(channels_last):
    """The blocked-transpose copies into and out of NNPACK's NCHW equal PyTorch's own
    ``contiguous`` copies element for element (strides included), for batches and odd sizes."""
    from hrseg.models.winograd import _as_format, _nchw_copy

    x = torch.randn(3, 70, 13, 61)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    nchw = _nchw_copy(x)
    assert nchw.is_contiguous() and torch.equal(nchw, x)
    back = _as_format(nchw, channels_last=True)
    assert back.is_contiguous(memory_format=torch.channels_last) and not back.is_contiguous()
    assert torch.equal(back, x) and back.stride() == x.contiguous(memory_format=torch.channels_last).stride()
    assert _as_format(nchw, channels_last=False) is nchw


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


def test_use_winograd_gives_the_other_wide_layers_to_tiles():
    model = nn.Sequential(conv(64, 80), conv(80, 48), conv(48, 40), nn.Conv2d(40, 40, 1))
    x = torch.randn(1, 64, 16, 16)
    with torch.no_grad():
        expected = model(x)
    assert use_winograd(model, SMALL_RULE, TileRule(min_channels=48, min_channel_pixels=48 * 64)) == ["0", "1"]
    assert isinstance(model[0], WinogradConv2d) and isinstance(model[1], TiledWinogradConv2d)
    assert type(model[2]) is nn.Conv2d and type(model[3]) is nn.Conv2d  # 40 outputs; 1x1
    with torch.no_grad():
        got = model(x)
    assert ((got - expected).abs().max() / expected.abs().max()).item() <= TOL_SCALED
    with torch.device("meta"):
        w48 = build_model("hrnetv2_w48", "ocr", 19)
    replaced = use_winograd(w48)
    tiled = [m.conv for m in w48.modules() if isinstance(m, TiledWinogradConv2d)]
    assert len(replaced) == 1 + len(tiled) and replaced[0] == "conv3x3_ocr.0"
    assert {m.in_channels for m in tiled} == {96, 192, 384}  # the 1/8, 1/16 and 1/32 branches


def test_default_rule_takes_ocr_layers_at_evaluation_sizes_only():
    rule = WinogradRule()
    assert rule.takes_layer(nn.Conv2d(720, 512, 3, padding=1)) and rule.takes_layer(nn.Conv2d(270, 512, 3, padding=1))
    for cin, cout in ((48, 48), (192, 192), (384, 384), (240, 32), (240, 512)):  # HRNet branches, tiny OCR
        assert not rule.takes_layer(nn.Conv2d(cin, cout, 3, padding=1)), (cin, cout)
    assert rule.takes_input(torch.empty(1, 1, 128, 256)) and rule.takes_input(torch.empty(1, 1, 32, 64))
    assert not rule.takes_input(torch.empty(1, 1, 16, 64))


# --- training: TrainableWinogradConv2d (train.winograd) -------------------------------------


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_trainable_layer_forward_and_gradients_match_float64(channels_last, bias, monkeypatch):
    """Output, input gradient, weight gradient and bias gradient against float64 autograd of
    the same convolution; forward and input gradient go through NNPACK, one call per image
    each, and output and input gradient keep the input's memory format."""
    layer = conv(96, 64, bias=bias).train()
    x64 = torch.randn(2, 96, 24, 40, dtype=torch.float64, requires_grad=True)
    reference = conv(96, 64, bias=bias).double()
    y64 = reference(x64)
    upstream = torch.randn_like(y64)
    y64.backward(upstream)

    trainable = TrainableWinogradConv2d(layer, SMALL_RULE)
    assert trainable.weight is layer.weight and trainable.bias is layer.bias
    x = x64.detach().float()
    x = (x.contiguous(memory_format=torch.channels_last) if channels_last else x).requires_grad_()
    calls = count_nnpack_calls(monkeypatch)
    y = trainable(x)
    y.backward(upstream.float())
    assert calls == [(1, 96, 24, 40)] * 2 + [(1, 64, 24, 40)] * 2  # forward, then the input gradient
    assert y.is_contiguous(memory_format=torch.channels_last) == channels_last
    pairs = [(y, y64), (x.grad, x64.grad), (trainable.weight.grad, reference.weight.grad)]
    if bias:
        pairs.append((trainable.bias.grad, reference.bias.grad))
    for got, truth in pairs:
        assert ((got.double() - truth).abs().max() / truth.abs().max()).item() <= TOL_SCALED


def test_trainable_layer_falls_back_outside_float32_cpu_and_for_small_inputs(monkeypatch):
    trainable = TrainableWinogradConv2d(conv(96, 64), SMALL_RULE)
    calls = count_nnpack_calls(monkeypatch)
    trainable(torch.randn(1, 96, 8, 8, requires_grad=True)).sum().backward()  # 64 pixels < 256
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert trainable(torch.randn(1, 96, 24, 40)).dtype == torch.bfloat16
    trainable.double()(torch.randn(1, 96, 24, 40, dtype=torch.float64))
    assert calls == []


def test_use_winograd_training_keeps_state_dict_keys_and_parameters():
    """The swapped layers are nn.Conv2d with the same parameters: checkpoints save and load
    as before, and an optimizer built before the swap still updates the model's weights."""
    model = nn.Sequential(nn.Conv2d(3, 96, 1), conv(96, 64), nn.Conv2d(64, 8, 3, padding=1)).train()
    keys, params = list(model.state_dict()), list(model.parameters())
    assert use_winograd_training(model, SMALL_RULE) == ["1"]
    assert isinstance(model[1], TrainableWinogradConv2d) and isinstance(model[1], nn.Conv2d)
    assert list(model.state_dict()) == keys
    assert all(a is b for a, b in zip(model.parameters(), params, strict=True))
    assert use_winograd_training(model, SMALL_RULE) == []  # already swapped: not taken again


def test_training_trajectory_stays_within_float32_rounding_of_the_eager_loop():
    """Six SGD steps of a small OCR model (its 270 -> 160 OCR layer swapped, 16x32 pixels
    there) in float64, in float32 eager and in float32 with train.winograd. How far float32
    drifts from float64 here is set by BatchNorm over a batch of two at He initialisation,
    which amplifies every rounding (measured 2e-3-4e-3 in loss and 6e-3-3e-2 in the weights
    after six steps, eager and Winograd alike, for three seeds); Winograd's rounding must not
    make it drift further than a small multiple of eager's. A wrong gradient (a transposed or
    unflipped kernel) changes the loss by O(1) within two steps."""
    import copy

    from hrseg.engine.losses import SegmentationLoss
    from hrseg.recipe import LossConfig

    rule = WinogradRule(min_out_channels=160, min_channel_product=160 * 160, min_pixels=16 * 32)
    torch.manual_seed(0)
    base = build_model("hrnetv2_w18_small_v1", "ocr", 19, ocr_mid_channels=160, ocr_key_channels=32).train()
    for module in base.modules():
        if isinstance(module, nn.Dropout2d):
            module.p = 0.0  # float64 and float32 would draw different masks
    loss_fn = SegmentationLoss(LossConfig(balance_weights=[0.4, 1.0]), num_classes=19, align_corners=False)
    generator = torch.Generator().manual_seed(10)
    batches = [(torch.randn(2, 3, 64, 128, generator=generator), torch.randint(0, 19, (2, 64, 128), generator=generator)) for _ in range(6)]
    runs = {}
    for name, dtype, winograd in (("float64", torch.float64, False), ("eager", torch.float32, False), ("winograd", torch.float32, True)):
        model = copy.deepcopy(base).to(dtype)
        if winograd:
            assert use_winograd_training(model, rule) == ["conv3x3_ocr.0"]
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        losses = []
        for image, label in batches:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(image.to(dtype)), label)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        runs[name] = (torch.tensor(losses, dtype=torch.float64), torch.cat([p.detach().double().flatten() for p in model.parameters()]))
    truth_loss, truth_weights = runs["float64"]
    drift = {
        name: (float(((loss - truth_loss).abs() / truth_loss).max()), float((weights - truth_weights).norm() / truth_weights.norm()))
        for name, (loss, weights) in runs.items() if name != "float64"
    }  # fmt: skip
    assert drift["eager"][0] < 2e-2 and drift["eager"][1] < 1e-1, drift  # the yardstick itself is float32 rounding
    assert drift["winograd"][0] <= 4 * drift["eager"][0] + 1e-5, drift
    assert drift["winograd"][1] <= 4 * drift["eager"][1] + 1e-5, drift
