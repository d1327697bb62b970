"""Start and stop the MLflow UI on the project's store.

``serve_ui()`` runs ``mlflow server`` as a child process (what ``hrseg ui`` does) and
``start_ui_background()`` is the same server as a context manager (what the browser test
uses). Both start it with the settings that make it start fast on a small machine - one
uvicorn worker, ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`` (no job runner; MLflow's GenAI
jobs are not used here) - and with artifact serving pointed at the store's ``mlartifacts/``
directory:

- runs logged by the client straight into a local SQLite store keep their artifacts under
  ``file://<store dir>/mlartifacts/<experiment>/`` (``hrseg.tracking`` fixes that location when
  it creates an experiment); the server reads those local paths directly;
- runs logged *through* this server (``MLFLOW_TRACKING_URI=http://127.0.0.1:5000``) get
  ``mlflow-artifacts:/`` locations, proxied to the same ``<store dir>/mlartifacts/``.

Safety: the MLflow server has no authentication, so it binds 127.0.0.1 unless the caller
passes ``allow_remote=True`` (a warning is logged). For remote viewing, use an SSH tunnel
(``ssh -L 5000:127.0.0.1:5000 host``) instead.

Process handling: the child runs in its own session (process group). On Ctrl-C or SIGTERM
``serve_ui`` sends SIGTERM to ``mlflow server``, which forwards it to its uvicorn worker; it
waits for both, and kills whatever is left of the process group after a grace period, so no
server outlives the command.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from hrseg.errors import HrsegError
from hrseg.runs import check_local_store

log = logging.getLogger(__name__)

#: Hosts that only this machine can reach.
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
#: Seconds to wait for the server to answer ``/health`` (about 6 s on an idle 2-core machine,
#: 20 s and more while other processes compete for the CPU).
READY_TIMEOUT = 180.0
#: Seconds a stopping server may take before its process group is killed.
STOP_TIMEOUT = 20.0


class UiError(HrsegError):
    """The MLflow UI could not be started (bad store, host or port, or the server failed)."""


# --------------------------------------------------------------------------------------
# The command line of the server
# --------------------------------------------------------------------------------------


def resolve_store(uri: str | None = None) -> tuple[str, Path]:
    """``(backend store URI, artifacts directory)`` for ``uri`` (default: the project's store).

    The artifacts directory is ``mlartifacts/`` next to a SQLite database, else the repository
    root's ``mlartifacts/``. An HTTP(S) URI is already a server and is refused with the advice
    to open it in a browser."""
    from hrseg.tracking import default_tracking_uri, repo_root

    uri = uri or default_tracking_uri()
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if scheme in ("http", "https", "databricks"):
        raise UiError(
            f"tracking URI {uri!r} is already a tracking server; open it in a browser instead of starting a UI, "
            "or pass --uri with the backend store (e.g. sqlite:////abs/path/mlflow.db)"
        )
    db = check_local_store(uri, must_exist=False)
    if db is not None:
        if not db.parent.is_dir():
            raise UiError(f"tracking URI {uri!r}: directory {db.parent} does not exist (expected the directory of mlflow.db)")
        if not db.is_file():
            log.warning("no MLflow store at %s yet: the UI starts on an empty store; runs appear once training logs to it", db)
        return uri, db.parent / "mlartifacts"
    return uri, repo_root() / "mlartifacts"


def server_command(uri: str, host: str, port: int, artifacts: Path, *, access_log: bool = False) -> list[str]:
    """``python -m mlflow server ...`` with one worker and artifact serving from ``artifacts``."""
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", uri,
        "--serve-artifacts", "--artifacts-destination", str(artifacts),
        "--host", host, "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip
    if not access_log:
        command += ["--uvicorn-opts", "--no-access-log"]
    return command


def server_env() -> dict[str, str]:
    """The caller's environment plus ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``."""
    env = dict(os.environ)
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")  # starlette/uvicorn notices
    return env


def check_host(host: str, allow_remote: bool) -> None:
    """Refuse a non-local ``host`` unless ``allow_remote``; warn when it is allowed."""
    if host in LOCAL_HOSTS:
        return
    if not allow_remote:
        raise UiError(
            f"refusing to serve the MLflow UI on host {host!r}: it has no authentication, so anyone who can reach "
            f"{host} could read and delete runs. Use the default 127.0.0.1 with an SSH tunnel "
            "(ssh -L 5000:127.0.0.1:5000 <this machine>), or pass --allow-remote if the network is trusted"
        )
    log.warning(
        "serving the MLflow UI on %s without authentication: anyone who can reach this address can read and delete runs. "
        "MLflow only answers Host headers of localhost and private IPs unless --allowed-hosts is configured",
        host,
    )


def browse_url(host: str, port: int) -> str:
    """The URL to open for a server bound to ``host:port`` (a wildcard address means this machine)."""
    connect = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    if ":" in connect:
        connect = f"[{connect}]"
    return f"http://{connect}:{port}"


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free on ``host`` right now (for tests and ``--port 0``)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_port_free(host: str, port: int) -> None:
    """Raise ``UiError`` when ``host:port`` cannot be bound (another server holds it)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise UiError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); another server (an MLflow UI?) uses it: pass --port") from None


# --------------------------------------------------------------------------------------
# Starting, waiting for and stopping the child
# --------------------------------------------------------------------------------------


def _spawn(command: list[str], output: IO | None) -> subprocess.Popen:
    log.debug("starting %s", " ".join(command))
    return subprocess.Popen(
        command,
        env=server_env(),
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
        start_new_session=True,  # own process group: a terminal Ctrl-C reaches us, we stop it
    )


def _tail(output: IO | None, limit: int = 3000) -> str:
    if output is None:
        return ""
    with contextlib.suppress(OSError, ValueError):
        output.flush()
        output.seek(0)
        text = output.read().decode("utf-8", "replace")
        return "\n--- server output (end) ---\n" + text[-limit:]
    return ""


def wait_until_ready(
    url: str,
    proc: subprocess.Popen,
    timeout: float = READY_TIMEOUT,
    *,
    output: IO | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> bool:
    """Poll ``url/health`` until it answers 200. False if ``cancelled()`` became true first;
    ``UiError`` if the server exits or does not answer within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if cancelled():
            return False
        code = proc.poll()
        if code is not None:
            raise UiError(f"mlflow server exited with status {code} before answering at {url}{_tail(output)}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise UiError(f"mlflow server did not answer at {url}/health within {timeout:.0f} s{_tail(output)}")
        time.sleep(0.25)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_server(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> int:
    """SIGTERM ``mlflow server`` (it forwards the signal to uvicorn), wait, then make sure no
    process of its group is left (SIGTERM, then SIGKILL after ``timeout`` seconds).
    Returns the child's exit status."""
    pgid = proc.pid  # start_new_session: the child leads its own group
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("mlflow server did not stop within %.0f s; killing it", timeout)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            proc.wait()
    deadline = time.monotonic() + timeout
    sent_term = False
    while _group_alive(pgid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            break
        if not sent_term:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            sent_term = True
        time.sleep(0.1)
    return proc.returncode


def _exit_status(code: int, stop_requested: bool) -> int:
    """Shell-style status: a signal death is 128 + signal; a stop we asked for is 0."""
    if stop_requested and code in (0, -signal.SIGTERM, -signal.SIGINT):
        return 0
    return 128 - code if code < 0 else code


@contextlib.contextmanager
def _forward_stop_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set ``stop`` instead of raising (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        log.info("received %s, stopping the MLflow UI", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _prepare(uri: str | None, host: str, port: int, allow_remote: bool, access_log: bool) -> tuple[list[str], str, str]:
    check_host(host, allow_remote)
    store, artifacts = resolve_store(uri)
    if port == 0:
        port = free_port(host)
    elif not 0 < port < 65536:
        raise UiError(f"port {port} is out of range; expected 1-65535 (or 0 for any free port)")
    check_port_free(host, port)
    return server_command(store, host, port, artifacts, access_log=access_log), browse_url(host, port), store


def serve_ui(
    uri: str | None = None,
    host: str = "127.0.0.1",
    port: int = 5000,
    *,
    open_browser: bool = False,
    allow_remote: bool = False,
    access_log: bool = False,
    ready_timeout: float = READY_TIMEOUT,
    announce: Callable[[str, str], None] | None = None,
) -> int:
    """Run the MLflow UI on ``uri`` (default: the project's store) until Ctrl-C or SIGTERM.

    ``announce(url, store)`` is called once the server answers (default: a log line);
    ``open_browser`` then opens the URL. ``port=0`` picks a free port. Returns the exit
    status: 0 after a stop on request, else the server's own status (128 + N for signal N)."""
    command, url, store = _prepare(uri, host, port, allow_remote, access_log)
    stop = threading.Event()
    with _forward_stop_signals(stop):
        proc = _spawn(command, None)
        try:
            if wait_until_ready(url, proc, ready_timeout, cancelled=stop.is_set):
                (announce or (lambda u, s: log.info("MLflow UI for %s at %s (Ctrl-C to stop)", s, u)))(url, store)
                if open_browser:
                    import webbrowser

                    webbrowser.open(url)
                while proc.poll() is None and not stop.is_set():
                    stop.wait(0.5)
        finally:
            code = stop_server(proc)
    return _exit_status(code, stop.is_set())


@contextlib.contextmanager
def start_ui_background(
    uri: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    allow_remote: bool = False,
    ready_timeout: float = READY_TIMEOUT,
) -> Iterator[str]:
    """Start the MLflow UI, yield its URL once it answers, stop it (and its workers) on exit.

    ``port=0`` (the default) picks a free port. The server's output is kept in a temporary file
    and quoted in the ``UiError`` raised when it fails to start."""
    command, url, _store = _prepare(uri, host, port, allow_remote, access_log=False)
    with tempfile.TemporaryFile(prefix="hrseg-ui-") as output:
        proc = _spawn(command, output)
        try:
            wait_until_ready(url, proc, ready_timeout, output=output)
            yield url
        finally:
            stop_server(proc)
