"""hrseg.tracking.service: the background process that does the MLflow work of every hrseg process
logging to a local SQLite store. Runs land complete, the caller never imports mlflow, a killed
client's run ends KILLED, one service starts for concurrent callers, a dead service's socket is
replaced, an idle service exits, and whenever the service cannot be used the caller logs in
its own process instead."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from hrseg.tracking import service
from hrseg.tracking.backend import LocalClient
from hrseg.tracking.tracker import find_run_by_tag, start_tracking

REPO = Path(__file__).resolve().parent.parent


def _private_tmp(monkeypatch: pytest.MonkeyPatch):
    folder = tempfile.mkdtemp(prefix="hs", dir="/tmp")
    monkeypatch.setenv(service.ENV_DIR, f"{folder}/hrseg")
    monkeypatch.delenv(service.ENV_SWITCH, raising=False)
    monkeypatch.setenv(service.ENV_IDLE, "20")
    return Path(folder)


@pytest.fixture
def private_tmp(monkeypatch):
    """A short private temp folder for this test's own service (AF_UNIX paths are short),
    stopped and removed afterwards; the service is on and idles out quickly."""
    folder = _private_tmp(monkeypatch)
    yield folder
    service.stop_service()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def shared_tmp():
    """Like ``private_tmp``, one service for the tests that only use it (each start costs seconds)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        folder = _private_tmp(monkeypatch)
        yield folder
        service.stop_service()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('svc') / 'mlflow.db'}"


def service_pids(folder: Path) -> set[str]:
    log = folder / "hrseg" / "service.log"
    text = log.read_text() if log.is_file() else ""
    return {line.split("(pid ")[1].rstrip(")") for line in text.splitlines() if "listening on" in line}


def mlflow_client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def test_a_run_through_the_service_is_complete(shared_tmp, store, tmp_path):
    artifact = tmp_path / "metrics.json"
    artifact.write_text('{"miou": 0.5}\n')
    run = start_tracking("hrseg/test", "train via service", tags={"hrseg.stage": "train"}, params={"train.lr": 0.01}, uri=store)
    assert isinstance(run._client, service.RemoteClient)
    run.log_metrics({"train/loss": 2.0}, step=1)
    run.log_metrics({"train/loss": 1.0}, step=2)
    run.set_tags({"checkpoint.final.sha256": "f" * 64})
    run.log_artifact(artifact, "results")
    run.log_dict({"train": {"lr": 0.01}}, "config/recipe.yaml")
    run.close()

    got = mlflow_client(store).get_run(run.run_id)
    assert got.info.status == "FINISHED" and got.info.run_name == "train via service"
    assert got.data.params["train.lr"] == "0.01" and got.data.tags["hrseg.stage"] == "train"
    assert [m.value for m in mlflow_client(store).get_metric_history(run.run_id, "train/loss")] == [2.0, 1.0]
    assert {a.path for a in mlflow_client(store).list_artifacts(run.run_id)} == {"results", "config"}
    assert find_run_by_tag("checkpoint.final.sha256", "f" * 64, store) == run.run_id
    assert len(service_pids(shared_tmp)) == 1  # every call went to one service


def test_the_caller_never_imports_mlflow(shared_tmp, store):
    code = textwrap.dedent(f"""
        import sys
        from hrseg.tracking.tracker import start_tracking
        run = start_tracking("hrseg/test", "no mlflow here", tags={{}}, params={{"a": 1}}, uri={store!r})
        run.log_metrics({{"loss": 1.0}}, step=1)
        run.close()
        assert run.run_id, run
        print("mlflow" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_a_killed_client_leaves_no_running_run(shared_tmp, store):
    code = textwrap.dedent(f"""
        import sys, time
        from hrseg.tracking.tracker import start_tracking
        run = start_tracking("hrseg/test", "killed", tags={{}}, params={{}}, uri={store!r})
        print(run.run_id, flush=True)
        time.sleep(600)
    """)
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    run_id = process.stdout.readline().strip()
    assert mlflow_client(store).get_run(run_id).info.status == "RUNNING"
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    deadline = time.monotonic() + 30
    while mlflow_client(store).get_run(run_id).info.status == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert mlflow_client(store).get_run(run_id).info.status == "KILLED"


def test_concurrent_callers_start_one_service(private_tmp):
    connections: list = []
    threads = [threading.Thread(target=lambda: connections.append(service.connect())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(connections) == 4 and all(c is not None for c in connections)
    for connection in connections:
        connection.close()
    assert len(service_pids(private_tmp)) == 1


def test_a_prestarted_service_is_the_one_callers_then_use(private_tmp, processes_started_for):
    """``prestart`` returns without waiting; a second prestart and a caller that comes while
    it still starts (importing mlflow takes seconds) use that service instead of another."""
    path = service.socket_path()
    service.prestart()
    service.prestart()
    started = processes_started_for(path)  # a second service would still be importing mlflow
    assert len(started) == 1
    connection = service.connect()
    assert connection is not None
    connection.close()
    assert processes_started_for(path) == started and len(service_pids(private_tmp)) == 1


def test_a_caller_waiting_for_a_service_that_dies_starting_starts_its_own(private_tmp):
    """A caller that finds a service being started waits for it; when that one dies before it
    listens, the caller starts one itself instead of giving up."""
    from hrseg.runtime import background

    path = service.socket_path()
    doomed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1)", str(path)])  # "starting" for path, then gone
    path.with_name(path.name + ".starting").write_text(str(doomed.pid))
    assert background.being_started(path)
    connection = service.connect()
    assert connection is not None
    connection.close()
    assert doomed.poll() is not None and len(service_pids(private_tmp)) == 1


def test_a_dead_services_socket_is_replaced(private_tmp, store):
    path = service.socket_path()
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))  # bound, never listening: what a killed service leaves
    dead.close()
    assert path.exists()
    run = start_tracking("hrseg/test", "after a dead service", tags={}, params={}, uri=store)
    assert isinstance(run._client, service.RemoteClient)
    run.close()
    assert mlflow_client(store).get_run(run.run_id).info.status == "FINISHED"


def test_an_idle_service_exits_and_removes_its_socket(private_tmp, monkeypatch):
    monkeypatch.setenv(service.ENV_IDLE, "1")
    connection = service.connect()
    assert connection is not None
    path = service.socket_path()
    time.sleep(2.5)
    assert path.exists()  # a connected client keeps it alive
    connection.close()
    deadline = time.monotonic() + 20
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not path.exists()
    assert service.connect(start=False) is None


def test_switched_off_or_remote_stores_log_in_process(private_tmp, monkeypatch, store):
    assert not service.service_enabled("http://127.0.0.1:5000")
    assert not service.service_enabled("sqlite:///relative.db")  # relative to the caller's folder
    monkeypatch.setenv(service.ENV_SWITCH, "0")
    assert isinstance(service.client_for(store), LocalClient)
    run = start_tracking("hrseg/test", "in process", tags={}, params={}, uri=store)
    assert isinstance(run._client, LocalClient)
    run.close()
    assert mlflow_client(store).get_run(run.run_id).info.status == "FINISHED"
    assert not service.socket_path().exists()


def test_a_service_that_cannot_start_falls_back_to_in_process(private_tmp, monkeypatch, store, caplog):
    def broken_spawn(path):
        return subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])

    monkeypatch.setattr(service, "_spawn", broken_spawn)
    run = start_tracking("hrseg/test", "fallback", tags={}, params={}, uri=store)
    assert isinstance(run._client, LocalClient) and run.enabled
    run.close()
    assert mlflow_client(store).get_run(run.run_id).info.status == "FINISHED"


def test_a_folder_others_can_read_is_not_used(private_tmp):
    folder = private_tmp / "hrseg"
    folder.mkdir(mode=0o700, exist_ok=True)
    folder.chmod(0o755)
    assert service.service_dir() is None and service.socket_path() is None
    assert isinstance(service.client_for(f"sqlite:///{private_tmp}/x.db"), LocalClient)


def test_the_service_key_follows_code_and_settings(monkeypatch):
    base = service.service_key()
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")  # set per call by the preflight
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/other.db")  # named per call
    assert service.service_key() == base
    monkeypatch.setenv("MLFLOW_SQLALCHEMYSTORE_POOLCLASS", "NullPool")  # changes the service's stores
    assert service.service_key() != base


def test_errors_come_back_with_their_type(shared_tmp, store):
    client = service.client_for(store)
    try:
        with pytest.raises(service.ServiceError, match=r"MlflowException \(in the tracking service\)"):
            client.log_batch("no-such-run", tags=[("a", "b")])
    finally:
        client.close()
