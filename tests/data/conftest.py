"""Shared fixtures: one synthetic copy of the five datasets per test session, and their lists."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from hrseg.data.prepare import prepare_dataset
from hrseg.data.synth import generate_synthetic


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate_synthetic(root, seed=0)
    return root


@pytest.fixture(scope="session")
def lists_root(synth_root, tmp_path_factory) -> Path:
    """``<lists_root>/<dataset>/`` prepared from the session's synthetic data."""
    out = tmp_path_factory.mktemp("lists")
    with warnings.catch_warnings():  # pycocotools' Cython decode trips a NumPy 2 DeprecationWarning
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        for name in ("cityscapes", "lip", "pascal_ctx", "cocostuff", "ade20k"):
            prepare_dataset(name, synth_root / name, out / name, workers=2)
    return out
