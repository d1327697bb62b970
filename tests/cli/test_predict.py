"""``hrseg predict`` through the typer app: a folder with one corrupt image is processed,
the failure is reported and the exit status is 2."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from hrseg import io as hio
from hrseg.cli import app
from hrseg.models import build_model_from_config
from hrseg.models.checkpoint import make_checkpoint
from hrseg.models.config import ModelConfig
from hrseg.recipe import recipe_from_dict

TINY = {"backbone": "hrnetv2_w18_small_v1", "head": "ocr", "num_classes": 150, "ocr_mid_channels": 32, "ocr_key_channels": 16}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """ADE20K-style images and a tiny checkpoint that carries its recipe (as training writes it)."""
    base = tmp_path_factory.mktemp("cli_predict")
    assert CliRunner().invoke(app, ["synth", "--out", str(base / "raw"), "-d", "ade20k"]).exit_code == 0
    images = sorted((base / "raw" / "ade20k" / "val" / "image").glob("*.jpg"))
    inputs = base / "inputs"
    inputs.mkdir()
    for image in images[:2]:
        shutil.copy(image, inputs / image.name)
    (inputs / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    recipe = recipe_from_dict({"model": TINY, "data": {"dataset": "ade20k"}, "eval": {"crop_size": [64, 64], "base_size": 64}})
    torch.manual_seed(0)
    cfg = ModelConfig(**TINY)
    hio.torch_save(make_checkpoint(build_model_from_config(cfg), cfg, recipe=recipe.to_dict()), base / "tiny.pth")
    return base, images[:2]


def test_predict_folder_with_a_corrupt_image(setup, tmp_path):
    base, images = setup
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["predict", str(base / "inputs"), "--checkpoint", str(base / "tiny.pth"), "--out", str(out), "--workers", "0", "--flip"])
    assert result.exit_code == 2, result.output
    assert "1 image(s) failed" in result.output and "corrupt.png" in result.output
    assert "2 prediction(s)" in result.output
    for image in images:
        label = Image.open(out / f"{image.stem}.png")
        assert label.mode == "P" and label.size == Image.open(image).size
        assert int(np.asarray(label).max()) < 150
        assert (out / "overlays" / f"{image.stem}.png").is_file()


def test_predict_single_image_and_bad_options(setup, tmp_path):
    base, images = setup
    ok = CliRunner().invoke(app, ["predict", str(images[0]), "--checkpoint", str(base / "tiny.pth"), "--out", str(tmp_path), "--workers", "0", "--no-overlays", "--path", "eager"])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / f"{images[0].stem}.png").is_file() and not (tmp_path / "overlays").exists()
    bad = CliRunner().invoke(app, ["predict", str(images[0]), "--checkpoint", str(base / "tiny.pth"), "--out", str(tmp_path), "--set", "eval.flip=true"])
    assert bad.exit_code == 1 and "--set needs --recipe" in bad.output
    missing = CliRunner().invoke(app, ["predict", str(base / "nope.jpg"), "--checkpoint", str(base / "tiny.pth"), "--out", str(tmp_path)])
    assert missing.exit_code == 1 and "nope.jpg" in missing.output


def test_same_stem_inputs_and_a_truncated_jpeg(setup, tmp_path):
    """x.png and x.jpg get one output each; a half JPEG is reported by name and skipped (exit 2)."""
    base, images = setup
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(images[0], inputs / "x.jpg")
    Image.open(images[1]).save(inputs / "x.png")
    data = images[0].read_bytes()
    (inputs / "half.jpg").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["predict", str(inputs), "--checkpoint", str(base / "tiny.pth"), "--out", str(out), "--workers", "0", "--no-overlays"])
    assert result.exit_code == 2, result.output
    assert "2 prediction(s)" in result.output and "1 image(s) failed" in result.output
    assert "half.jpg: " in result.output and "truncated JPEG" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["x.jpg.png", "x.png.png"]
    assert Image.open(out / "x.jpg.png").size == Image.open(images[0]).size
    assert Image.open(out / "x.png.png").size == Image.open(images[1]).size
