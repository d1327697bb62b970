"""``hrseg evaluate`` through the typer app: options reach the library, results are printed,
bad input gives exit status 1 with a message naming the problem."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

from hrseg import io as hio
from hrseg.cli import app
from hrseg.models import build_model_from_config
from hrseg.models.checkpoint import make_checkpoint
from hrseg.models.config import ModelConfig

TINY = {"backbone": "hrnetv2_w18_small_v1", "head": "ocr", "num_classes": 19, "ocr_mid_channels": 32, "ocr_key_channels": 16}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli_eval")
    runner = CliRunner()
    assert runner.invoke(app, ["synth", "--out", str(base / "raw"), "-d", "cityscapes"]).exit_code == 0
    result = runner.invoke(app, ["prepare", "cityscapes", "--root", str(base / "raw" / "cityscapes"), "--out", str(base / "lists"), "--workers", "1"])
    assert result.exit_code == 0, result.output
    recipe = {
        "model": TINY,
        "data": {"dataset": "cityscapes", "root": str(base / "raw" / "cityscapes"), "lists": str(base / "lists"), "num_workers": 0},
        "eval": {"crop_size": [64, 128], "base_size": 128, "scales": [1.0, 1.25], "flip": True},
    }
    (base / "tiny_cs.yaml").write_text(yaml.safe_dump(recipe))
    torch.manual_seed(0)
    cfg = ModelConfig(**TINY)
    hio.torch_save(make_checkpoint(build_model_from_config(cfg), cfg), base / "tiny.pth")
    return base


def test_evaluate_command(setup, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["evaluate", str(setup / "tiny_cs.yaml"), "--checkpoint", str(setup / "tiny.pth"), "--out", str(out),
         "--scales", "0.5, 1.0", "--no-flip", "--num-samples", "2", "--overlays", "1", "--no-track",
         "--batch", "4"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "mIoU" in result.output and "[2 images]" in result.output
    assert "align_corners=True (stored in checkpoint tiny.pth)" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["scales"] == [0.5, 1.0] and metrics["flip"] is False and metrics["num_images"] == 2
    assert len(list((out / "overlays").glob("*.png"))) == 1 and (out / "per_class.csv").is_file()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--scales", "0.5,big"], "expected numbers"),
        (["--scales", "-1"], "positive"),
        (["--set", "eval.flipp=true"], "flipp"),
        (["--split", "nosuch"], "nosuch.lst"),
        (["--path", "warp"], "unknown inference path"),
        (["--batch", "0"], "at least 1"),
    ],
)
def test_evaluate_bad_input(setup, tmp_path, extra, message):
    args = ["evaluate", str(setup / "tiny_cs.yaml"), "--checkpoint", str(setup / "tiny.pth"), "--out", str(tmp_path), "--no-track", *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert message in result.output


def test_evaluate_checkpoint_of_another_model(setup, tmp_path):
    cfg = ModelConfig(**{**TINY, "num_classes": 150})
    hio.torch_save(make_checkpoint(build_model_from_config(cfg), cfg), tmp_path / "ade.pth")
    args = ["evaluate", str(setup / "tiny_cs.yaml"), "--checkpoint", str(tmp_path / "ade.pth"), "--out", str(tmp_path / "o"), "--no-track"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "ade.pth" in result.output and "shape mismatch" in result.output
