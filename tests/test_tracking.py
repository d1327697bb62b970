"""hrseg.tracking.tracker: default store, tags, params, run contents on a temporary SQLite store,
the MlflowTracker the CLI and the stages hand the library (its tags, run name and run lookup), and
a tracking backend that is down, slow or failing (never raises, never blocks the caller)."""

from __future__ import annotations

import hashlib
import logging
import socket
import subprocess
import threading

import pytest

from hrseg.runtime.tracker import NullRun, checkpoint_tags, find_training_run, params_from_dict, pipeline_tags
from hrseg.tracking.tracker import (
    MlflowRun,
    MlflowTracker,
    default_tracking_uri,
    standard_tags,
    start_tracking,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A SQLite tracking URI (created once per module: schema creation takes seconds)."""
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    return f"sqlite:///{path}"


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_STAGE", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV", "RANK"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_default_uri_is_absolute_sqlite_at_the_repo_root(clean_env, tmp_path):
    clean_env.chdir(tmp_path)
    assert default_tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"  # not a git repo: cwd
    assert default_tracking_uri().startswith("sqlite:////")
    clean_env.setenv("DVC_ROOT", str(tmp_path / "repo"))
    assert default_tracking_uri() == f"sqlite:///{(tmp_path / 'repo').resolve()}/mlflow.db"
    clean_env.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert default_tracking_uri() == "http://127.0.0.1:5000"


def test_default_uri_uses_the_git_top_level(clean_env, tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "sub" / "dir").mkdir(parents=True)
    clean_env.chdir(tmp_path / "sub" / "dir")
    assert default_tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"


def test_standard_tags_git_and_dvc(clean_env, tmp_path):
    git = ["git", "-C", str(tmp_path), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "a.txt").write_text("1")
    subprocess.run([*git, "add", "a.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    clean_env.setenv("DVC_EXP_NAME", "sweet-exp")
    clean_env.setenv("DVC_STAGE", "train@cityscapes_ocr")
    tags = standard_tags(tmp_path)
    assert tags["git.commit"] == commit and tags["git.dirty"] == "false"
    assert tags["dvc.exp_name"] == "sweet-exp" and tags["dvc.stage"] == "train@cityscapes_ocr" and "dvc.baseline_rev" not in tags
    (tmp_path / "a.txt").write_text("2")
    assert standard_tags(tmp_path)["git.dirty"] == "true"


def test_params_are_flat_strings_without_nulls():
    params = params_from_dict({"train": {"lr": 0.01, "pretrained": None, "loss": {"balance_weights": [0.4, 1.0]}}, "name": "x"})
    assert params == {"train.lr": "0.01", "train.pretrained": "none", "train.loss.balance_weights": "[0.4, 1.0]", "name": "x"}


def test_run_contents_on_sqlite(clean_env, store, tmp_path):
    from matplotlib.figure import Figure
    from mlflow import MlflowClient

    artifact = tmp_path / "metrics.json"
    artifact.write_text('{"miou": 0.5}\n')
    tracker = start_tracking("hrseg/test", "train tiny", tags={"hrseg.stage": "train"}, params={"train.lr": "0.01"}, uri=store)
    assert tracker.enabled and tracker.run_id
    tracker.log_metrics({"train/loss": 1.5}, step=10)
    tracker.log_metrics({"train/loss": 1.0}, step=20)
    tracker.set_tags(checkpoint_tags("checkpoint.final", artifact))
    tracker.log_artifact(artifact, "results")
    tracker.log_dict({"train": {"lr": 0.01}}, "config/recipe.yaml")
    fig = Figure()
    fig.add_subplot().plot([1, 2, 3])
    tracker.log_figure(fig, "curves/training.png")
    tracker.close()
    assert not tracker.enabled

    client = MlflowClient(store)
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "train tiny"
    assert run.data.params == {"train.lr": "0.01"}
    assert run.data.tags["hrseg.stage"] == "train"
    assert run.data.tags["checkpoint.final.sha256"] == hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert [(m.step, m.value) for m in client.get_metric_history(tracker.run_id, "train/loss")] == [(10, 1.5), (20, 1.0)]
    listed = {a.path for d in ("results", "config", "curves") for a in client.list_artifacts(tracker.run_id, d)}
    assert listed == {"results/metrics.json", "config/recipe.yaml", "curves/training.png"}
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "hrseg/test"
    assert experiment.artifact_location.endswith("/mlartifacts/hrseg_test")  # next to the database


def test_reopening_a_run_keeps_its_id_and_params(clean_env, store, caplog):
    from mlflow import MlflowClient

    first = start_tracking("hrseg/test", "train resume", tags={}, params={"a": "1"}, uri=store)
    first.log_metrics({"val/miou": 0.1}, step=1)
    first.close("KILLED")
    again = start_tracking("hrseg/test", "ignored", tags={}, params={"a": "2", "b": "3"}, uri=store, run_id=first.run_id)
    assert again.run_id == first.run_id
    assert "keeps its original values of a" in caplog.text
    again.log_metrics({"val/miou": 0.2}, step=2)
    again.close()
    run = MlflowClient(store).get_run(first.run_id)
    assert run.info.status == "FINISHED" and run.data.params == {"a": "1", "b": "3"}
    assert [m.step for m in MlflowClient(store).get_metric_history(first.run_id, "val/miou")] == [1, 2]


def test_disabled_trackers_accept_everything(clean_env, store):
    off = start_tracking("hrseg/test", "x", tags={}, params={}, uri=store, enabled=False)
    clean_env.setenv("RANK", "1")
    other_rank = start_tracking("hrseg/test", "x", tags={}, params={}, uri=store)
    for tracker in (off, other_rank):
        assert isinstance(tracker, NullRun) and not tracker.enabled and tracker.run_id is None
        tracker.log_metrics({"a": 1.0}, step=1)
        tracker.log_params({"a": 1})
        tracker.set_tags({"a": 1})
        tracker.log_dict({"a": 1}, "a.json")
        tracker.log_artifact("/nonexistent")
        tracker.close("FAILED")


def test_mlflow_tracker_adds_its_tags_and_name_and_finds_runs_by_tag(clean_env, store, tmp_path):
    """What the library gets from the CLI and the stages: the tracker's tags go over the
    library's, its run name replaces the library's default, and an evaluation finds the
    training run of a weight file by the file's sha256 (final, else best)."""
    from mlflow import MlflowClient

    clean_env.setenv("DVC_EXP_NAME", "lucky-lark")
    tracker = MlflowTracker(uri=store, tags=pipeline_tags("train", "embedded"), run_name="train tiny lr=0.02")
    final, best = tmp_path / "final.pth", tmp_path / "best.pth"
    final.write_bytes(b"final weights")
    best.write_bytes(b"best weights")
    run = tracker.start_run("hrseg/test", "the library's default", {"hrseg.stage": "library", "hrseg.recipe": "tiny"}, {"train.lr": "0.02"})
    run.set_tags({**checkpoint_tags("checkpoint.final", final), **checkpoint_tags("checkpoint.best", best)})
    run.close()
    got = MlflowClient(store).get_run(run.run_id)
    assert got.info.run_name == "train tiny lr=0.02" and got.data.params == {"train.lr": "0.02"}
    tags = got.data.tags
    assert tags["hrseg.stage"] == "train" and tags["hrseg.recipe"] == "tiny" and tags["hrseg.profile"] == "embedded"
    assert tags["hrseg.pipeline"] == "lucky-lark" and tags["dvc.exp_name"] == "lucky-lark"
    with MlflowTracker(uri=store).start_run("hrseg/test", "the library's default", {}, {}) as unnamed:
        pass
    assert MlflowClient(store).get_run(unnamed.run_id).info.run_name == "the library's default"  # the tracker names none
    for path in (final, best):
        assert find_training_run(tracker, hashlib.sha256(path.read_bytes()).hexdigest()) == run.run_id
    assert find_training_run(tracker, hashlib.sha256(b"other").hexdigest()) is None
    assert find_training_run(MlflowTracker(uri=f"sqlite:///{tmp_path / 'empty.db'}"), "0" * 64) is None


def test_refused_connection_disables_tracking_fast(clean_env, caplog):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        tracker = start_tracking("hrseg/test", "x", tags={}, params={"a": 1}, uri=f"http://127.0.0.1:{port}", preflight_timeout=1)
    assert not tracker.enabled
    assert f"MLflow tracking disabled: the backend at http://127.0.0.1:{port} did not answer" in caplog.text
    tracker.log_metrics({"loss": 1.0}, step=1)  # no error
    tracker.close()


def test_silent_server_times_out_in_the_preflight(clean_env, caplog):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)  # accepts the TCP handshake, never answers the HTTP request
        port = sock.getsockname()[1]
        tracker = start_tracking("hrseg/test", "x", tags={}, params={}, uri=f"http://127.0.0.1:{port}", preflight_timeout=1)
    assert not tracker.enabled and "did not answer" in caplog.text
    import os

    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ  # restored after the preflight


class FailingClient:
    def __init__(self) -> None:
        self.calls = 0

    def log_batch(self, run_id, **kwargs):
        self.calls += 1
        raise ConnectionError("backend went away")

    def set_terminated(self, run_id, status):
        self.ended = status


def test_backend_failing_mid_run_warns_once_and_stops_sending(caplog):
    client = FailingClient()
    tracker = MlflowRun(client, "run-1")
    with caplog.at_level(logging.WARNING, logger="hrseg.tracking.tracker"):
        for step in range(5):
            tracker.log_metrics({"loss": 1.0}, step=step)
        tracker.flush(timeout=10)
        tracker.close("FAILED")
    assert client.calls == 1  # the first failure disables the tracker
    assert client.ended == "FAILED"  # but ending the run is still tried (once, with short timeouts)
    warnings = [r for r in caplog.records if "MLflow tracking failed" in r.getMessage()]
    assert len(warnings) == 1 and "ConnectionError: backend went away" in warnings[0].getMessage()


class ArtifactsFailClient:
    def __init__(self) -> None:
        self.batches = 0
        self.uploads = 0
        self.ended = None

    def log_batch(self, run_id, **kwargs):
        self.batches += 1

    def log_artifact(self, run_id, path, artifact_path=None):
        self.uploads += 1
        raise PermissionError(13, "Permission denied", "/store/mlartifacts")

    def set_terminated(self, run_id, status):
        self.ended = status


def test_failing_artifact_uploads_keep_metrics_and_end_the_run(tmp_path, caplog):
    client = ArtifactsFailClient()
    tracker = MlflowRun(client, "run-3")
    (tmp_path / "a.txt").write_text("a")
    with caplog.at_level(logging.WARNING, logger="hrseg.tracking.tracker"):
        tracker.log_artifact(tmp_path / "a.txt")
        tracker.flush(timeout=10)
        tracker.log_artifact(tmp_path / "a.txt")  # skipped: uploads already failed
        tracker.log_metrics({"loss": 1.0}, step=1)
        tracker.close()
    assert client.uploads == 1 and client.batches == 1 and client.ended == "FINISHED"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "artifact upload failed (PermissionError" in warnings[0] and "metrics and tags are still logged" in warnings[0]


def test_reopened_run_drops_steps_it_already_has():
    client = ArtifactsFailClient()
    logged = []
    client.log_batch = lambda run_id, metrics=(), **kw: logged.extend((m.key, m.step) for m in metrics)
    tracker = MlflowRun(client, "run-4", logged_steps={"train/loss": 8, "val/miou": 1})
    tracker.log_metrics({"train/loss": 1.0, "train/lr": 0.1}, step=8)
    tracker.log_metrics({"train/loss": 1.0}, step=12)
    tracker.log_metrics({"val/miou": 0.5}, step=1)
    tracker.log_metrics({"val/miou": 0.5}, step=2)
    tracker.close()
    assert logged == [("train/lr", 8), ("train/loss", 12), ("val/miou", 2)]


@pytest.mark.parametrize("case", ["not_a_database", "folder_is_a_file", "directory", "read_only_file"])
def test_unusable_local_store_is_found_before_mlflow_retries(clean_env, tmp_path, caplog, monkeypatch, case):
    import mlflow.store.db.utils as db_utils

    if case == "not_a_database":
        path = tmp_path / "mlflow.db"
        path.write_bytes(b"this is not sqlite" * 10)
        expected = "is not an SQLite database"
    elif case == "folder_is_a_file":
        (tmp_path / "file").write_text("x")
        path = tmp_path / "file" / "mlflow.db"
        expected = "cannot write in"
    elif case == "directory":
        path = tmp_path / "mlflow.db"
        path.mkdir()
        expected = "is a directory"
    else:
        import sqlite3

        path = tmp_path / "ro" / "mlflow.db"
        path.parent.mkdir()
        sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close()
        monkeypatch.setattr("hrseg.tracking.tracker._folder_problem", lambda folder: None)
        real_connect = sqlite3.connect
        # root ignores file modes: open the database read-only to stand for an unwritable file
        monkeypatch.setattr(sqlite3, "connect", lambda database, **kw: real_connect(database.replace("mode=rwc", "mode=ro"), **kw))
        expected = "cannot be written as an SQLite database (attempt to write a readonly database)"

    def no_retries(*args, **kwargs):  # MLflow's engine creation retries for ~100 s
        raise AssertionError("the store check must stop before MLflow's SQLAlchemy retries")

    monkeypatch.setattr(db_utils, "create_sqlalchemy_engine_with_retry", no_retries)
    with caplog.at_level(logging.WARNING):
        tracker = start_tracking("hrseg/test", "x", tags={}, params={"a": 1}, uri=f"sqlite:///{path}")
    assert not tracker.enabled
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "MLflow tracking disabled: the store" in warnings[0] and expected in warnings[0], warnings


def test_usable_stores_pass_the_check(tmp_path):
    from hrseg.tracking.tracker import store_problem

    assert store_problem(f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}") is None
    assert store_problem("http://127.0.0.1:1") is None  # remote: left to the preflight
    assert store_problem(str(tmp_path / "mlruns")) is None
    (tmp_path / "plain").write_text("x")
    assert "is a file" in store_problem(str(tmp_path / "plain"))


class BlockedClient:
    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def log_batch(self, run_id, **kwargs):
        self.entered.set()
        self.release.wait(30)

    def set_terminated(self, run_id, status):
        pass


def test_slow_backend_never_blocks_the_caller(caplog):
    client = BlockedClient()
    tracker = MlflowRun(client, "run-2", close_timeout=0.2)
    tracker.log_metrics({"loss": 1.0}, step=1)
    assert client.entered.wait(10)
    # the backend is stuck inside the first call; logging more returns at once
    for step in range(2, 50):
        tracker.log_metrics({"loss": 1.0}, step=step)
    assert not client.release.is_set()
    with caplog.at_level(logging.WARNING, logger="hrseg.tracking.tracker"):
        tracker.close()  # gives up after close_timeout
    assert "did not answer within" in caplog.text
    client.release.set()
