"""``hrseg synth`` through the real typer app."""

from __future__ import annotations

from typer.testing import CliRunner

import hrseg.cli


def test_synth_selected_datasets(tmp_path):
    result = CliRunner().invoke(hrseg.cli.app, ["synth", "--out", str(tmp_path), "--seed", "3", "--datasets", "lip,ade20k", "-d", "cocostuff"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ade20k", "cocostuff", "lip"]
    assert "lip: 48 files" in result.output
    assert len(list((tmp_path / "ade20k" / "train" / "image").glob("ADE_train_*.jpg"))) == 20


def test_synth_unknown_dataset(tmp_path):
    result = CliRunner().invoke(hrseg.cli.app, ["synth", "--out", str(tmp_path), "--datasets", "kitti"])
    assert result.exit_code == 1 and "unknown synthetic dataset(s) 'kitti'" in result.output
