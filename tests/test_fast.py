"""Inference paths (hrseg.evaluation.inference_paths) against the eager reference on the parity fixture.

Tolerances, for the fp32 paths (they differ from eager only by float32 rounding: another
summation order in channels_last kernels, folded weights rounded once):

- vs the float64 reference of the fixture (``out64`` / ``aux64``): 1.5e-4. The official fp32
  model itself is 6.7e-5 away from it and our eager 5.3e-5; every fp32 path measured here
  stays below 8e-5, so 1.5e-4 is about twice the fp32 noise while a real error (a wrong fold,
  a missed layer) is orders of magnitude larger.
- vs our eager fp32 output: 2e-4 (two fp32 computations, each up to ~8e-5 from the truth).
- argmax agreement with eager: >= 99.9% of pixels (fp32 noise can only flip near-ties).

The CUDA fp16/bf16 paths change results beyond these tolerances by design (opt-in); they are
checked with loose tolerances when a GPU is present and skipped otherwise.
"""

from __future__ import annotations

import copy
import sys

import pytest
import torch
from torch import nn

from hrseg.evaluation import inference_paths
from hrseg.evaluation.inference_paths import (
    INFERENCE_PATHS,
    ONNX_MIN_PARAMS,
    InferencePathError,
    find_conv_bn_pairs,
    fold_batchnorm,
    onnx_path_available,
    prepare_inference_model,
    resolve_path,
)
from hrseg.models import build_model, winograd_tiles
from hrseg.models.checkpoint import load_checkpoint
from hrseg.models.winograd import WinogradConv2d, WinogradRule, use_winograd, winograd_available
from hrseg.models.winograd_tiles import TiledWinogradConv2d, TileRule

FP32_PATHS = ("auto", "eager", "channels_last", "folded", "folded_cl", "winograd", "onnx")
TOL_VS_FLOAT64 = 1.5e-4
TOL_VS_EAGER = 2e-4
MIN_ARGMAX_AGREEMENT = 0.999


@pytest.fixture(scope="module")
def parity_model(parity):
    model = build_model("hrnetv2_w18_small_v2", "ocr", 19)
    load_checkpoint(model, parity / "w18s2_ocr_k19.pth")
    return model  # left in training mode on purpose: preparing must not change it


@pytest.fixture(scope="module")
def parity_io(parity):
    return torch.load(parity / "w18s2_ocr_k19_io.pt", weights_only=True)


@pytest.fixture(scope="module")
def eager_outputs(parity_model, parity_io):
    return prepare_inference_model(parity_model, "eager")(parity_io["input"])


def tiny_model(head: str = "ocr", **kwargs) -> nn.Module:
    torch.manual_seed(0)
    model = build_model("hrnetv2_w18_small_v1", head, 5, ocr_mid_channels=32, ocr_key_channels=16, **kwargs)
    # non-trivial BN statistics, so that folding has something to get wrong
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.1)
        elif isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight)
    return model


@pytest.mark.parametrize("path", FP32_PATHS)
def test_fp32_path_matches_reference(path, parity_model, parity_io, eager_outputs):
    if path == "onnx":
        pytest.importorskip("onnxruntime")
    model = prepare_inference_model(parity_model, path)
    outputs = model(parity_io["input"])

    assert model.path == resolve_path(path, torch.device("cpu"), parity_model)
    assert model.align_corners is True and model.num_classes == 19
    assert set(outputs) == {"out", "aux"}
    for key in ("out", "aux"):
        got = outputs[key]
        assert got.shape == (1, 19, 32, 64) and got.dtype == torch.float32 and got.is_contiguous()
        assert (got.double() - parity_io[f"{key}64"]).abs().max().item() <= TOL_VS_FLOAT64
        assert (got - eager_outputs[key]).abs().max().item() <= TOL_VS_EAGER
    agreement = (outputs["out"].argmax(1) == eager_outputs["out"].argmax(1)).float().mean().item()
    assert agreement >= MIN_ARGMAX_AGREEMENT


def test_eager_path_is_the_plain_model(parity_model, parity_io, eager_outputs):
    with torch.no_grad():
        plain = copy.deepcopy(parity_model).eval()(parity_io["input"])
    assert torch.equal(plain["out"], eager_outputs["out"])


def test_auto_on_cpu_is_winograd_where_nnpack_runs_and_the_model_has_a_large_layer(monkeypatch):
    expected = "winograd" if winograd_available() else "folded_cl"
    with torch.device("meta"):
        w18 = build_model("hrnetv2_w18_small_v2", "ocr", 19)  # conv3x3_ocr: 270 -> 512
    assert resolve_path("auto", torch.device("cpu"), w18) == expected
    assert resolve_path("auto", torch.device("cpu")) == expected
    # the tiny model's OCR layer (240 -> 32) is too small: nothing to gain, plain folded_cl
    assert prepare_inference_model(tiny_model(), "auto").path == "folded_cl"
    monkeypatch.setattr(inference_paths, "winograd_available", lambda: False)
    assert resolve_path("auto", torch.device("cpu"), w18) == "folded_cl"


def test_auto_on_cpu_without_nnpack_is_onnx_for_w48_when_onnxruntime_is_installed(monkeypatch):
    monkeypatch.setattr(inference_paths, "winograd_available", lambda: False)
    with torch.device("meta"):
        w48 = build_model("hrnetv2_w48", "ocr", 19)
    assert sum(p.numel() for p in w48.parameters()) >= ONNX_MIN_PARAMS
    if onnx_path_available():
        assert resolve_path("auto", torch.device("cpu"), w48) == "onnx"
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    assert resolve_path("auto", torch.device("cpu"), w48) == "folded_cl"
    assert resolve_path("auto", torch.device("cuda"), w48) == "folded_cl"


def test_winograd_path_is_cpu_only():
    with pytest.raises(InferencePathError, match="runs on the CPU"):
        resolve_path("winograd", torch.device("cuda"))


@pytest.mark.skipif(not winograd_available(), reason="NNPACK does not run on this CPU")
def test_winograd_runs_ocrs_layer_through_nnpack_on_the_parity_fixture(parity_model, parity_io, eager_outputs, monkeypatch):
    """OCR's 270 -> 512 layer sees 32 x 64 pixels of the fixture's 128 x 256 input: the
    smallest size the default rule takes."""
    model = prepare_inference_model(parity_model, "winograd")
    layers = [m for m in model.module.modules() if isinstance(m, WinogradConv2d)]
    assert [(m.conv.in_channels, m.conv.out_channels) for m in layers] == [(270, 512)]
    calls = []
    nnpack = torch._nnpack_spatial_convolution
    monkeypatch.setattr(torch, "_nnpack_spatial_convolution", lambda *args: calls.append(args[0].shape) or nnpack(*args))
    outputs = model(parity_io["input"])
    assert calls == [(1, 270, 32, 64)]
    for key in ("out", "aux"):
        assert (outputs[key].double() - parity_io[f"{key}64"]).abs().max().item() <= TOL_VS_FLOAT64
        assert (outputs[key] - eager_outputs[key]).abs().max().item() <= TOL_VS_EAGER
    agreement = (outputs["out"].argmax(1) == eager_outputs["out"].argmax(1)).float().mean().item()
    assert agreement >= MIN_ARGMAX_AGREEMENT


@pytest.mark.skipif(not winograd_available(), reason="NNPACK does not run on this CPU")
def test_tiled_winograd_on_every_3x3_layer_of_the_parity_model_stays_within_the_tolerances(parity_model, parity_io, eager_outputs, monkeypatch):
    """The default tile rule takes only W48's wide branches at real sizes, none of the small
    fixture's layers; with a rule that takes every plain 3x3 layer, F(4x4, 3x3)'s rounding
    compounds over the whole model (79 layers) and must still meet the float32 tolerances."""
    model = prepare_inference_model(parity_model, "folded_cl")
    replaced = use_winograd(model.module, WinogradRule(), TileRule(min_channels=1, min_channel_pixels=1))
    tiled = [m for m in model.module.modules() if isinstance(m, TiledWinogradConv2d)]
    assert len(tiled) == len(replaced) - 1 == 79
    calls = []
    tile_conv = winograd_tiles.winograd_conv3x3
    monkeypatch.setattr(winograd_tiles, "winograd_conv3x3", lambda x, *a: calls.append(x.shape) or tile_conv(x, *a))
    outputs = model(parity_io["input"])
    assert len(calls) == len(tiled)
    for key in ("out", "aux"):
        assert (outputs[key].double() - parity_io[f"{key}64"]).abs().max().item() <= TOL_VS_FLOAT64
        assert (outputs[key] - eager_outputs[key]).abs().max().item() <= TOL_VS_EAGER
    agreement = (outputs["out"].argmax(1) == eager_outputs["out"].argmax(1)).float().mean().item()
    assert agreement >= MIN_ARGMAX_AGREEMENT


def test_callers_model_is_untouched(parity_model, parity_io):
    before = {k: v.clone() for k, v in parity_model.state_dict().items()}
    modules_before = [type(m) for m in parity_model.modules()]
    assert parity_model.training
    prepare_inference_model(parity_model, "folded_cl")(parity_io["input"])
    assert parity_model.training
    assert [type(m) for m in parity_model.modules()] == modules_before
    after = parity_model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.is_contiguous() and p.requires_grad for p in parity_model.parameters())


def test_folding_removes_every_batchnorm_of_the_parity_model(parity_model):
    bns = [m for m in parity_model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 153
    assert len(find_conv_bn_pairs(parity_model)) == 153
    folded = fold_batchnorm(parity_model)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    assert not folded.training
    # the OCR Sequential(conv, Sequential(bn, relu)) layout keeps its ReLU
    block = folded.ocr_distri_head.object_context_block.f_pixel
    assert isinstance(block[1][0], nn.Identity) and isinstance(block[1][1], nn.ReLU)
    assert block[0].bias is not None


@pytest.mark.parametrize("head", ["fcn", "ocr"])
def test_folded_channels_last_on_odd_batched_input(head):
    model = tiny_model(head, align_corners=False)
    x = torch.randn(2, 3, 65, 97)
    eager = prepare_inference_model(model, "eager")(x)
    fast = prepare_inference_model(model, "folded_cl")
    got = fast(x)
    assert fast.align_corners is False and fast.num_classes == 5
    assert set(got) == set(eager)
    for key in eager:  # logits of this random model reach ~300: compare relative to that
        assert got[key].shape == eager[key].shape
        scale = eager[key].abs().max().item()
        assert (got[key] - eager[key]).abs().max().item() <= 1e-5 * scale


class _Shared(nn.Module):
    """A conv whose output feeds a BatchNorm *and* the residual sum: must not be folded."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.tail = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        y = self.conv(x)
        return {"out": self.tail(self.bn(y) + y)}


def test_only_batchnorms_that_directly_follow_a_conv_are_folded():
    model = _Shared()
    for bn in (model.bn, model.tail[0], model.tail[2]):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    pairs = find_conv_bn_pairs(model.eval())
    assert [(p.conv, p.bn) for p in pairs] == [("tail.1", "tail.2")]
    folded = fold_batchnorm(model)
    assert isinstance(folded.bn, nn.BatchNorm2d) and isinstance(folded.tail[0], nn.BatchNorm2d)
    assert isinstance(folded.tail[2], nn.Identity)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(folded(x)["out"], model(x)["out"], atol=1e-5, rtol=1e-5)


def test_unknown_path_lists_the_valid_ones():
    with pytest.raises(InferencePathError, match="unknown inference path 'fastest'.*folded_cl"):
        prepare_inference_model(tiny_model(), "fastest")


def test_bad_input_and_sample_size_are_rejected():
    model = prepare_inference_model(tiny_model(), "eager")
    with pytest.raises(InferencePathError, match=r"N x C x H x W.*\(3, 64, 64\)"):
        model(torch.randn(3, 64, 64))
    with pytest.raises(InferencePathError, match="sample_size"):
        prepare_inference_model(tiny_model(), "folded", sample_size=(0, 64))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
@pytest.mark.parametrize("path", ["cuda_fp16", "cuda_bf16"])
def test_cuda_paths_say_they_need_cuda(path):
    with pytest.raises(InferencePathError, match=f"{path}.*needs a CUDA GPU"):
        prepare_inference_model(tiny_model(), path)


@pytest.mark.parametrize("package", ["onnxruntime", "onnx"])
def test_onnx_path_without_its_packages_says_how_to_install(monkeypatch, package):
    monkeypatch.setitem(sys.modules, package, None)  # makes `import <package>` fail
    with pytest.raises(InferencePathError, match=rf"needs {package}, not installed.*hrseg\[onnx\]"):
        prepare_inference_model(tiny_model(), "onnx")
    monkeypatch.setattr(inference_paths, "winograd_available", lambda: False)
    with torch.device("meta"):
        w48 = build_model("hrnetv2_w48", "ocr", 19)
    assert resolve_path("auto", torch.device("cpu"), w48) == "folded_cl"  # auto without NNPACK falls back


def test_every_listed_path_is_documented():
    from hrseg.evaluation.inference_paths import PATHS

    assert set(INFERENCE_PATHS) == set(PATHS) | {"auto"}
    assert [p for p, info in PATHS.items() if not info.exact] == ["cuda_fp16", "cuda_bf16"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("path", ["auto", "cuda_fp16", "cuda_bf16"])
def test_cuda_paths(path, parity_model, parity_io, eager_outputs):
    model = prepare_inference_model(parity_model, path, device="cuda")
    outputs = model(parity_io["input"].cuda())
    assert outputs["out"].device.type == "cuda" and outputs["out"].dtype == torch.float32
    diff = (outputs["out"].cpu() - eager_outputs["out"]).abs().max().item()
    agreement = (outputs["out"].cpu().argmax(1) == eager_outputs["out"].argmax(1)).float().mean().item()
    # auto is fp32 (TF32 convolutions may be enabled by torch's defaults); half precision is
    # opt-in because it moves logits by ~1e-2.
    assert diff <= (1e-2 if path == "auto" else 0.25)
    assert agreement >= (0.999 if path == "auto" else 0.98)
