"""Fixtures for the engine tests: the synthetic Cityscapes copy (``hrseg.data.synth`` +
``hrseg prepare``) and a tiny recipe on top of ``params/full/cityscapes_ocr.yaml``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """In-process training on one thread: on a loaded 2-core machine, two OpenMP threads per
    process are an order of magnitude slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def synth_cityscapes(tmp_path_factory) -> tuple[Path, Path]:
    """(dataset root, lists dir) of the synthetic Cityscapes (24 train / 8 val, 128x256)."""
    from hrseg.data import prepare_dataset
    from hrseg.data.synth import generate_synthetic

    base = tmp_path_factory.mktemp("synth")
    generate_synthetic(base, datasets=["cityscapes"])
    prepare_dataset("cityscapes", base / "cityscapes", base / "lists" / "cityscapes", workers=1)
    return base / "cityscapes", base / "lists" / "cityscapes"


def tiny_overrides(root: Path, lists: Path, **extra) -> dict:
    """A W18-Small-v1 + small OCR head on 64x128 crops, 2 epochs of 12 iterations, CPU-friendly."""
    values = {
        "model.backbone": "hrnetv2_w18_small_v1",
        "model.ocr_mid_channels": 32,
        "model.ocr_key_channels": 16,
        "data.root": str(root),
        "data.lists": str(lists),
        "data.crop_size": [64, 128],
        "data.base_size": 256,
        "data.num_workers": 0,
        "train.pretrained": None,
        "train.epochs": 2,
        "train.batch_size": 2,
        "train.log_every": 4,
        "train.deterministic": True,
        "eval.crop_size": [128, 256],
        "eval.base_size": 256,
        "eval.num_overlays": 2,
        "data.val_num_samples": 4,
    }
    values.update(extra)
    return values


@pytest.fixture
def tiny_recipe(synth_cityscapes):
    """``tiny_recipe(**overrides) -> Recipe``."""
    from hrseg.recipe import load_recipe

    def make(**extra):
        return load_recipe(REPO / "params" / "full" / "cityscapes_ocr.yaml", tiny_overrides(*synth_cityscapes, **extra))

    return make


@pytest.fixture
def tiny_recipe_file(tiny_recipe, tmp_path):
    """``tiny_recipe_file(**overrides) -> Path`` of a resolved recipe YAML (for subprocess runs)."""

    def make(**extra):
        path = tmp_path / "tiny.yaml"
        path.write_text(yaml.safe_dump(tiny_recipe(**extra).to_dict(), sort_keys=False))
        return path

    return make


@pytest.fixture
def run_env() -> dict[str, str]:
    """Environment for subprocess runs: one thread per process (deterministic and polite on a
    2-core machine), no MLflow/DVC variables leaking in from the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    return env


@pytest.fixture
def hrseg_cmd() -> list[str]:
    """``python -m hrseg.cli`` with this interpreter."""
    return [sys.executable, "-m", "hrseg.cli"]
