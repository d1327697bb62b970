"""What hrseg's background processes share: a private folder for their sockets, framed messages,
and starting one process per socket however many callers ask at once.

Two services use it: the tracking service (``hrseg.tracking.service``: MLflow calls) and the
warm-start server (``hrseg.runtime.warm``: torch scripts forked from a warm interpreter). Each
listens on a Unix socket in a folder only this user can enter, named after a key that hashes
what the service must share with its callers; the first caller that finds no answer starts it,
detached, under a lock file, and the service exits when it has been idle for a while.

Nothing here imports anything beyond the standard library: callers use it before their heavy
imports.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import pickle
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import hrseg

#: AF_UNIX socket paths are limited to 107 bytes on Linux.
MAX_SOCKET_PATH = 100
#: Log files of services are started afresh above this size.
MAX_LOG_BYTES = 1 << 20
_HEADER = struct.Struct("!Q")

T = TypeVar("T")


def switched_off(variable: str) -> bool:
    """Whether the environment variable ``variable`` says ``0``/``off``/``false``/``no``."""
    return os.environ.get(variable, "").strip().lower() in ("0", "off", "false", "no")


def private_dir(variable: str) -> Path | None:
    """``$<variable>``, else ``<tempdir>/hrseg-<uid>``, created ``0700``; None if it cannot be
    created or is not private to this user (another user owns it, or others may enter it)."""
    folder = Path(os.environ.get(variable) or Path(tempfile.gettempdir()) / f"hrseg-{os.getuid()}")
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.stat()
    except OSError:
        return None
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        return None
    return folder


def socket_in(folder: Path | None, name: str) -> Path | None:
    """``folder/name``, or None when there is no folder or the path is too long for a socket."""
    if folder is None:
        return None
    path = folder / name
    return path if len(os.fsencode(path)) <= MAX_SOCKET_PATH else None


# --------------------------------------------------------------------------------------
# Messages: length-prefixed pickles (only this user can open the sockets)
# --------------------------------------------------------------------------------------


def send_message(sock: socket.socket, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_HEADER.pack(len(data)) + data)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise EOFError("the connection was closed")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def recv_message(sock: socket.socket) -> Any:
    (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    return pickle.loads(_recv_exact(sock, size))


# --------------------------------------------------------------------------------------
# Starting a service
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def spawn_lock(folder: Path) -> Iterator[None]:
    """Held while a caller checks for a service and starts one, so that concurrent callers
    start one service, not several."""
    import fcntl

    with open(folder / "spawn.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def spawn_detached(module: str, args: Sequence[str], log_file: Path, *, interpreter_flags: Sequence[str] = ()) -> subprocess.Popen:
    """Run ``python -m module args`` detached from this process: its own session, working
    directory ``/``, no stdin or stdout, stderr appended to ``log_file``; this installation's
    hrseg first on its path."""
    env = dict(os.environ)
    source_root = str(Path(hrseg.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source_root, env.get("PYTHONPATH")) if p)
    with contextlib.suppress(OSError):
        if log_file.stat().st_size > MAX_LOG_BYTES:
            log_file.unlink()
    with open(log_file, "ab") as stderr:
        return subprocess.Popen(
            [sys.executable, *interpreter_flags, "-m", module, *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
            cwd="/", env=env, start_new_session=True, close_fds=True,
        )  # fmt: skip


def remove_dead_sockets(folder: Path, pattern: str) -> None:
    """Remove the sockets matching ``pattern`` that nothing listens on (services that were
    killed leave them behind)."""
    for stale in folder.glob(pattern):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(stale))
        except ConnectionRefusedError:
            with contextlib.suppress(OSError):
                stale.unlink()
        except OSError:
            pass
        finally:
            probe.close()


def _starting_marker(path: Path) -> Path:
    return path.with_name(path.name + ".starting")


def being_started(path: Path) -> bool:
    """Whether a service for ``path`` has been started and is still getting ready: its starter
    wrote the service's pid next to the socket (``<socket>.starting``), and that process is
    alive and, where ``/proc`` tells, serves ``path`` (not another process under a reused pid)."""
    try:
        pid = int(_starting_marker(path).read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return not Path("/proc/self").exists()  # no /proc: trust the pid
    if not command:  # a zombie, or a process in the middle of its exec (just started)
        return state != "Z"
    return os.fsencode(path) in command


def _start(path: Path, start: Callable[[], subprocess.Popen], pattern: str) -> subprocess.Popen | None:
    """Start the service for ``path`` (the spawn lock held) and mark it as being started."""
    remove_dead_sockets(path.parent, pattern)
    try:
        process = start()
    except OSError:
        return None
    with contextlib.suppress(OSError):
        _starting_marker(path).write_text(str(process.pid))
    return process


def _listening(path: Path) -> None:
    """The service at ``path`` listens: it is no longer being started."""
    with contextlib.suppress(OSError):
        _starting_marker(path).unlink()


def connect_or_start(
    path: Path,
    try_connect: Callable[[Path, float], T | None],
    start: Callable[[], subprocess.Popen],
    *,
    pattern: str,
    timeout: float,
) -> T | None:
    """A connection from ``try_connect`` to the service at ``path``; when none answers, start
    one with ``start`` (under the spawn lock, after removing dead sockets like ``pattern``)
    unless one is being started already (``start_in_background``), and wait up to ``timeout``
    seconds for it. None: it could not be started or did not answer."""
    connection = try_connect(path, 5.0)
    if connection is not None:
        return connection
    deadline = time.monotonic() + timeout
    with spawn_lock(path.parent):
        connection = try_connect(path, 5.0)  # another caller started it while we waited
        if connection is not None:
            return connection
        waiting = being_started(path)  # for a service another caller started
        process = None if waiting else _start(path, start, pattern)
        if process is None and not waiting:
            return None  # it could not be started
        while time.monotonic() < deadline:
            connection = try_connect(path, max(0.1, deadline - time.monotonic()))
            if connection is not None:
                return connection
            if process is None and not being_started(path):
                connection = try_connect(path, 1.0)  # the other starter's service listens now (it drops the marker once it does) ...
                if connection is not None:
                    return connection
                process = _start(path, start, pattern)  # ... or it died before it did: start one here
                if process is None:
                    return None
            elif process is not None and process.poll() is not None:
                return None
            time.sleep(0.02)
    return None


def start_in_background(path: Path, answering: Callable[[Path], bool], start: Callable[[], subprocess.Popen], *, pattern: str) -> None:
    """Start the service for ``path`` and return without waiting for it, unless one answers
    (``answering``) or is being started: a caller that needs the service soon lets its start-up
    overlap with its own work. A ``connect_or_start`` meanwhile waits for this one."""
    with spawn_lock(path.parent):
        if not being_started(path) and not answering(path):
            _start(path, start, pattern)


def bind_listener(path: Path, answers: Callable[[Path], bool]) -> socket.socket | None:
    """A listening socket at ``path``, or None when another live service (``answers(path)``)
    is already there or the path cannot be used; a dead service's socket is replaced."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(path))
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE or answers(path):
            listener.close()
            return None
        path.unlink()
        listener.bind(str(path))
    os.chmod(path, 0o600)
    listener.listen(64)
    _listening(path)
    return listener


def wait_until_gone(path: Path, timeout: float) -> None:
    """Wait up to ``timeout`` seconds for a stopping service to remove its socket ``path``."""
    deadline = time.monotonic() + timeout
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def remove_own_socket(path: Path, inode: int) -> None:
    """Remove the socket at ``path`` if it is still the one this service created (``inode``):
    a newer service may have replaced it."""
    with contextlib.suppress(OSError):
        if path.stat().st_ino == inode:
            path.unlink()


def answers(try_connect: Callable[[Path], Any]) -> Callable[[Path], bool]:
    """For ``bind_listener``: whether a live service answers at a path (``try_connect``'s
    connection is closed again)."""

    def check(path: Path) -> bool:
        connection = try_connect(path)
        if connection is None:
            return False
        connection.close()
        return True

    return check


def service_main(argv: list[str] | None, *, name: str, env_idle: str, default_idle: float, serve: Callable[[Path, float], int]) -> int:
    """The command line of a service module (``python -m <module> --socket PATH [--idle S]``):
    log to stderr (the service's log file) with ``name`` and the pid, then ``serve``."""
    parser = argparse.ArgumentParser(description=f"hrseg's {name} (started by hrseg; see the module docstring)")
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument("--idle", type=float, default=None, help=f"seconds with nothing to do before exiting (default ${env_idle} or {default_idle:.0f})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name}[{os.getpid()}] %(levelname)s: %(message)s")
    idle = args.idle if args.idle is not None else float(os.environ.get(env_idle) or default_idle)
    return serve(args.socket, idle)
