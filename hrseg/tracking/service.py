"""The tracking service: one background process per user and installation that does the MLflow
work of every hrseg process on this machine that logs to a local SQLite store.

**Why.** Importing mlflow and opening its SQLAlchemy store costs about 4.5 s of CPU on the
2-core development machine, more than most embedded pipeline stages spend on their own work.
Every DVC stage (37 of them) and every ``hrseg train/evaluate`` paid it again. The service pays
it once: a process that logs connects to a Unix socket (milliseconds) and sends its calls
there; the service has mlflow loaded and its stores open.

**Lifecycle.**

- The first process that needs it starts it (``python -m hrseg.tracking.service``, detached,
  in its own session, with stdin/stdout closed; its log is ``service.log`` next to the socket).
  Starting is serialised by a lock file, so concurrent stages start one service.
- It exits after ``$HRSEG_TRACKING_SERVICE_IDLE`` seconds (default 60) without a connected
  client. A run keeps its connection for its whole life, so a long training keeps it alive.
- It runs the code of the installation that started it: the socket's name hashes the Python
  executable, the hrseg version and the source of this module and ``backend``, so an edited
  or upgraded hrseg starts a new service instead of talking to an old one.
- A client that disconnects without ending its runs (killed, crashed) has them ended as
  ``KILLED`` by the service.

**Where.** ``<tempdir>/hrseg-<uid>/tracking-<key>.sock`` (``$HRSEG_TRACKING_SERVICE_DIR``
instead of ``<tempdir>/hrseg-<uid>``); the folder is created ``0700`` and is refused (the
caller then logs in-process) if another user owns it or can read it.

**When it is not used.** Only local SQLite stores (``sqlite:///<path>``, hrseg's default) go
through it; a remote tracking server is reached in-process as before. ``HRSEG_TRACKING_SERVICE=0``
turns it off. If it cannot be started within ``START_TIMEOUT_S`` the caller logs in-process,
as it did before the service existed; nothing is lost either way.

**Protocol.** Length-prefixed pickles of ``(op, kwargs)`` requests and ``("ok", value)`` /
``("error", type, message)`` replies over a stream socket that only this user can open; the ops
are the ``backend.LocalClient`` methods plus ``ping`` and ``shutdown``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hrseg
import hrseg.tracking.backend as backend
from hrseg.runtime import background
from hrseg.tracking.backend import LocalClient

log = logging.getLogger(__name__)

#: The request/reply format's version (part of the socket name).
PROTOCOL = 1
#: ``0``/``off``/``false``/``no``: never use the service (log in-process).
ENV_SWITCH = "HRSEG_TRACKING_SERVICE"
#: Seconds the service waits without a connected client before it exits.
ENV_IDLE = "HRSEG_TRACKING_SERVICE_IDLE"
DEFAULT_IDLE_S = 60.0
#: The folder of the socket and the service's log (default ``<tempdir>/hrseg-<uid>``).
ENV_DIR = "HRSEG_TRACKING_SERVICE_DIR"
#: How long a caller waits for a service it started to answer (a cold start imports mlflow).
START_TIMEOUT_S = 30.0
#: How long one call may take (a SQLite write waits for other writers).
CALL_TIMEOUT_S = 120.0
#: Stores (by URI) the service keeps open at once.
MAX_OPEN_STORES = 8
#: MLflow settings that do not change what a service does (the store is named per call; the
#: HTTP ones only matter for remote stores, which never go through it).
_PER_CALL_SETTINGS = ("MLFLOW_TRACKING_URI", "MLFLOW_HTTP_REQUEST_")


class ServiceError(Exception):
    """A call the service answered with an error (``kind``: the exception type it raised there)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind} (in the tracking service): {message}")
        self.kind = kind


# --------------------------------------------------------------------------------------
# Where the service listens
# --------------------------------------------------------------------------------------


def service_enabled(uri: str) -> bool:
    """Whether calls for the store ``uri`` go through the service: a local SQLite file, and
    ``$HRSEG_TRACKING_SERVICE`` not switched off."""
    if background.switched_off(ENV_SWITCH):
        return False
    return uri.startswith("sqlite:////") and ":memory:" not in uri


def service_dir() -> Path | None:
    """``$HRSEG_TRACKING_SERVICE_DIR``, else ``<tempdir>/hrseg-<uid>``, created ``0700``; None if
    it is not private to this user."""
    return background.private_dir(ENV_DIR)


def service_key() -> str:
    """What a service must share with its caller: interpreter, hrseg version, protocol, the source
    of the code that runs in it, and the MLFLOW_* settings it inherited."""
    digest = hashlib.sha256()
    for part in (sys.executable, hrseg.__version__, str(PROTOCOL)):
        digest.update(part.encode() + b"\0")
    for module in (__file__, backend.__file__, background.__file__):
        with contextlib.suppress(OSError):
            digest.update(Path(module).read_bytes())
    for name in sorted(k for k in os.environ if k.startswith("MLFLOW_") and not k.startswith(_PER_CALL_SETTINGS)):
        digest.update(f"{name}={os.environ[name]}\0".encode())
    return digest.hexdigest()[:16]


def socket_path() -> Path | None:
    """The socket of this installation's service (None: no private folder, or a path too long)."""
    return background.socket_in(service_dir(), f"tracking-{service_key()}.sock")


# --------------------------------------------------------------------------------------
# The caller's side
# --------------------------------------------------------------------------------------


class Connection:
    """One connection to the service; ``call`` sends a request and waits for its reply.
    Not thread-safe: one user at a time (an ``MlflowRun``'s sending thread)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def call(self, op: str, timeout: float = CALL_TIMEOUT_S, **kwargs: Any) -> Any:
        self._sock.settimeout(timeout)
        background.send_message(self._sock, (op, kwargs))
        reply = background.recv_message(self._sock)
        if reply[0] == "ok":
            return reply[1]
        raise ServiceError(reply[1], reply[2])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()


def _try_connect(path: Path, timeout: float = 5.0) -> Connection | None:
    """A connection that answered a ping, or None (no service there)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(str(path))
        connection = Connection(sock)
        if connection.call("ping", timeout=timeout) == PROTOCOL:
            return connection
    except Exception:  # noqa: BLE001 - whatever answers there is not a usable service
        pass
    sock.close()
    return None


def _spawn(path: Path) -> subprocess.Popen:
    """Start the service for ``path``, detached (``background.spawn_detached``; its log is
    ``service.log``)."""
    return background.spawn_detached("hrseg.tracking.service", ["--socket", str(path)], path.parent / "service.log")


def connect(*, start: bool = True, timeout: float = START_TIMEOUT_S) -> Connection | None:
    """A connection to this installation's service, started when none answers (``start``);
    None when it cannot be used (the caller then logs in-process)."""
    path = socket_path()
    if path is None:
        return None
    if not start:
        return _try_connect(path)
    connection = background.connect_or_start(path, _try_connect, lambda: _spawn(path), pattern="tracking-*.sock", timeout=timeout)
    if connection is None:
        log.info("tracking service did not answer (see %s); logging in this process", path.parent / "service.log")
    return connection


def prestart() -> None:
    """Start this installation's service in the background, without waiting for it: a process
    that will log soon (the light pipeline stages) lets mlflow's import overlap its own work.
    Nothing happens when the service is switched off, answers, or is being started."""
    path = None if background.switched_off(ENV_SWITCH) else socket_path()
    if path is not None:
        background.start_in_background(path, background.answers(_try_connect), lambda: _spawn(path), pattern="tracking-*.sock")


def stop_service(timeout: float = 10.0) -> bool:
    """Ask this installation's service to exit (tests, benchmarks); True if one was running."""
    path = socket_path()
    connection = _try_connect(path) if path is not None else None
    if connection is None:
        return False
    with contextlib.suppress(OSError, EOFError, ServiceError):
        connection.call("shutdown", timeout=timeout)
    connection.close()
    background.wait_until_gone(path, timeout)
    return True


class RemoteClient:
    """The ``backend.LocalClient`` methods for the store ``uri``, run by the service."""

    def __init__(self, connection: Connection, uri: str) -> None:
        self._connection = connection
        self.uri = uri

    def __repr__(self) -> str:
        return f"RemoteClient({self.uri!r})"

    def _call(self, op: str, **kwargs: Any) -> Any:
        return self._connection.call(op, uri=self.uri, **kwargs)

    def open_run(self, experiment: str, run_name: str, tags: Mapping[str, str], params: Mapping[str, Any], run_id: str | None) -> Any:
        return self._call("open_run", experiment=experiment, run_name=run_name, tags=dict(tags), params=dict(params), run_id=run_id)

    def log_batch(self, run_id: str, metrics: Any = (), params: Any = (), tags: Any = ()) -> None:
        # sent as given: the service's LocalClient normalises them, as it does in-process
        self._call("log_batch", run_id=run_id, metrics=[tuple(m) for m in metrics], params=list(params), tags=list(tags))

    def log_artifact(self, run_id: str, path: str, artifact_path: str | None = None) -> None:
        self._call("log_artifact", run_id=run_id, path=os.path.abspath(path), artifact_path=artifact_path)

    def log_dict(self, run_id: str, data: Mapping[str, Any], name: str) -> None:
        self._call("log_dict", run_id=run_id, data=dict(data), name=name)

    def log_text(self, run_id: str, text: str, name: str) -> None:
        self._call("log_text", run_id=run_id, text=text, name=name)

    def set_terminated(self, run_id: str, status: str) -> None:
        self._call("set_terminated", run_id=run_id, status=status)

    def find_run(self, key: str, value: str) -> str | None:
        return self._call("find_run", key=key, value=value)

    def search_runs(self, experiments: list[str] | None = None) -> Any:
        return self._call("search_runs", experiments=list(experiments or []))

    def close(self) -> None:
        self._connection.close()


def client_for(uri: str) -> LocalClient | RemoteClient:
    """The client (``backend`` module docstring) for ``uri``: through the service for a local
    SQLite store when it can be reached or started, else an in-process ``LocalClient``."""
    if service_enabled(uri):
        connection = connect()
        if connection is not None:
            return RemoteClient(connection, uri)
    return LocalClient(uri)


# --------------------------------------------------------------------------------------
# The service's side
# --------------------------------------------------------------------------------------


class _Service:
    """The state of a running service: open stores, connected clients, idle clock."""

    def __init__(self, listener: socket.socket, path: Path, idle: float) -> None:
        self.listener = listener
        self.path = path
        self.inode = path.stat().st_ino  # stop() removes the socket only if it is still ours
        self.idle = idle
        self.lock = threading.Lock()
        self.clients = 0
        self.last_seen = time.monotonic()
        self.stores: OrderedDict[str, LocalClient] = OrderedDict()
        self.store_lock = threading.Lock()
        self.stopping = False

    def store(self, uri: str) -> LocalClient:
        with self.store_lock:
            client = self.stores.pop(uri, None) or LocalClient(uri)
            self.stores[uri] = client
            while len(self.stores) > MAX_OPEN_STORES:
                self.stores.popitem(last=False)
            return client

    def connected(self) -> None:
        with self.lock:
            self.clients += 1

    def disconnected(self) -> None:
        with self.lock:
            self.clients -= 1
            self.last_seen = time.monotonic()

    def stop(self) -> None:
        """Stop listening and remove the socket (running calls finish; the process then exits)."""
        with self.lock:
            if self.stopping:
                return
            self.stopping = True
        background.remove_own_socket(self.path, self.inode)
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.listener.close()

    def watch(self) -> None:
        while not self.stopping:
            time.sleep(min(1.0, self.idle / 4))
            with self.lock:
                idle = self.clients == 0 and time.monotonic() - self.last_seen > self.idle
            if idle:
                log.info("no client for %.0f s: exiting", self.idle)
                self.stop()

    def handle(self, sock: socket.socket) -> None:
        """Serve one client until it disconnects; end the runs it left open as KILLED."""
        open_runs: set[tuple[str, str]] = set()
        try:
            while True:
                try:
                    op, kwargs = background.recv_message(sock)
                except (EOFError, OSError):
                    break
                try:
                    reply = ("ok", self.dispatch(op, kwargs, open_runs))
                except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller
                    text = str(exc).strip()
                    reply = ("error", type(exc).__name__, text.splitlines()[0][:2000] if text else "")
                try:
                    background.send_message(sock, reply)
                except OSError:
                    break
                if op == "shutdown":
                    self.stop()
        finally:
            for uri, run_id in open_runs:
                try:
                    self.store(uri).set_terminated(run_id, "KILLED")
                    log.info("client left run %s open: ended it as KILLED", run_id)
                except Exception as exc:  # noqa: BLE001
                    log.warning("could not end run %s of a client that went away: %s", run_id, exc)
            with contextlib.suppress(OSError):
                sock.close()
            self.disconnected()

    def dispatch(self, op: str, kwargs: dict[str, Any], open_runs: set[tuple[str, str]]) -> Any:
        if op == "ping":
            return PROTOCOL
        if op == "shutdown":
            return None
        uri = kwargs.pop("uri")
        store = self.store(uri)
        if op == "open_run":
            result = store.open_run(**kwargs)
            open_runs.add((uri, result[0]))
            return result
        if op == "set_terminated":
            store.set_terminated(**kwargs)
            open_runs.discard((uri, kwargs["run_id"]))
            return None
        if op in ("log_batch", "log_artifact", "log_dict", "log_text", "find_run", "search_runs"):
            return getattr(store, op)(**kwargs)
        raise ValueError(f"unknown tracking service request {op!r}")


def serve(path: Path, idle: float = DEFAULT_IDLE_S) -> int:
    """Listen on ``path`` until no client was connected for ``idle`` seconds. Returns 0, also
    when another service already listens there."""
    listener = background.bind_listener(path, background.answers(_try_connect))
    if listener is None:
        return 0  # another service is there (or the path cannot be used)
    service = _Service(listener, path, idle)
    signal.signal(signal.SIGTERM, lambda *_: service.stop())
    threading.Thread(target=service.watch, name="idle-watch", daemon=True).start()
    threading.Thread(target=_warm_up, name="warm-up", daemon=True).start()
    log.info("listening on %s (pid %d)", path, os.getpid())
    while not service.stopping:
        try:
            sock, _ = listener.accept()
        except OSError:
            break
        sock.settimeout(None)
        service.connected()
        threading.Thread(target=service.handle, args=(sock,), name="client", daemon=True).start()
    # no new clients; the connected ones (a run that connected just before) are served to their end
    while service.clients:
        time.sleep(0.05)
    return 0


def _warm_up() -> None:
    """Import what the first call needs while the caller is still starting up."""
    import mlflow  # noqa: F401
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    return background.service_main(argv, name="tracking-service", env_idle=ENV_IDLE, default_idle=DEFAULT_IDLE_S, serve=serve)


if __name__ == "__main__":
    raise SystemExit(main())
