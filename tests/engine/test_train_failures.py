"""Training-side failures that must read as one clear message."""

from __future__ import annotations

import pytest

from hrseg.engine.train import train
from hrseg.models.checkpoint import CheckpointError


def test_corrupt_resume_state_says_what_it_is_and_suggests_no_resume(tiny_recipe, tmp_path):
    recipe = tiny_recipe(**{"train.epochs": 1, "eval.num_overlays": 0})
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pth").write_bytes(b"PK\x03\x04" + b"\x00" * 200)  # a cut-off zip
    with pytest.raises(CheckpointError) as info:
        train(recipe, out)
    message = str(info.value)
    assert message.startswith(f"{out / 'checkpoint.pth'}: cannot read checkpoint")
    assert "this run's resume state" in message and "--no-resume" in message and "download" not in message
    metrics = train(recipe, out, resume=False)  # the suggested way out works
    assert metrics["epochs"] == 1
