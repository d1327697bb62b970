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


def test_prepare_out_that_cannot_be_written_is_one_message(tmp_path, monkeypatch):
    """--out naming a file, a folder below a file, or an unwritable folder: exit 1, a message that
    names the path and the fix, no traceback; checked before any image is decoded."""
    import hrseg.data.prepare as prepare

    root = tmp_path / "synth" / "lip"
    generate_synthetic(tmp_path / "synth", datasets=["lip"])
    (tmp_path / "afile").write_text("x")
    decoded = []
    monkeypatch.setattr(prepare, "check_pair", lambda *a, **k: decoded.append(1))
    cases = {
        str(tmp_path / "afile"): "is a file, expected a folder for the list files",
        str(tmp_path / "afile" / "sub"): "is a file, so the folder cannot be created",
        "/proc/hrseg-lists": "cannot write there (in /proc)",
    }
    for out, expected in cases.items():
        result = CliRunner().invoke(hrseg.cli.app, ["prepare", "lip", "--root", str(root), "--out", out])
        assert result.exit_code == 1, result.output
        assert result.output.startswith(f"error: --out {out}: ") and expected in result.output, result.output
        assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    assert not decoded
