"""``hrseg.tracking.ui`` / ``hrseg ui``: safety checks, the server's command line, process handling, and
one real start/stop of the MLflow server through the CLI (Ctrl-C, no process left behind).
The browser checks of the UI itself are in ``test_ui_browser.py``."""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hrseg.cli import app
from hrseg.tracking.ui import (
    UiError,
    browse_url,
    check_host,
    free_port,
    resolve_store,
    serve_ui,
    server_command,
    server_env,
    stop_server,
    wait_until_ready,
)


def processes_with(text: str) -> list[int]:
    """Pids whose command line contains ``text`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue
            if text in cmdline and entry.name != str(os.getpid()):
                found.append(int(entry.name))
    return found


# ------------------------------------------------------------------------ safety and setup


def test_refuses_a_remote_host_unless_allowed(tmp_path, caplog):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(UiError, match=r"refusing to serve the MLflow UI on host '0.0.0.0'.*no authentication.*ssh -L 5000:127.0.0.1:5000.*--allow-remote"):
        serve_ui(uri, host="0.0.0.0")
    for host in ("127.0.0.1", "localhost", "::1"):
        check_host(host, allow_remote=False)
    with caplog.at_level(logging.WARNING, logger="hrseg.tracking.ui"):
        check_host("0.0.0.0", allow_remote=True)
    assert "without authentication" in caplog.text


def test_cli_refuses_a_remote_host(tmp_path):
    result = CliRunner().invoke(app, ["ui", "--uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--host", "0.0.0.0"])
    assert result.exit_code == 1
    assert "refusing to serve the MLflow UI on host '0.0.0.0'" in result.output and "Traceback" not in result.output


def test_store_checks(tmp_path, caplog):
    with pytest.raises(UiError, match=r"'http://127.0.0.1:5000' is already a tracking server; open it in a browser"):
        resolve_store("http://127.0.0.1:5000")
    with pytest.raises(UiError, match=rf"directory {tmp_path / 'nope'} does not exist"):
        resolve_store(f"sqlite:///{tmp_path / 'nope' / 'mlflow.db'}")
    with caplog.at_level(logging.WARNING, logger="hrseg.tracking.ui"):
        _, artifacts = resolve_store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert "UI starts on an empty store" in caplog.text
    assert artifacts == tmp_path / "mlartifacts"  # where hrseg.tracking.tracker puts the client's artifacts


def test_default_store_is_the_tracking_uri(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert resolve_store() == (f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "mlartifacts")


def test_port_in_use_is_a_clear_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UiError, match=rf"cannot listen on 127.0.0.1:{port}.*pass --port"):
            serve_ui(f"sqlite:///{tmp_path / 'mlflow.db'}", port=port)
        # it names the process that holds the port (here: this one)
        with pytest.raises(UiError, match=rf"cannot listen on 127.0.0.1:{port}: process {os.getpid()} \(.*\) listens there; pass --port, or stop it \(kill {os.getpid()}\)"):
            serve_ui(f"sqlite:///{tmp_path / 'mlflow.db'}", port=port)
    with pytest.raises(UiError, match=r"port 70000 is out of range"):
        serve_ui(f"sqlite:///{tmp_path / 'mlflow.db'}", port=70000)


def test_server_command_and_environment(tmp_path):
    command = server_command("sqlite:////x/mlflow.db", "127.0.0.1", 5123, Path("/x/mlartifacts"))
    assert command[:4] == [sys.executable, "-m", "mlflow", "server"]
    flags = dict(itertools.pairwise(command[4:]))  # each word -> the next one
    assert flags["--backend-store-uri"] == "sqlite:////x/mlflow.db"
    assert flags["--artifacts-destination"] == "/x/mlartifacts" and "--serve-artifacts" in command
    assert (flags["--host"], flags["--port"], flags["--workers"]) == ("127.0.0.1", "5123", "1")
    assert flags["--uvicorn-opts"] == "--no-access-log"
    assert "--uvicorn-opts" not in server_command("sqlite:////x/mlflow.db", "127.0.0.1", 5123, Path("/x"), access_log=True)
    assert server_env()["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"


def test_browse_url():
    assert browse_url("127.0.0.1", 5000) == "http://127.0.0.1:5000"
    assert browse_url("0.0.0.0", 8080) == "http://127.0.0.1:8080"
    assert browse_url("::", 5000) == "http://[::1]:5000"
    assert browse_url("localhost", 5000) == "http://localhost:5000"


# ------------------------------------------------------------------------ process handling


def test_server_that_exits_early_is_reported_with_its_output():
    with tempfile.TemporaryFile() as output:
        proc = subprocess.Popen([sys.executable, "-c", "print('no such backend store'); raise SystemExit(3)"], stdout=output, stderr=subprocess.STDOUT)
        with pytest.raises(UiError, match=r"(?s)exited with status 3 before answering.*no such backend store"):
            wait_until_ready(f"http://127.0.0.1:{free_port()}", proc, 60, output=output)


def test_server_that_never_answers_times_out():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        with pytest.raises(UiError, match=r"did not answer at http://127.0.0.1:\d+/health within 1 s"):
            wait_until_ready(f"http://127.0.0.1:{free_port()}", proc, 1.0)
    finally:
        stop_server(proc)
    assert proc.poll() is not None


def test_stop_server_leaves_no_process_of_its_group(tmp_path):
    marker = f"hrseg-ui-test-{os.getpid()}-{time.monotonic_ns()}"
    # a parent that dies on SIGTERM without stopping its child: the child is left in the group
    script = f"import subprocess, time; subprocess.Popen(['sleep', '300']); time.sleep(300)  # {marker}"
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    deadline = time.monotonic() + 30
    while len([p for p in Path("/proc").iterdir() if p.name.isdigit() and _pgid(int(p.name)) == proc.pid]) < 2:
        assert time.monotonic() < deadline, "the grandchild did not start"
        time.sleep(0.05)
    code = stop_server(proc, timeout=10)
    assert code == -signal.SIGTERM
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and _pgid(int(p.name)) == proc.pid]
    assert processes_with(marker) == []


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None


# ------------------------------------------------------------------------ the real server


@pytest.fixture
def store_with_artifact(tmp_path, monkeypatch):
    """A run logged by the client straight into SQLite, with one artifact (hrseg.tracking.tracker)."""
    from hrseg.tracking.tracker import start_tracking

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"
    (tmp_path / "per_class.csv").write_text("class,iou\nroad,0.98\n")
    tracker = start_tracking("hrseg/cityscapes", "eval smoke", tags={"hrseg.stage": "eval"}, params={"train.lr": "0.01"}, uri=uri)
    tracker.log_metrics({"miou": 0.5})
    tracker.log_artifact(tmp_path / "per_class.csv", "results")
    tracker.close()
    return {"uri": uri, "run_id": tracker.run_id, "dir": tmp_path}


@pytest.mark.slow
def test_hrseg_ui_serves_the_store_and_stops_on_ctrl_c(store_with_artifact):
    """``hrseg ui`` in-process (CliRunner runs it in the main thread, so its signal handlers are
    real): a helper thread waits for the server, reads the store and an artifact through it,
    then sends SIGINT to this process, as Ctrl-C in a terminal would."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    seen: dict = {}
    done = threading.Event()

    def client() -> None:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or done.is_set():
                seen["error"] = "the server never answered"
                return  # no SIGINT: serve_ui is not (or no longer) waiting for one
            time.sleep(0.25)
        try:
            seen["pids"] = processes_with(f"--port {port}")
            query = urllib.parse.urlencode({"max_results": 10})
            with urllib.request.urlopen(f"{url}/ajax-api/2.0/mlflow/experiments/search?{query}", timeout=30) as response:
                seen["experiments"] = [e["name"] for e in json.load(response)["experiments"]]
            query = urllib.parse.urlencode({"path": "results/per_class.csv", "run_uuid": store_with_artifact["run_id"]})
            with urllib.request.urlopen(f"{url}/get-artifact?{query}", timeout=30) as response:
                seen["artifact"] = response.read()
        except Exception as exc:  # noqa: BLE001  (reported by the assertions below)
            seen["error"] = repr(exc)
        finally:
            time.sleep(0.5)  # let the CLI print the URL first
            # only while serve_ui's handler is installed (else SIGINT would stop pytest itself)
            if not done.is_set() and signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
                os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        result = CliRunner().invoke(app, ["ui", "--uri", store_with_artifact["uri"], "--port", str(port)])
    finally:
        done.set()
    thread.join(10)

    assert "error" not in seen, seen.get("error")
    assert result.exit_code == 0, result.output
    assert f"http://127.0.0.1:{port}" in result.output and "Ctrl-C" in result.output
    assert f"ssh -L {port}:127.0.0.1:{port}" in result.output
    assert "hrseg/cityscapes" in seen["experiments"]  # the store we passed, not a new one
    assert seen["artifact"] == b"class,iou\nroad,0.98\n"  # client-logged artifacts are served
    assert len(seen["pids"]) >= 2  # mlflow server + its uvicorn worker
    # stopped cleanly: nothing listens any more and no server process is left
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert processes_with(f"--port {port}") == []


# ------------------------------------------------------------------------ unusable stores, busy ports


def test_unusable_store_is_one_quick_error(tmp_path):
    (tmp_path / "mlflow.db").write_text("not a database at all, but long enough to have a header......")
    result = CliRunner().invoke(app, ["ui", "--uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--port", str(free_port())])
    assert result.exit_code == 1
    assert f"MLflow store {tmp_path / 'mlflow.db'} is unusable: file is not a database" in result.output
    assert "Traceback" not in result.output and result.output.count("error:") == 1
    import sqlite3

    with sqlite3.connect(tmp_path / "other.db") as conn:
        conn.execute("CREATE TABLE notes (x TEXT)")
    with pytest.raises(UiError, match=r"other.db is an SQLite database without MLflow's tables \(notes\)"):
        resolve_store(f"sqlite:///{tmp_path / 'other.db'}")


def test_failed_server_is_quoted_in_one_line():
    with tempfile.TemporaryFile() as output:
        script = "import sys; print('Traceback (most recent call last):'); print('  File x'); print('ValueError: broken store'); sys.exit(1)"
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=output, stderr=subprocess.STDOUT)
        with pytest.raises(UiError) as error:
            wait_until_ready(f"http://127.0.0.1:{free_port()}", proc, 60, output=output, brief=True)
    assert str(error.value).endswith(": ValueError: broken store (--verbose shows the server's output)")
    assert "Traceback" not in str(error.value)


@pytest.mark.slow
def test_a_left_over_server_on_the_same_store_is_reused(store_with_artifact):
    """What a SIGKILLed ``hrseg ui`` leaves behind (its ``mlflow server`` keeps listening) is
    found and reused by the next ``hrseg ui`` on the same store and port."""
    from hrseg.tracking.ui import start_ui_background

    port = free_port()
    with start_ui_background(store_with_artifact["uri"], port=port) as url:
        seen = []
        assert serve_ui(store_with_artifact["uri"], port=port, reused=lambda u, s, p: seen.append((u, s, p))) == 0
        ((reused_url, store, pid),) = seen
        assert (reused_url, store) == (url, store_with_artifact["uri"])
        assert pid in processes_with(f"--port {port}") and "mlflow server" in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        result = CliRunner().invoke(app, ["ui", "--uri", store_with_artifact["uri"], "--port", str(port)])
        assert result.exit_code == 0 and f"already running (process {pid})" in result.output and f"kill {pid}" in result.output
