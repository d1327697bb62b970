"""``hrseg fetch list|get|verify`` through typer's CliRunner. Sources are local directories and
file paths only; failing cases use catalogue entries without URLs, so nothing goes online."""

from __future__ import annotations

import hashlib
import json

import pytest
from typer.testing import CliRunner

from hrseg.cli import app
from hrseg.weights.download import CATALOGUE, LEDGER_NAME, MIRROR_ENV, read_ledger

WIDE = {"COLUMNS": "250"}
DATA = b"not really weights" * 1000


@pytest.fixture
def runner(monkeypatch):
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    return CliRunner()


@pytest.fixture
def mirror(tmp_path):
    path = tmp_path / "mirror"
    path.mkdir()
    (path / "hrnet_ocr_cs_8162_torch11.pth").write_bytes(DATA)
    (path / "hrnet_w18_small_model_v1.pth").write_bytes(DATA)
    return path


def test_list_shows_the_catalogue(runner):
    result = runner.invoke(app, ["fetch", "list"], env=WIDE)
    assert result.exit_code == 0, result.output
    for name, entry in CATALOGUE.items():
        assert name in result.output and entry.filename in result.output
    assert "81.6 mIoU" in result.output and "by hand" in result.output


def test_list_json_and_kind_filter(runner):
    result = runner.invoke(app, ["fetch", "list", "--json", "--kind", "imagenet"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {r["name"] for r in rows} == {n for n, e in CATALOGUE.items() if e.kind == "imagenet"}
    assert all(r["num_classes"] == 1000 and r["head"] is None for r in rows)
    bad = runner.invoke(app, ["fetch", "list", "--kind", "video"])
    assert bad.exit_code == 1 and "--kind 'video': expected one of imagenet, segmentation" in bad.output


def test_get_from_a_mirror_directory_then_verify(runner, tmp_path, mirror):
    dest = tmp_path / "pretrained"
    args = ["fetch", "get", "hrnetv2_w48_ocr_cityscapes", "hrnetv2_w18_small_v1_imagenet", "--dest", str(dest)]
    result = runner.invoke(app, [*args, "--mirror", str(mirror), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert str(dest / "hrnet_ocr_cs_8162_torch11.pth") in result.stdout
    assert (dest / "hrnet_w18_small_model_v1.pth").read_bytes() == DATA
    assert read_ledger(dest)["hrnet_ocr_cs_8162_torch11.pth"]["sha256"] == hashlib.sha256(DATA).hexdigest()

    ok = runner.invoke(app, ["fetch", "verify", "--dest", str(dest)], env=WIDE)
    assert ok.exit_code == 0, ok.output
    assert ok.output.count(" ok ") == 2
    (dest / "hrnet_ocr_cs_8162_torch11.pth").write_bytes(b"corrupted")
    bad = runner.invoke(app, ["fetch", "verify", "--dest", str(dest), "--json"])
    assert bad.exit_code == 1
    statuses = {r["filename"]: r["status"] for r in json.loads(bad.stdout)}
    assert statuses == {"hrnet_ocr_cs_8162_torch11.pth": "mismatch", "hrnet_w18_small_model_v1.pth": "ok"}


def test_get_uses_the_mirror_environment_variable(runner, tmp_path, mirror):
    dest = tmp_path / "w"
    result = runner.invoke(
        app, ["fetch", "get", "hrnetv2_w48_ocr_cityscapes", "--dest", str(dest)], env={MIRROR_ENV: mirror.as_uri()}
    )
    assert result.exit_code == 0, result.output
    assert (dest / "hrnet_ocr_cs_8162_torch11.pth").read_bytes() == DATA


def test_get_from_imports_a_downloaded_file_with_a_pin(runner, tmp_path):
    download = tmp_path / "download.bin"
    download.write_bytes(DATA)
    digest = hashlib.sha256(DATA).hexdigest()
    dest = tmp_path / "w"
    args = ["fetch", "get", "hrnetv2_w48_imagenet", "--dest", str(dest), "--from", str(download)]
    wrong = runner.invoke(app, [*args, "--sha256", "f" * 64])
    assert wrong.exit_code == 1 and f"got {digest}" in wrong.output
    assert not (dest / "hrnetv2_w48_imagenet_pretrained.pth").exists()
    result = runner.invoke(app, [*args, "--sha256", digest])
    assert result.exit_code == 0, result.output
    assert (dest / "hrnetv2_w48_imagenet_pretrained.pth").read_bytes() == DATA
    assert read_ledger(dest)["hrnetv2_w48_imagenet_pretrained.pth"]["how"] == "pinned with --sha256"


def test_get_without_any_source_explains_the_manual_steps(runner, tmp_path):
    dest = tmp_path / "pretrained"
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(
        app, ["fetch", "get", "hrnetv2_w32_imagenet", "--dest", str(dest), "--mirror", str(empty)], env=WIDE
    )
    assert result.exit_code == 1
    assert result.stdout == ""
    err = result.stderr
    assert "error: could not fetch 'hrnetv2_w32_imagenet'" in err
    assert f"{empty / 'hrnetv2_w32_imagenet_pretrained.pth'} (via --mirror): no such file" in err
    assert "put it at" in err and "hrnetv2_w32_imagenet_pretrained.pth" in err
    assert f"hrseg fetch get hrnetv2_w32_imagenet --dest {dest} --from PATH" in err
    assert not (dest / LEDGER_NAME).exists()


def test_get_rejects_unknown_names_and_pins_for_several_names(runner, tmp_path):
    unknown = runner.invoke(app, ["fetch", "get", "hrnet_w99", "--dest", str(tmp_path)])
    assert unknown.exit_code == 1 and "unknown weights 'hrnet_w99'" in unknown.output
    assert "hrnetv2_w48_ocr_cityscapes" in unknown.output
    several = runner.invoke(
        app, ["fetch", "get", "hrnetv2_w48_imagenet", "hrnetv2_w32_imagenet", "--sha256", "0" * 64, "--dest", str(tmp_path)]
    )
    assert several.exit_code == 1 and "give exactly one name" in several.output


def test_verify_of_an_empty_or_missing_directory(runner, tmp_path):
    empty = runner.invoke(app, ["fetch", "verify", "--dest", str(tmp_path)])
    assert empty.exit_code == 0 and "no weight files" in empty.output
    missing = runner.invoke(app, ["fetch", "verify", "--dest", str(tmp_path / "nope")])
    assert missing.exit_code == 1 and "no such weights directory" in missing.output
