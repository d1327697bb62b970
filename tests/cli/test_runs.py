"""``hrseg runs`` through typer's CliRunner on a real SQLite MLflow store."""

from __future__ import annotations

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from hrseg.cli import app


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    """A train and an eval run in ``hrseg/cityscapes``, one eval run in ``hrseg/lip``."""
    from mlflow import MlflowClient

    base = tmp_path_factory.mktemp("cli_runs")
    uri = f"sqlite:///{(base / 'mlflow.db').as_posix()}"
    client = MlflowClient(tracking_uri=uri)
    ids = {}
    for experiment, stage, name, params, metrics in (
        ("hrseg/cityscapes", "train", "train cityscapes_ocr lr=0.02", {"train.lr": "0.02", "train.epochs": "484"}, {"final_miou": 0.8051}),
        ("hrseg/cityscapes", "eval", "eval cityscapes_ocr best.pth ss", {"train.lr": "0.02", "train.epochs": "484"}, {"miou": 0.8123, "pixel_acc": 0.96}),
        ("hrseg/lip", "eval", "eval lip_ocr", {"train.lr": "0.007", "train.epochs": "150"}, {"miou": 0.5608}),
    ):
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment, artifact_location=(base / "art").as_uri())
        dataset = experiment.split("/")[1]
        run = client.create_run(experiment_id, run_name=name, tags={"hrseg.stage": stage, "hrseg.dataset": dataset, "hrseg.model": "hrnetv2_w48_ocr"})
        for key, value in params.items():
            client.log_param(run.info.run_id, key, value)
        for key, value in metrics.items():
            client.log_metric(run.info.run_id, key, value)
        client.set_terminated(run.info.run_id)
        ids[name] = run.info.run_id
    return {"uri": uri, "ids": ids, "base": base}


def invoke(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, list(args), env=env)


def test_table(store):
    result = invoke("runs", "--uri", store["uri"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:8] == ["dataset", "stage", "model", "lr", "epochs", "mIoU", "%", "pixel"]
    assert len(lines) == 2 + 3
    assert "DVC exp" not in lines[0]  # no run has one
    line = next(line for line in lines if store["ids"]["eval cityscapes_ocr best.pth ss"] in line)
    assert line.split()[:7] == ["cityscapes", "eval", "hrnetv2_w48_ocr", "0.02", "484", "81.23", "96.00"]
    assert "80.51" in next(line for line in lines if "train cityscapes_ocr" in line)


def test_experiment_filter_and_tracking_uri_env(store):
    result = invoke("runs", "-e", "hrseg/lip", env={"MLFLOW_TRACKING_URI": store["uri"]})
    assert result.exit_code == 0, result.output
    assert "eval lip_ocr" in result.stdout and "56.08" in result.stdout
    assert "cityscapes" not in result.stdout
    result = invoke("runs", "--uri", store["uri"], "-e", "hrseg/lip", "--experiment", "hrseg/cityscapes")
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 5


def test_csv(store):
    result = invoke("runs", "--uri", store["uri"], "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {r["run_name"] for r in rows} == set(store["ids"])
    lip = next(r for r in rows if r["dataset"] == "lip")
    assert (lip["stage"], lip["lr"], lip["epochs"], float(lip["miou"])) == ("eval", "0.007", "150", pytest.approx(0.5608))
    assert lip["experiment"] == "hrseg/lip" and lip["status"] == "FINISHED"


def test_markdown(store):
    result = invoke("runs", "--uri", store["uri"], "-f", "md", "-e", "hrseg/cityscapes")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("| dataset | stage | model | lr | epochs | mIoU % |") and len(lines) == 4
    assert any("| 81.23 | 96.00 |" in line for line in lines)


def test_unknown_experiment(store):
    result = invoke("runs", "--uri", store["uri"], "-e", "hrseg/ade20k")
    assert result.exit_code == 1
    assert "unknown experiment(s) 'hrseg/ade20k'" in result.output and "available: Default, hrseg/cityscapes, hrseg/lip" in result.output
    assert "Traceback" not in result.output


def test_missing_store(tmp_path):
    db = tmp_path / "mlflow.db"
    result = invoke("runs", "--uri", f"sqlite:///{db}")
    assert result.exit_code == 1
    assert f"no MLflow store at {db}" in result.output and "Traceback" not in result.output
    assert not db.exists()


def test_no_runs(store):
    result = invoke("runs", "--uri", store["uri"], "-e", "Default")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert f"no train or eval runs in experiment(s) Default of {store['uri']}" in result.stderr
    csv_result = invoke("runs", "--uri", store["uri"], "-e", "Default", "--format", "csv")
    assert csv_result.exit_code == 0 and csv_result.stdout.startswith("dataset,stage,recipe,model,lr,epochs,miou,")


def test_bad_format(store):
    result = invoke("runs", "--uri", store["uri"], "--format", "html")
    assert result.exit_code == 1
    assert "unknown --format 'html'; expected one of table, tsv, csv, json, md" in result.output


def test_pipeline_runs_are_left_out_with_a_note_and_listed_with_all(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment("hrseg/pipeline", artifact_location=(tmp_path / "art").as_uri())
    for stage, name in (("synth", "synth"), ("prepare", "prepare cityscapes"), ("prepare", "prepare lip"), ("train", "train cityscapes_ocr")):
        client.create_run(experiment_id, run_name=name, tags={"hrseg.stage": stage})
    default = invoke("runs", "--uri", uri)
    assert default.exit_code == 0, default.output
    assert "listing train and eval runs; left out: 2 prepare, 1 synth (--all lists them)" in default.stderr
    assert "train cityscapes_ocr" in default.stdout and "synth" not in default.stdout
    every = invoke("runs", "--uri", uri, "--all", "--format", "json")
    assert every.exit_code == 0 and "left out" not in every.stderr
    assert sorted(r["run_name"] for r in json.loads(every.stdout)) == ["prepare cityscapes", "prepare lip", "synth", "train cityscapes_ocr"]


def test_tsv_keeps_long_run_names(store, tmp_path):
    result = invoke("runs", "--uri", store["uri"], "-f", "tsv")
    lines = result.stdout.splitlines()
    assert lines[0].split("\t")[0] == "dataset" and all(line.count("\t") == 10 for line in lines)
    assert any(line.endswith("\teval cityscapes_ocr best.pth ss") for line in lines)
