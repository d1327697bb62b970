"""`hrseg info` through the real typer app."""

import json

from typer.testing import CliRunner

from hrseg.cli import app


def test_info_json_reproduces_the_official_figures():
    result = CliRunner().invoke(app, ["info", "hrnetv2_w48", "hrnetv2_w18_small_v1", "hrnetv2_w18_small_v2", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["model"]: r for r in json.loads(result.output)}
    assert rows["hrnetv2_w48_fcn"]["official_gflops"] == 696.2
    assert rows["hrnetv2_w18_small_v1_fcn"]["official_gflops"] == 31.1
    assert rows["hrnetv2_w18_small_v2_fcn"]["official_gflops"] == 71.6
    assert rows["hrnetv2_w48_fcn"]["gmacs"] == 747.5


def test_info_table_and_unknown_model():
    runner = CliRunner()
    result = runner.invoke(app, ["info", "hrnetv2_w48_ocr", "--height", "512", "--width", "1024"])
    assert result.exit_code == 0 and "hrnetv2_w48_ocr" in result.output and "301.6" in result.output
    result = runner.invoke(app, ["info", "resnet50"])
    assert result.exit_code == 1 and "unknown model 'resnet50'" in result.output
