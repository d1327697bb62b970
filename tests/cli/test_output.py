"""Output that survives a pipe: help at 80 columns, tables as plain text / TSV / JSON.

``CliRunner`` output is not a terminal, exactly like ``hrseg ... | less`` or ``> file``."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from hrseg.cli import app
from hrseg.weights.catalogue import CATALOGUE

NARROW = {"COLUMNS": "80"}
COMMANDS = [
    [], ["train"], ["evaluate"], ["predict"], ["prepare"], ["synth"], ["export"], ["info"], ["runs"], ["ui"],
    ["fetch"], ["fetch", "list"], ["fetch", "get"], ["fetch", "verify"],
]  # fmt: skip
#: typer's type labels (<str>, <list[str]>, <path>, <int range>) and its {recipe} usage marks
ARTEFACT = re.compile(r"<(str|int|float|bool|path|list\[[^\]]*\]|[a-z]+ range)>|\{[a-z_]+\}")


def invoke(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, list(args), env=env or NARROW)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "hrseg")
def test_help_fits_80_columns_without_artefacts_or_cuts(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert not ARTEFACT.search(text), ARTEFACT.search(text)
    assert "…" not in text and not any(line.rstrip().endswith("...") and "  " in line.strip() for line in text.splitlines())
    assert "╭" not in text and "│" not in text  # no rich panels


def test_command_lists_show_the_whole_first_sentence():
    text = " ".join(invoke("--help").stdout.split())
    assert "train Train RECIPE and write checkpoint.pth, best.pth, final.pth, metrics.json and log.csv to --out." in text
    fetch = " ".join(invoke("fetch", "--help").stdout.split())
    assert "get Download, verify (sha256) and place weights; prints the path of each file." in fetch


def test_usage_names_arguments_plainly():
    assert "Usage: hrseg evaluate [OPTIONS] RECIPE" in invoke("evaluate", "--help").stdout
    assert "-o, --out PATH" in invoke("evaluate", "--help").stdout
    assert "--retries INTEGER RANGE" in invoke("fetch", "get", "--help").stdout


def test_fetch_list_piped_is_full_width_plain_text():
    result = invoke("fetch", "list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["name", "kind", "dataset", "model", "expected", "file", "download"]
    assert set(lines[1]) <= {"-", " "}
    for entry in CATALOGUE.values():
        assert any(entry.name in line and entry.filename in line for line in lines), entry.name
    assert "…" not in result.stdout and "┃" not in result.stdout
    assert max(len(line) for line in lines) > 80  # wider than the "terminal": nothing was cut to fit


def test_fetch_list_tsv_and_json():
    tsv = invoke("fetch", "list", "--format", "tsv").stdout.splitlines()
    assert tsv[0] == "name\tkind\tdataset\tmodel\texpected\tfile\tdownload"
    assert len(tsv) == 1 + len(CATALOGUE) and all(line.count("\t") == 6 for line in tsv)
    rows = json.loads(invoke("fetch", "list", "-f", "json").stdout)
    assert {r["name"] for r in rows} == set(CATALOGUE) and all("urls" in r for r in rows)
    assert json.loads(invoke("fetch", "list", "--json").stdout) == rows


def test_bad_format_is_one_error_line():
    result = invoke("fetch", "list", "--format", "html")
    assert result.exit_code == 1
    assert "unknown --format 'html'; expected one of table, tsv, json" in result.output and "Traceback" not in result.output


def test_info_piped_tsv_and_json():
    args = ("info", "hrnetv2_w18_small_v1", "--height", "64", "--width", "64")
    plain = invoke(*args).stdout.splitlines()
    assert plain[0] == "64x64 input, 19 classes, batch 1"
    assert plain[1].split() == ["model", "params", "(M)", "official", "GMACs", "GFLOPs"]
    assert plain[3].split()[0] == "hrnetv2_w18_small_v1_fcn" and plain[-1].startswith("official = conv multiply-adds")
    tsv = invoke(*args, "-f", "tsv").stdout.splitlines()
    assert tsv[0].split("\t") == ["model", "params (M)", "official", "GMACs", "GFLOPs"] and tsv[1].startswith("hrnetv2_w18_small_v1_fcn\t1.54\t")
    (row,) = json.loads(invoke(*args, "--format", "json").stdout)
    assert row["model"] == "hrnetv2_w18_small_v1_fcn" and row["params"] == 1_540_819 and row["input"] == "64x64"
