"""``hrseg prepare`` through the real typer app."""

from __future__ import annotations

from typer.testing import CliRunner

import hrseg.cli
from hrseg.data.synth import generate_synthetic


def test_prepare_writes_lists(tmp_path):
    generate_synthetic(tmp_path / "synth", datasets=["lip"])
    args = ["prepare", "lip", "--root", str(tmp_path / "synth" / "lip"), "--out", str(tmp_path / "lists"), "--workers", "2"]
    result = CliRunner().invoke(hrseg.cli.app, args)
    assert result.exit_code == 0, result.output
    assert "train" in result.output and "18" in result.output
    assert len((tmp_path / "lists" / "train.lst").read_text().splitlines()) == 18
    assert (tmp_path / "lists" / "summary.json").is_file()


def test_prepare_reports_problems_and_exits_1(tmp_path):
    generate_synthetic(tmp_path / "synth", datasets=["lip"])
    root = tmp_path / "synth" / "lip"
    for label in sorted((root / "TrainVal_parsing_annotations" / "val_segmentations").glob("*.png"))[:2]:
        label.write_bytes(b"broken")
    result = CliRunner().invoke(hrseg.cli.app, ["prepare", "lip", "--root", str(root), "--out", str(tmp_path / "lists")])
    assert result.exit_code == 1
    assert "error:" in result.output and "2 problem(s)" in result.output and "cannot decode label image" in result.output
    assert not (tmp_path / "lists").exists()


def test_prepare_unknown_dataset_and_layout(tmp_path):
    result = CliRunner().invoke(hrseg.cli.app, ["prepare", "mapillary", "--root", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "unknown dataset 'mapillary'" in result.output
    result = CliRunner().invoke(hrseg.cli.app, ["prepare", "cocostuff", "--root", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "does not look like cocostuff" in result.output and "{train,val}/image/<name>.jpg" in result.output
