"""HRNetV2 models: key manifests, parity with the official implementation, shapes, numerics
as constructor arguments, official initialisation and operation counts."""

from __future__ import annotations

import math

import pytest
import torch

from hrseg.errors import HrsegError
from hrseg.models import BACKBONES, MODELS, build_model, parse_model_name
from hrseg.models.checkpoint import load_checkpoint
from hrseg.models.complexity import count


def _manifest(path):
    return [tuple(line.split("\t")) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(
    "head, manifest",
    [("ocr", "keys_hrnet_ocr_w48_k19.txt"), ("fcn", "keys_hrnet_w48_fcn_k19.txt")],
)
def test_state_dict_keys_and_shapes_equal_official_manifest(parity, head, manifest):
    with torch.device("meta"):
        model = build_model("hrnetv2_w48", head, 19)
    ours = [(k, str(tuple(v.shape))) for k, v in model.state_dict().items()]
    assert ours == _manifest(parity / manifest)  # same keys, shapes and order


def _parity_model(parity):
    model = build_model("hrnetv2_w18_small_v2", "ocr", 19)
    load_checkpoint(model, parity / "w18s2_ocr_k19.pth")
    return model.eval()


def test_parity_float32(parity):
    io = torch.load(parity / "w18s2_ocr_k19_io.pt", weights_only=True)
    model = _parity_model(parity)
    with torch.no_grad():
        out = model(io["input"])
    assert (out["out"] - io["out"]).abs().max().item() <= 1e-4
    assert (out["aux"] - io["aux"]).abs().max().item() <= 1e-4


def test_parity_float64(parity):
    io = torch.load(parity / "w18s2_ocr_k19_io.pt", weights_only=True)
    model = _parity_model(parity).double()
    with torch.no_grad():
        out = model(io["input"].double())
    assert (out["out"] - io["out64"]).abs().max().item() <= 1e-9
    assert (out["aux"] - io["aux64"]).abs().max().item() <= 1e-9


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_runs_on_odd_sizes(name):
    backbone, head = parse_model_name(name)
    model = build_model(backbone, head, 5).eval()
    h, w = 67, 93  # not a multiple of 32: fusion must interpolate to exact sizes
    with torch.no_grad():
        out = model(torch.randn(1, 3, h, w))
    quarter = (math.ceil(math.ceil(h / 2) / 2), math.ceil(math.ceil(w / 2) / 2))
    assert out["out"].shape == (1, 5, *quarter)
    assert set(out) == ({"out", "aux"} if head == "ocr" else {"out"})
    if head == "ocr":
        assert out["aux"].shape == out["out"].shape


def test_ocr_trains_with_batch_size_one():
    model = build_model("hrnetv2_w18_small_v1", "ocr", 4, ocr_mid_channels=16, ocr_key_channels=8).train()
    out = model(torch.randn(1, 3, 64, 64))
    (out["out"].sum() + out["aux"].sum()).backward()


def test_align_corners_is_per_model_not_global():
    torch.manual_seed(1)
    a = build_model("hrnetv2_w18_small_v1", "fcn", 3, align_corners=True).eval()
    for m in a.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        before = a(x)["out"].clone()
    b = build_model("hrnetv2_w18_small_v1", "fcn", 3, align_corners=False).eval()
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        after = a(x)["out"]
        other = b(x)["out"]
    assert torch.equal(before, after)  # building b did not change a
    assert (after - other).abs().max() > 1e-3 * after.abs().max()  # the flag changes the numerics
    assert a.align_corners is True and b.align_corners is False


def test_bn_momentum_is_a_constructor_argument():
    model = build_model("hrnetv2_w18_small_v1", "ocr", 3, bn_momentum=0.01)
    momenta = {m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert momenta == {0.01}


def test_official_initialisation():
    torch.manual_seed(0)
    fcn = build_model("hrnetv2_w18_small_v1", "fcn", 3)
    assert abs(fcn.conv1.weight.std().item() - 0.001) < 2e-4
    assert abs(fcn.last_layer[3].weight.std().item() - 0.001) < 2e-4  # FCN head is included
    assert torch.all(fcn.bn1.weight == 1) and torch.all(fcn.bn1.bias == 0)
    ocr = build_model("hrnetv2_w18_small_v1", "ocr", 3)
    assert abs(ocr.conv1.weight.std().item() - 0.001) < 2e-4
    # modules named cls/aux/ocr keep PyTorch's default (kaiming-uniform) initialisation
    assert ocr.cls_head.weight.std().item() > 0.01
    assert ocr.aux_head[0].weight.std().item() > 0.01
    assert ocr.conv3x3_ocr[0].weight.std().item() > 0.005


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(HrsegError, match="hrnetv2_w48"):
        build_model("hrnet_w99", "ocr", 19)
    with pytest.raises(HrsegError, match="fcn, ocr"):
        build_model("hrnetv2_w48", "deeplab", 19)
    with pytest.raises(HrsegError, match="valid"):
        parse_model_name("resnet101")


@pytest.mark.parametrize(
    "backbone, head, official, params_m",
    [
        ("hrnetv2_w48", "fcn", 696.2, 65.8),
        ("hrnetv2_w18_small_v1", "fcn", 31.1, 1.5),
        ("hrnetv2_w18_small_v2", "fcn", 71.6, 3.9),
        ("hrnetv2_w48", "ocr", 1206.4, 70.3),
    ],
)
def test_counts_reproduce_the_official_readme(backbone, head, official, params_m):
    c = count(backbone, head, 19, 1024, 2048)
    assert round(c.official_gflops, 1) == official
    assert math.floor(c.params / 1e5) / 10 == params_m  # the README truncates: 65.86M -> "65.8M"
    assert c.gflops == pytest.approx(2 * (c.conv_macs + c.matmul_macs) / 1e9)


def test_backbone_list():
    assert BACKBONES == ("hrnetv2_w18_small_v1", "hrnetv2_w18_small_v2", "hrnetv2_w18", "hrnetv2_w32", "hrnetv2_w48")


def test_kaiming_initialisation_for_training_from_scratch():
    torch.manual_seed(0)
    model = build_model("hrnetv2_w18_small_v1", "ocr", 3, init="kaiming")
    fan_out = model.conv1.weight.shape[0] * 9
    assert abs(model.conv1.weight.std().item() - (2 / fan_out) ** 0.5) < 0.02
    assert model.cls_head.bias.abs().max().item() == 0  # every conv, heads included
    with pytest.raises(HrsegError, match="valid: official, kaiming"):
        build_model("hrnetv2_w18_small_v1", "ocr", 3, init="xavier")
