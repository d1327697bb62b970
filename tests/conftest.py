"""Shared fixtures. The parity fixtures live outside the repository (../shared/parity); tests
that need them skip with a reason where they are absent (override with $HRSEG_PARITY_DIR)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent


def parity_dir() -> Path:
    return Path(os.environ.get("HRSEG_PARITY_DIR", REPO.parent / "shared" / "parity"))


@pytest.fixture(scope="session")
def parity() -> Path:
    path = parity_dir()
    if not (path / "w18s2_ocr_k19.pth").is_file():
        pytest.skip(f"parity fixtures not found in {path} (set HRSEG_PARITY_DIR)")
    return path


@pytest.fixture(autouse=True)
def _seed_and_logging():
    """A fixed torch seed, and the root logger's handlers/level restored after each test (CLI
    commands configure logging for the process)."""
    torch.manual_seed(0)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
