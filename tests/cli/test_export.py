"""`hrseg export` through the real typer app: our checkpoints and official ones."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from hrseg.cli import app
from hrseg.io import torch_save
from hrseg.models import ModelConfig, build_model_from_config
from hrseg.models.checkpoint import make_checkpoint

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def run_onnx(path, x: torch.Tensor) -> dict[str, torch.Tensor]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return {n: torch.from_numpy(a) for n, a in zip(names, session.run(names, {"image": x.numpy()}))}


def input_dims(path) -> list:
    return [d.dim_param or d.dim_value for d in onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim]


@pytest.fixture
def hrseg_checkpoint(tmp_path):
    config = ModelConfig(backbone="hrnetv2_w18_small_v1", head="fcn", num_classes=4, align_corners=False)
    torch.manual_seed(0)
    model = build_model_from_config(config)
    for module in model.modules():  # outputs of order 1 (the official init gives ~1e-6)
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight)
    model.last_layer[3].weight.data.mul_(0.02)
    path = tmp_path / "fcn.pth"
    torch_save(make_checkpoint(model, config), path)
    return path, model.eval()


def test_no_size_means_dynamic(hrseg_checkpoint, tmp_path):
    checkpoint, model = hrseg_checkpoint
    out = tmp_path / "fcn.onnx"
    result = CliRunner().invoke(app, ["export", "--checkpoint", str(checkpoint), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "dynamic" in result.output and "align_corners=False (stored in checkpoint fcn.pth)" in result.output
    assert input_dims(out) == ["batch", 3, "height", "width"]
    x = torch.randn(2, 3, 80, 112)
    with torch.no_grad():
        expected = model(x)["out"]
    assert (run_onnx(out, x)["out"] - expected).abs().max().item() <= 1e-4


def test_our_checkpoint_fixed_size(hrseg_checkpoint, tmp_path):
    checkpoint, model = hrseg_checkpoint
    out = tmp_path / "fcn.onnx"
    result = CliRunner().invoke(app, ["export", "--checkpoint", str(checkpoint), "--format", "onnx", "--out", str(out), "--height", "64", "--width", "96"])
    assert result.exit_code == 0, result.output
    assert "1 x 3 x 64 x 96" in result.output
    assert input_dims(out) == [1, 3, 64, 96]
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = model(x)["out"]
    got = run_onnx(out, x)
    assert list(got) == ["out"]
    assert (got["out"] - expected).abs().max().item() <= 1e-4


def test_official_checkpoint_dynamic_with_aux(parity, tmp_path):
    checkpoint = parity / "w18s2_ocr_k19.pth"
    io = torch.load(parity / "w18s2_ocr_k19_io.pt", weights_only=True)
    runner = CliRunner()

    out = tmp_path / "ocr.onnx"
    args = ["export", "-c", str(checkpoint), "-o", str(out), "--dynamic", "--height", "64", "--width", "128", "--aux"]
    refused = runner.invoke(app, args)  # not in the weight catalogue: the flag must say how it was trained
    assert refused.exit_code == 1 and "--align-corners or --no-align-corners" in " ".join(refused.output.split())
    result = runner.invoke(app, [*args, "--align-corners"])  # the official default, as the fixture was made
    assert result.exit_code == 0, result.output
    assert "align_corners=True (flag --align-corners)" in result.output
    assert input_dims(out) == ["batch", 3, "height", "width"]
    got = run_onnx(out, io["input"])  # exported at 64x128, run at 128x256
    for key in ("out", "aux"):  # the official fp32 outputs; ours match them within 1e-4
        assert (got[key] - io[key]).abs().max().item() <= 1e-4



def test_align_corners_override(hrseg_checkpoint, tmp_path):
    checkpoint, model = hrseg_checkpoint  # saved with align_corners=False
    out = tmp_path / "fcn_true.onnx"
    result = CliRunner().invoke(app, ["export", "-c", str(checkpoint), "-o", str(out), "--align-corners"])
    assert result.exit_code == 0, result.output
    assert "--align-corners contradicts fcn.pth's stored model_config (trained with align_corners=False); using the flag" in result.output
    flipped = build_model_from_config(ModelConfig(backbone="hrnetv2_w18_small_v1", head="fcn", num_classes=4, align_corners=True))
    flipped.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 80, 112)
    with torch.no_grad():
        expected, original = flipped.eval()(x)["out"], model(x)["out"]
    got = run_onnx(out, x)["out"]
    assert (got - expected).abs().max().item() <= 1e-4
    assert (got - original).abs().max().item() > 1e-3  # really the other variant


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "tflite"], "unsupported export format 'tflite'; valid: onnx"),
        (["--height", "64"], "give both --height and --width"),
        (["--height", "16", "--width", "16"], "too small"),
    ],
)
def test_bad_options_exit_1_with_a_message(hrseg_checkpoint, tmp_path, args, message):
    checkpoint, _ = hrseg_checkpoint
    result = CliRunner().invoke(app, ["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx"), *args])
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "m.onnx").exists()


def test_missing_checkpoint(tmp_path):
    result = CliRunner().invoke(app, ["export", "--checkpoint", str(tmp_path / "nope.pth"), "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 1
    assert "nope.pth: no such checkpoint file" in result.output
