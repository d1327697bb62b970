"""`hrseg train` through the real typer app: recipe errors and a short run whose tracking
server is down."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from hrseg.cli import app

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models train faster on one thread (and the root logger is restored by conftest)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_unknown_recipe_lists_the_available_ones():
    result = CliRunner().invoke(app, ["train", "cityscapes_ocrr", "--no-track"])
    assert result.exit_code == 1
    assert "unknown recipe 'cityscapes_ocrr'" in result.output and "cityscapes_ocr," in result.output


def test_unknown_override_key_names_key_and_file():
    result = CliRunner().invoke(app, ["train", "cityscapes_ocr", "--set", "train.lrr=0.1", "--no-track"])
    assert result.exit_code == 1
    assert "--set train.lrr=0.1: unknown key train.lrr (did you mean train.lr?)" in result.output
    assert "valid keys under train:" in result.output


def test_wrong_type_in_a_recipe_file_names_file_and_key(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("train:\n  epochs: many\n")
    result = CliRunner().invoke(app, ["train", str(recipe), "--no-track"])
    assert result.exit_code == 1
    assert f"{recipe}:2: train.epochs: expected an integer, got 'many' (str)" in result.output.replace("\n", "")


def test_short_run_missing_weights_and_a_dead_tracking_server(tmp_path):
    from hrseg.data import prepare_dataset
    from hrseg.data.synth import generate_synthetic

    generate_synthetic(tmp_path / "synth", datasets=["cityscapes"])
    prepare_dataset("cityscapes", tmp_path / "synth" / "cityscapes", tmp_path / "lists", workers=1)
    common = [
        "--set", f"data.root={tmp_path / 'synth' / 'cityscapes'}", "--set", f"data.lists={tmp_path / 'lists'}",
        "--set", "model.backbone=hrnetv2_w18_small_v1", "--set", "model.ocr_mid_channels=32", "--set", "model.ocr_key_channels=16",
        "--set", "data.crop_size=[64,128]", "--set", "data.base_size=256", "--set", "data.num_workers=0",
        "--set", "train.epochs=1", "--set", "train.batch_size=4", "--set", "eval.num_overlays=1",
    ]  # fmt: skip
    runner = CliRunner()
    result = runner.invoke(app, ["train", "cityscapes_ocr", "--out", str(tmp_path / "a"), "--no-track", *common, "--set", "train.pretrained=nowhere.pth"])
    assert result.exit_code == 1
    assert "train.pretrained: nowhere.pth does not exist" in result.output and "train.pretrained=null" in result.output

    # a short run whose MLflow server is down: a warning, then training as usual
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
        result = runner.invoke(
            app, ["train", "cityscapes_ocr", "--out", str(tmp_path / "b"), "--tracking-uri", dead, *common, "--set", "train.pretrained=null"]
        )
    assert result.exit_code == 0, result.output
    assert f"MLflow tracking disabled: the backend at {dead} did not answer" in result.output
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert metrics["iterations"] == 6 and metrics["epochs"] == 1
    saved = yaml.safe_load((tmp_path / "b" / "recipe.yaml").read_text())
    assert saved["train"]["batch_size"] == 4 and saved["name"] == "cityscapes_ocr"


def test_unknown_host_memory_policy_is_refused_before_any_work():
    result = CliRunner().invoke(app, ["train", "cityscapes_ocr", "--host-memory", "kept", "--no-track"])
    assert result.exit_code == 1
    assert "unknown host memory policy 'kept'; expected one of keep, release" in result.output
