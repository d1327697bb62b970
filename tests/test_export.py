"""ONNX export (hrseg.evaluation.export): ONNX Runtime vs PyTorch within 1e-4 at the export size and at
other sizes, for the OCR parity model and FCN/OCR tiny models, with both exporters."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hrseg.evaluation.export import ExportError, export_onnx
from hrseg.models import build_model
from hrseg.models.checkpoint import load_checkpoint

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOL = 1e-4


def tiny_model(head: str) -> nn.Module:
    torch.manual_seed(0)
    model = build_model("hrnetv2_w18_small_v1", head, 5, ocr_mid_channels=32, ocr_key_channels=16)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight)
        elif isinstance(module, nn.BatchNorm2d):
            module.running_var.uniform_(0.5, 2.0)
            module.running_mean.uniform_(-0.2, 0.2)
    # logits of order 10-100: scale them to ~1 so that 1e-4 is a float32-level tolerance
    last = model.last_layer[3] if head == "fcn" else model.cls_head
    last.weight.data.mul_(0.02)
    if head == "ocr":
        model.aux_head[3].weight.data.mul_(0.02)
    return model


def session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run_onnx(sess: ort.InferenceSession, x: torch.Tensor) -> dict[str, torch.Tensor]:
    names = [o.name for o in sess.get_outputs()]
    return {n: torch.from_numpy(a) for n, a in zip(names, sess.run(names, {"image": x.numpy()}))}


def assert_matches(model: nn.Module, sess: ort.InferenceSession, x: torch.Tensor, keys=("out",)) -> None:
    with torch.no_grad():
        expected = model.eval()(x)
    got = run_onnx(sess, x)
    assert sorted(got) == sorted(keys)
    for key in keys:
        assert got[key].shape == expected[key].shape
        diff = (got[key] - expected[key]).abs().max().item()
        assert diff <= TOL, f"{key} at {tuple(x.shape)}: max |ORT - PyTorch| = {diff}"


@pytest.fixture(scope="module")
def parity_model(parity):
    model = build_model("hrnetv2_w18_small_v2", "ocr", 19)
    load_checkpoint(model, parity / "w18s2_ocr_k19.pth")
    return model.eval()


def test_ocr_parity_model_dynamic(parity_model, parity, tmp_path):
    path = export_onnx(parity_model, tmp_path / "ocr.onnx", height=128, width=256, include_aux=True)
    io = torch.load(parity / "w18s2_ocr_k19_io.pt", weights_only=True)
    sess = session(path)
    assert_matches(parity_model, sess, io["input"], keys=("out", "aux"))
    torch.manual_seed(1)
    assert_matches(parity_model, sess, torch.randn(2, 3, 97, 161), keys=("out", "aux"))
    assert_matches(parity_model, sess, torch.randn(1, 3, 32, 40), keys=("out", "aux"))
    graph = onnx.load(str(path)).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert graph.input[0].name == "image" and dims == ["batch", 3, "height", "width"]
    assert [o.name for o in graph.output] == ["out", "aux"]


def test_fcn_fixed_size_leaves_the_model_alone(tmp_path):
    model = tiny_model("fcn").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    path = export_onnx(model, tmp_path / "nested" / "fcn.onnx", height=128, width=256, dynamic=False)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert_matches(model, session(path), torch.randn(1, 3, 128, 256))
    graph = onnx.load(str(path)).graph
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == [1, 3, 128, 256]
    assert [o.name for o in graph.output] == ["out"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["fcn.onnx"]  # no temporary leftovers


@pytest.mark.slow  # the torch.export-based exporter takes ~15 s CPU even for the tiny model
def test_dynamo_exporter_is_dynamic_too(tmp_path):
    pytest.importorskip("onnxscript")
    model = tiny_model("ocr")
    path = export_onnx(model, tmp_path / "ocr.onnx", height=128, width=256, include_aux=True, exporter="dynamo")
    sess = session(path)
    assert_matches(model, sess, torch.randn(1, 3, 128, 256), keys=("out", "aux"))
    assert_matches(model, sess, torch.randn(2, 3, 96, 160), keys=("out", "aux"))
    assert_matches(model, sess, torch.randn(1, 3, 32, 40), keys=("out", "aux"))  # below the traced minimum of 33  # below the traced minimum of 33


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"head": "fcn", "include_aux": True}, "fcn model has no 'aux' output"),
        ({"height": 16}, "too small.*>= 32"),
        ({"exporter": "tflite"}, "unknown ONNX exporter 'tflite'.*torchscript"),
        ({"exporter": "dynamo", "opset": 17}, "dynamo exporter needs opset >= 18, got opset 17"),
        ({"exporter": "torchscript", "opset": 9}, "torchscript exporter needs opset >= 11, got opset 9"),
    ],
)
def test_bad_options_are_rejected(kwargs, message, tmp_path):
    model = tiny_model(kwargs.pop("head", "ocr"))
    options = {"height": 64, "width": 64} | kwargs
    with pytest.raises(ExportError, match=message):
        export_onnx(model, tmp_path / "m.onnx", **options)
    assert not (tmp_path / "m.onnx").exists()


def test_out_path_that_is_a_directory(tmp_path):
    with pytest.raises(ExportError, match="is a directory"):
        export_onnx(tiny_model("fcn"), tmp_path, height=64, width=64)


def test_exporter_failure_is_reported_and_writes_nothing(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("Unsupported: ONNX export of operator frobnicate\nlong details")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(ExportError, match=r"torchscript ONNX export of HRNetFCN to .*m\.onnx failed \(opset 17\): Unsupported: ONNX export of operator frobnicate$"):
        export_onnx(tiny_model("fcn"), tmp_path / "m.onnx", height=64, width=64, exporter="torchscript")
    assert list(tmp_path.iterdir()) == []
