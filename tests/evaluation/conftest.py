"""Tiny models, synthetic data and checkpoints for the evaluation tests (as fixtures: the
project runs pytest with --import-mode=importlib, so test modules cannot import helpers)."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from hrseg.models import build_model


class QuarterResNet(nn.Module):
    """A few convolutions with logits at 1/4 resolution, like HRNet; not mirror-symmetric."""

    def __init__(self, num_classes: int, align_corners: bool = True) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.align_corners = align_corners
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, num_classes, (1, 3), padding=(0, 1)),
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.body(x)}


def calibrate(model: nn.Module, size: tuple[int, int] = (64, 96)) -> nn.Module:
    """Random weights with BatchNorm statistics taken from a random batch, so that outputs
    vary over the image (the official init gives near-constant logits)."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = 1.0
        model.train()
        model(torch.randn(2, 3, *size, generator=gen))
        model.eval()
    return model



@pytest.fixture(scope="session")
def tiny_hrnet() -> nn.Module:
    torch.manual_seed(0)
    model = build_model("hrnetv2_w18_small_v1", "ocr", 5, ocr_mid_channels=32, ocr_key_channels=16)
    return calibrate(model)


@pytest.fixture()
def quarter_net() -> nn.Module:
    torch.manual_seed(0)
    return QuarterResNet(6).eval()


# ----------------------------------------------------------------------------- synthetic data


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory):
    """Miniature Cityscapes and ADE20K written by ``hrseg synth`` and listed by
    ``hrseg prepare`` (the real commands). Returns {dataset: (root, lists)}."""
    from typer.testing import CliRunner

    from hrseg.cli import app

    base = tmp_path_factory.mktemp("synth")
    runner = CliRunner()
    root_logger = logging.getLogger()
    handlers, level = root_logger.handlers[:], root_logger.level
    result = runner.invoke(app, ["synth", "--out", str(base / "raw"), "-d", "cityscapes,ade20k"])
    assert result.exit_code == 0, result.output
    found = {}
    for name in ("cityscapes", "ade20k"):
        lists = base / "lists" / name
        result = runner.invoke(app, ["prepare", name, "--root", str(base / "raw" / name), "--out", str(lists), "--workers", "1"])
        assert result.exit_code == 0, result.output
        found[name] = (base / "raw" / name, lists)
    root_logger.handlers[:] = handlers  # the commands set logging up on CliRunner's stderr
    root_logger.setLevel(level)
    return found


TINY_MODEL = {"backbone": "hrnetv2_w18_small_v1", "head": "ocr", "ocr_mid_channels": 32, "ocr_key_channels": 16}


def tiny_recipe(dataset: str, root, lists, num_classes: int, **eval_cfg):
    from hrseg.recipe import recipe_from_dict

    return recipe_from_dict(
        {
            "name": f"tiny_{dataset}",
            "model": {**TINY_MODEL, "num_classes": num_classes},
            "data": {"dataset": dataset, "root": str(root), "lists": str(lists), "num_workers": 0},
            "eval": {"num_overlays": 2, **eval_cfg},
        }
    )


def write_tiny_checkpoint(path, num_classes: int, **extra):
    """A calibrated tiny OCR model saved in our checkpoint format."""
    from hrseg import io as hio
    from hrseg.models import build_model_from_config
    from hrseg.models.checkpoint import make_checkpoint
    from hrseg.models.config import ModelConfig

    cfg = ModelConfig(**TINY_MODEL, num_classes=num_classes)
    torch.manual_seed(0)
    model = calibrate(build_model_from_config(cfg))
    hio.torch_save(make_checkpoint(model, cfg, **extra), path)
    return model


@pytest.fixture(scope="session")
def make_recipe():
    """``make_recipe(dataset, root, lists, num_classes, **eval_cfg)`` -> a tiny-model Recipe."""
    return tiny_recipe


@pytest.fixture(scope="session")
def make_checkpoint():
    """``make_checkpoint(path, num_classes, **extra)`` -> the saved (calibrated) tiny model."""
    return write_tiny_checkpoint
