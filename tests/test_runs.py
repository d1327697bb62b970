"""``hrseg.tracking.runs``: rows built from a real SQLite MLflow store, and the three output formats."""

from __future__ import annotations

import csv
import io
import time

import pandas as pd
import pytest

from hrseg.tracking.runs import COLUMNS, SUMMARY_COLUMNS, RunsError, format_runs, list_runs, sqlite_path

T0 = int(time.time() * 1000) - 3_600_000  # an hour ago, in ms


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    """Runs shaped like hrseg's: a finished train run (logged through ``hrseg.tracking.tracker``), its
    eval run, a train run still in progress, a foreign run, a deleted run, another dataset."""
    from mlflow import MlflowClient

    from hrseg.recipe import load_recipe
    from hrseg.runtime.tracker import params_from_dict
    from hrseg.tracking.tracker import start_tracking

    base = tmp_path_factory.mktemp("runs_store")
    uri = f"sqlite:///{(base / 'mlflow.db').as_posix()}"
    recipe = load_recipe("cityscapes_ocr", {"train.lr": 0.02, "train.epochs": 3})
    tracker = start_tracking(
        "hrseg/cityscapes",
        "train cityscapes_ocr lr=0.02",
        tags={"hrseg.stage": "train", "hrseg.recipe": recipe.name, "hrseg.dataset": "cityscapes", "hrseg.model": recipe.model.name,
              "dvc.exp_name": "lucky-lark", "hrseg.profile": "full"},
        params=params_from_dict(recipe.to_dict()),
        uri=uri,
    )  # fmt: skip
    for epoch, miou in ((1, 0.50), (2, 0.61), (3, 0.64)):
        tracker.log_metrics({"val/miou": miou, "val/pixel_acc": 0.9 + epoch / 100}, step=epoch)
    tracker.log_metrics({"final_miou": 0.64, "final_pixel_acc": 0.93, "final_mean_acc": 0.71, "best_miou": 0.64}, step=3)
    tracker.close()
    train_id = tracker.run_id

    client = MlflowClient(tracking_uri=uri)
    cityscapes = client.get_experiment_by_name("hrseg/cityscapes").experiment_id

    def run(experiment_id, name, start, tags=None, params=None, metrics=None, status="FINISHED"):
        r = client.create_run(experiment_id, start_time=start, tags=tags or {}, run_name=name)
        for key, value in (params or {}).items():
            client.log_param(r.info.run_id, key, value)
        for key, values in (metrics or {}).items():
            for step, value in enumerate(values if isinstance(values, list) else [values]):
                client.log_metric(r.info.run_id, key, value, step=step)
        if status != "RUNNING":
            client.set_terminated(r.info.run_id, status)
        return r.info.run_id

    eval_id = run(
        cityscapes, "eval cityscapes_ocr final.pth 6scales+flip", T0 + 60_000,
        tags={"hrseg.stage": "eval", "hrseg.recipe": "cityscapes_ocr", "hrseg.dataset": "cityscapes", "hrseg.model": "hrnetv2_w48_ocr",
              "hrseg.train_run_id": train_id, "git.commit": "abc123"},
        params={"train.lr": "0.02", "train.epochs": "3", "model.backbone": "hrnetv2_w48"},
        metrics={"miou": 0.8123, "pixel_acc": 0.9612, "mean_acc": 0.88},
    )  # fmt: skip
    running_id = run(
        cityscapes, "train cityscapes_ocr lr=0.01", T0 + 120_000,
        tags={"hrseg.stage": "train", "hrseg.dataset": "cityscapes", "hrseg.model": "hrnetv2_w48_ocr"},
        params={"train.lr": "0.01", "train.epochs": "484"},
        metrics={"val/miou": [0.30, 0.42], "val/pixel_acc": [0.8, 0.85]},
        status="RUNNING",
    )  # fmt: skip
    foreign_id = run(cityscapes, "notebook | sweep", T0 + 30_000, params={"model.backbone": "hrnetv2_w18", "model.head": "fcn"})
    deleted_id = run(cityscapes, "deleted", T0 + 40_000)
    client.delete_run(deleted_id)
    ade = client.create_experiment("hrseg/ade20k", artifact_location=(base / "mlartifacts" / "ade").as_uri())
    ade_id = run(ade, "eval ade20k_ocr", T0 + 90_000, tags={"hrseg.stage": "eval", "hrseg.dataset": "ade20k"}, metrics={"miou": 0.45})
    return {
        "uri": uri, "base": base, "train": train_id, "eval": eval_id, "running": running_id, "foreign": foreign_id,
        "deleted": deleted_id, "ade": ade_id, "cityscapes_id": cityscapes,
    }  # fmt: skip


def by_id(frame: pd.DataFrame) -> dict[str, dict]:
    return {r["run_id"]: r for r in frame.to_dict("records")}


def test_sqlite_path():
    assert str(sqlite_path("sqlite:////abs/dir/mlflow.db")) == "/abs/dir/mlflow.db"
    assert str(sqlite_path("sqlite:///rel.db?timeout=5")) == "rel.db"
    assert sqlite_path("sqlite:///:memory:") is None
    assert sqlite_path("http://127.0.0.1:5000") is None
    assert sqlite_path("postgresql://u@h/db") is None


def test_rows_from_hrseg_runs(store):
    frame = list_runs(store["uri"])
    assert tuple(frame.columns) == COLUMNS
    rows = by_id(frame)
    assert store["deleted"] not in rows
    assert set(rows) == {store[k] for k in ("train", "eval", "running", "foreign", "ade")}

    train = rows[store["train"]]
    assert (train["dataset"], train["stage"], train["recipe"], train["model"]) == ("cityscapes", "train", "cityscapes_ocr", "hrnetv2_w48_ocr")
    assert train["lr"] == 0.02 and train["epochs"] == 3  # resolved recipe values, as logged
    assert train["miou"] == pytest.approx(0.64) and train["pixel_acc"] == pytest.approx(0.93) and train["mean_acc"] == pytest.approx(0.71)
    assert train["run_name"] == "train cityscapes_ocr lr=0.02"
    assert (train["dvc_exp"], train["profile"], train["status"], train["experiment"]) == ("lucky-lark", "full", "FINISHED", "hrseg/cityscapes")

    evaluation = rows[store["eval"]]
    assert evaluation["stage"] == "eval" and evaluation["miou"] == pytest.approx(0.8123) and evaluation["pixel_acc"] == pytest.approx(0.9612)
    assert evaluation["train_run_id"] == store["train"] and evaluation["git_commit"] == "abc123"

    running = rows[store["running"]]  # in progress: the latest validation
    assert running["status"] == "RUNNING" and running["miou"] == pytest.approx(0.42) and running["pixel_acc"] == pytest.approx(0.85)
    assert running["epochs"] == 484 and running["lr"] == 0.01

    foreign = rows[store["foreign"]]  # no hrseg tags: what can be derived, the rest empty
    assert foreign["model"] == "hrnetv2_w18_fcn"
    assert all(pd.isna(foreign[c]) for c in ("miou", "lr", "epochs", "stage", "dataset", "recipe", "dvc_exp"))


def test_newest_first(store):
    frame = list_runs(store["uri"])
    times = list(frame["start_time"])
    assert times == sorted(times, reverse=True)
    assert frame["run_id"].iloc[-1] == store["foreign"]  # the oldest


def test_experiment_filter_by_name_and_id(store):
    ade = list_runs(store["uri"], ["hrseg/ade20k"])
    assert list(ade["run_id"]) == [store["ade"]] and list(ade["dataset"]) == ["ade20k"]
    both = list_runs(store["uri"], ["hrseg/ade20k", store["cityscapes_id"]])
    assert len(both) == 5
    with pytest.raises(RunsError, match=r"unknown experiment\(s\) 'hrseg/lip'.*available: Default, hrseg/ade20k, hrseg/cityscapes"):
        list_runs(store["uri"], ["hrseg/lip"])


def test_missing_store_is_a_clear_error_and_is_not_created(tmp_path):
    db = tmp_path / "nothing" / "mlflow.db"
    with pytest.raises(RunsError, match=rf"no MLflow store at {db}.*hrseg train"):
        list_runs(f"sqlite:///{db}")
    assert not db.exists()


def test_default_store_is_the_tracking_uri(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["uri"])
    assert len(list_runs()) == 5


def test_no_runs_gives_an_empty_frame(store):
    frame = list_runs(store["uri"], ["Default"])  # the experiment MLflow creates, never used
    assert frame.empty and tuple(frame.columns) == COLUMNS
    assert format_runs(frame, "csv") == ",".join(COLUMNS) + "\n"
    assert format_runs(frame, "md").count("\n") == 2


def test_unreadable_store_is_a_runs_error(tmp_path):
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"this is not a database")
    with pytest.raises(RunsError, match=r"cannot read MLflow runs from sqlite:///"):
        list_runs(f"sqlite:///{db}")


# ------------------------------------------------------------------------------ formats


def test_table_format(store):
    frame = list_runs(store["uri"])
    text = format_runs(frame, "table")
    lines = text.splitlines()
    assert lines[0].split()[:6] == ["dataset", "stage", "model", "lr", "epochs", "mIoU"]
    assert set(lines[1]) <= {"-", " "}
    eval_line = next(line for line in lines if store["eval"] in line)
    assert "81.23" in eval_line and "96.12" in eval_line and " 0.02 " in eval_line  # percent, %g
    assert "DVC exp" in lines[0] and "lucky-lark" in next(line for line in lines if store["train"] in line)
    assert lines[0].rstrip().endswith("run name")
    foreign_line = next(line for line in lines if store["foreign"] in line)
    assert " - " in foreign_line  # missing values
    # columns line up: every run id starts at the same offset as its header
    at = lines[0].index("run id")
    assert all(line[at : at + 32] in {store[k] for k in ("train", "eval", "running", "foreign", "ade")} for line in lines[2:])


def test_table_cuts_long_run_names():
    frame = pd.DataFrame([{c: None for c in COLUMNS} | {"run_name": "train " + "x" * 80, "run_id": "r1"}], columns=list(COLUMNS))
    line = format_runs(frame, "table").splitlines()[2]
    assert "train xxx" in line and "..." in line and "x" * 80 not in line


def test_markdown_format(store):
    text = format_runs(list_runs(store["uri"]), "md")
    lines = text.splitlines()
    assert lines[0] == "| dataset | stage | model | lr | epochs | mIoU % | pixel acc % | run id | started | DVC exp | run name |"
    assert lines[1].count("---:") == 4
    assert len(lines) == 2 + 5
    assert all(line.count(" | ") == len(SUMMARY_COLUMNS) - 1 for line in lines[2:] if "\\|" not in line)
    assert "notebook \\| sweep" in text  # a pipe in a cell is escaped
    assert "| 81.23 | 96.12 |" in text


def test_csv_format_round_trips(store):
    frame = list_runs(store["uri"])
    rows = list(csv.DictReader(io.StringIO(format_runs(frame, "csv"))))
    assert tuple(rows[0]) == COLUMNS and len(rows) == 5
    row = next(r for r in rows if r["run_id"] == store["eval"])
    assert float(row["miou"]) == pytest.approx(0.8123)  # fractions, as logged
    assert row["epochs"] == "3" and row["lr"] == "0.02" and row["train_run_id"] == store["train"]
    assert pd.Timestamp(row["start_time"]) == frame.set_index("run_id").loc[store["eval"], "start_time"].floor("s")
    foreign = next(r for r in rows if r["run_id"] == store["foreign"])
    assert foreign["miou"] == "" and foreign["run_name"] == "notebook | sweep"


def test_unknown_format_and_wrong_frame():
    with pytest.raises(RunsError, match=r"unknown format 'html'; expected one of table, tsv, csv, json, md"):
        format_runs(pd.DataFrame(columns=list(COLUMNS)), "html")
    with pytest.raises(RunsError, match=r"lacks column\(s\) .*miou"):
        format_runs(pd.DataFrame({"dataset": ["x"]}), "table")


def test_table_keeps_long_run_names_when_asked():
    frame = pd.DataFrame([{c: None for c in COLUMNS} | {"run_name": "train " + "x" * 80, "run_id": "r1"}], columns=list(COLUMNS))
    assert "x" * 80 in format_runs(frame, "table", cut_names=False)
