"""Start and stop the MLflow UI on the project's store.

``serve_ui()`` runs ``mlflow server`` as a child process (what ``hrseg ui`` does) and
``start_ui_background()`` is the same server as a context manager (what the browser test
uses). Both start it with the settings that make it start fast on a small machine - one
uvicorn worker, ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`` (no job runner; MLflow's GenAI
jobs are not used here) - and with artifact serving pointed at the store's ``mlartifacts/``
directory:

- runs logged by the client straight into a local SQLite store keep their artifacts under
  ``file://<store dir>/mlartifacts/<experiment>/`` (``hrseg.tracking.tracker`` fixes that location when
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
import sqlite3
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
from hrseg.tracking.runs import check_local_store
from hrseg.tracking.tracker import default_tracking_uri, repo_root

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
        else:
            check_sqlite_store(db)
        return uri, db.parent / "mlartifacts"
    return uri, repo_root() / "mlartifacts"


def check_sqlite_store(db: Path) -> None:
    """Raise ``UiError`` in milliseconds when ``db`` cannot be an MLflow store (not readable,
    not an SQLite database, or a database with tables but none of MLflow's), instead of
    letting ``mlflow server`` fail with tracebacks after a long start."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error as exc:
        raise UiError(f"MLflow store {db} is unusable: {exc} (expected the mlflow.db that `hrseg train` / `hrseg evaluate` write)") from None
    if tables and "alembic_version" not in tables:
        raise UiError(f"MLflow store {db} is an SQLite database without MLflow's tables ({', '.join(sorted(tables)[:5])}); pass --uri with an MLflow store")


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


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def check_port_free(host: str, port: int) -> None:
    """Raise ``UiError`` when ``host:port`` cannot be bound, naming the process that listens
    there when this user may see it (Linux ``/proc``)."""
    if port_is_free(host, port):
        return
    holder = port_holder(port)
    who = f"process {holder[0]} ({holder[1]}) listens there" if holder else "another server (an MLflow UI?) uses it"
    raise UiError(f"cannot listen on {host}:{port}: {who}; pass --port, or stop it{f' (kill {holder[0]})' if holder else ''}")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def port_holder(port: int) -> tuple[int, str] | None:
    """``(pid, command line)`` of the process listening on TCP ``port``, or None when it
    cannot be found (not Linux, another user's process). For a server whose worker holds the
    socket (``mlflow server`` -> uvicorn), the ``mlflow server`` process is named."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(fields[9])
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) in targets for fd in (entry / "fd").iterdir()):
                pid = int(entry.name)
                parent = _parent(pid)
                if "mlflow server" not in _cmdline(pid) and "mlflow server" in _cmdline(parent):
                    pid = parent
                return pid, _cmdline(pid)
    return None


def running_ui(store: str, host: str, port: int) -> int | None:
    """The pid of an ``mlflow server`` on ``store`` that already listens on ``host:port`` and
    answers (left behind by an ``hrseg ui`` that was killed), else None."""
    holder = port_holder(port)
    if holder is None:
        return None
    words = holder[1].split()
    if "server" not in words or "mlflow" not in holder[1]:
        return None
    flags = dict(zip(words, words[1:]))
    if flags.get("--backend-store-uri") != store or flags.get("--port") != str(port):
        return None
    try:
        with urllib.request.urlopen(f"{browse_url(host, port)}/health", timeout=5) as response:
            return holder[0] if response.status == 200 else None
    except OSError:
        return None


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


def _tail(output: IO | None, limit: int = 3000, *, brief: bool = False) -> str:
    """The end of the server's output; ``brief``: only its last line (the exception of a
    traceback) and where to see the rest."""
    if output is None:
        return ""
    with contextlib.suppress(OSError, ValueError):
        output.flush()
        output.seek(0)
        text = output.read().decode("utf-8", "replace")
        if brief:
            lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith(("[SQL:", "(Background"))]
            return f": {lines[-1][:300]} (--verbose shows the server's output)" if lines else ""
        return "\n--- server output (end) ---\n" + text[-limit:]
    return ""


def wait_until_ready(
    url: str,
    proc: subprocess.Popen,
    timeout: float = READY_TIMEOUT,
    *,
    output: IO | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    brief: bool = False,
) -> bool:
    """Poll ``url/health`` until it answers 200. False if ``cancelled()`` became true first;
    ``UiError`` if the server exits or does not answer within ``timeout`` seconds (quoting
    the end of ``output``; ``brief``: its last line)."""
    deadline = time.monotonic() + timeout
    while True:
        if cancelled():
            return False
        code = proc.poll()
        if code is not None:
            raise UiError(f"mlflow server exited with status {code} before answering at {url}{_tail(output, brief=brief)}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise UiError(f"mlflow server did not answer at {url}/health within {timeout:.0f} s{_tail(output, brief=brief)}")
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
    return server_command(store, host, port, artifacts, access_log=access_log), browse_url(host, port), store


def _port_of(command: list[str]) -> tuple[str, int]:
    return command[command.index("--host") + 1], int(command[command.index("--port") + 1])


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
    verbose: bool = False,
    reused: Callable[[str, str, int], None] | None = None,
) -> int:
    """Run the MLflow UI on ``uri`` (default: the project's store) until Ctrl-C or SIGTERM.

    ``announce(url, store)`` is called once the server answers (default: a log line);
    ``open_browser`` then opens the URL. ``port=0`` picks a free port. The server's own output
    (start-up notices, warnings) goes to a temporary file, quoted in one line if it fails,
    unless ``verbose``. When an ``mlflow server`` on the same store already answers on the port
    (left behind by a killed ``hrseg ui``), it is reused: ``reused(url, store, pid)`` is called
    (default: a log line) and 0 returned at once. Returns the exit status: 0 after a stop on
    request, else the server's own status (128 + N for signal N)."""
    command, url, store = _prepare(uri, host, port, allow_remote, access_log)
    bound_host, bound_port = _port_of(command)
    if not port_is_free(bound_host, bound_port):
        pid = running_ui(store, bound_host, bound_port)
        if pid is not None:
            (reused or (lambda u, s, p: log.info("reusing the MLflow UI for %s at %s (process %d)", s, u, p)))(url, store, pid)
            return 0
        check_port_free(bound_host, bound_port)  # raises, naming the holder
    stop = threading.Event()
    with _forward_stop_signals(stop), contextlib.ExitStack() as files:
        output = None if verbose else files.enter_context(tempfile.TemporaryFile(prefix="hrseg-ui-"))
        proc = _spawn(command, output)
        try:
            if wait_until_ready(url, proc, ready_timeout, output=output, cancelled=stop.is_set, brief=True):
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
    check_port_free(*_port_of(command))
    with tempfile.TemporaryFile(prefix="hrseg-ui-") as output:
        proc = _spawn(command, output)
        try:
            wait_until_ready(url, proc, ready_timeout, output=output)
            yield url
        finally:
            stop_server(proc)
