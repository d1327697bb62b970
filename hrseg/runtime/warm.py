"""Warm start: run a torch script in a process forked from an interpreter that has torch loaded.

**Why.** ``import torch`` costs 2.3-3.5 s on the 2-core development machine, and the first step
of any ``torch.optim`` optimizer imports ``torch._dynamo`` (about 2 s more). The embedded
pipeline has 28 train and eval stages, each a fresh process that paid this again: over two
minutes of its eleven. A warm start pays it once per pipeline run.

**How.** A script calls ``run_warm()`` first thing, before its torch imports. The call connects
to this user's warm-start server for this interpreter and environment (starting it when none
answers) and hands over its arguments, working directory, environment, ``sys.path`` and its
stdin, stdout and stderr (the file descriptors themselves, so a terminal stays a terminal and
DVC still captures the output). The server, which has imported torch, numpy and nothing else (``_preload``),
forks; the child takes all of that over and runs the script as ``__main__``, importing every
hrseg module afresh from disk (an edited hrseg is what runs). The caller waits and exits with
the child's status. Signals sent to the caller (Ctrl-C, DVC stopping a stage, ``kill``) are
passed on to the child; a caller killed outright (SIGKILL) takes the child with it.

**Same results.** The server runs no tensor operation, so what torch fixes at the first one
(the CPU instruction set, ``ATEN_CPU_CAPABILITY``) and the thread count are the child's own.
What was fixed at import time is shared, so the server is keyed by all it depends on: the
interpreter and its flags, the hrseg version, this module's source, and the whole environment
but for variables that only describe one invocation or that only the child's own imports read
(``PER_INVOCATION``: ``DVC_*``, ``MLFLOW_*``, ``HRSEG_*``, ...); a different
``OMP_NUM_THREADS`` or ``PYTHONPATH`` gets its own server. ``random`` and numpy's global
generator are reseeded in the child, as a fresh process would have them; the caller's umask,
CPU affinity, niceness and resource limits are applied to it (as far as an unprivileged
process may: it cannot raise a hard limit or run less nicely than the server).

**Lifecycle.** ``python -m hrseg.runtime.warm --socket PATH``, detached, in its own session; it
exits after ``$HRSEG_WARM_START_IDLE`` seconds (default 60) with no child running and no
caller. Its socket and log (``warm.log``) are in the private folder of
``hrseg.runtime.background`` (``$HRSEG_WARM_START_DIR``, else ``<tempdir>/hrseg-<uid>``).

**When it is not used** (the script then simply goes on in its own process, as before):
``HRSEG_WARM_START=0``; inside a warm child already (``HRSEG_WARM_CHILD`` is set for it and its
subprocesses) or a torchrun worker (``LAUNCHED_WORKER``); no ``fork``/``os.pidfd_open`` (not Linux); no private
folder; or a server that does not answer within ``START_TIMEOUT_S``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hrseg
import hrseg.runtime.background as background

log = logging.getLogger(__name__)

#: Version of the request/reply format (part of the key).
PROTOCOL = 1
ENV_SWITCH = "HRSEG_WARM_START"
ENV_IDLE = "HRSEG_WARM_START_IDLE"
ENV_DIR = "HRSEG_WARM_START_DIR"
#: Set in a warm child (and so in its subprocesses): run there, do not delegate again.
ENV_CHILD = "HRSEG_WARM_CHILD"
DEFAULT_IDLE_S = 60.0
#: A cold server imports torch before it answers.
START_TIMEOUT_S = 60.0
#: Environment variables left out of the key: they describe one invocation (DVC sets DVC_STAGE
#: per stage, pytest PYTEST_CURRENT_TEST per test) or are read only by code the child imports
#: itself (hrseg's own settings, mlflow's). Everything else, the variables numpy, OpenMP and
#: torch read when they load included, is part of the key.
PER_INVOCATION = ("PWD", "OLDPWD", "SHLVL", "_")
PER_INVOCATION_PREFIXES = ("DVC_", "PYTEST_", "MLFLOW_", "HRSEG_")
#: ... except this one, which the server itself reads.
_KEYED = (ENV_IDLE,)
#: Set by torchrun (torch.distributed.elastic) for each of its workers.
LAUNCHED_WORKER = ("TORCHELASTIC_RUN_ID", "LOCAL_RANK")
_SIGNALS_PASSED_ON = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


# --------------------------------------------------------------------------------------
# Where the server listens
# --------------------------------------------------------------------------------------


def enabled() -> bool:
    """Whether this process may hand its script to a warm-start server: not switched off, not a
    warm child already, not one of torchrun's workers (each has its own rank variables, so each
    would start a server of its own), and on a system with fork and pidfd_open."""
    if background.switched_off(ENV_SWITCH) or ENV_CHILD in os.environ:
        return False
    if any(name in os.environ for name in LAUNCHED_WORKER):
        return False
    return hasattr(os, "fork") and hasattr(os, "pidfd_open")


def _interpreter_flags() -> list[str]:
    """The command-line options that reproduce this interpreter's flags, -W and -X options."""
    return subprocess._args_from_interpreter_flags()  # the stdlib's own helper (multiprocessing uses it)


def server_key(environ: dict[str, str] | None = None) -> str:
    """What a server must share with its callers (see the module docstring)."""
    environ = dict(os.environ if environ is None else environ)
    digest = hashlib.sha256()
    for part in (sys.executable, sys.version, hrseg.__version__, str(PROTOCOL), " ".join(_interpreter_flags())):
        digest.update(part.encode() + b"\0")
    for module in (__file__, background.__file__):
        with contextlib.suppress(OSError):
            digest.update(Path(module).read_bytes())
    for name in sorted(environ):
        if name in _KEYED or (name not in PER_INVOCATION and not name.startswith(PER_INVOCATION_PREFIXES)):
            digest.update(f"{name}={environ[name]}\0".encode(errors="surrogateescape"))
    return digest.hexdigest()[:16]


def socket_path() -> Path | None:
    return background.socket_in(background.private_dir(ENV_DIR), f"warm-{server_key()}.sock")


# --------------------------------------------------------------------------------------
# The caller's side
# --------------------------------------------------------------------------------------


def _try_connect(path: Path, timeout: float = 5.0) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(str(path))
        background.send_message(sock, ("ping",))
        if background.recv_message(sock) == ("ok", PROTOCOL):
            return sock
    except Exception:  # noqa: BLE001 - whatever answers there is not a usable server
        pass
    sock.close()
    return None


def _spawn(path: Path) -> subprocess.Popen:
    return background.spawn_detached("hrseg.runtime.warm", ["--socket", str(path)], path.parent / "warm.log", interpreter_flags=_interpreter_flags())


def connect(*, start: bool = True) -> socket.socket | None:
    """A connection to this environment's server, started when none answers (``start``)."""
    path = socket_path()
    if path is None:
        return None
    if not start:
        return _try_connect(path)
    return background.connect_or_start(path, _try_connect, lambda: _spawn(path), pattern="warm-*.sock", timeout=START_TIMEOUT_S)


def prestart() -> None:
    """Start this environment's server in the background, without waiting for it: a process
    that will run torch scripts soon (the light pipeline stages before the torch ones) lets the
    server's preload overlap its own work. Nothing happens when warm start is off, or a server
    answers or is being started; a script that asks meanwhile waits for this server."""
    path = socket_path() if enabled() else None
    if path is not None:
        background.start_in_background(path, background.answers(_try_connect), lambda: _spawn(path), pattern="warm-*.sock")


def run_warm() -> None:
    """Run this process's main script in a warm child and exit with its status; return (and let
    the script go on here) when warm start is off or unavailable. Call it at the top of a
    script's ``if __name__ == "__main__":`` path, before the imports that load torch."""
    main = sys.modules.get("__main__")
    script = getattr(main, "__file__", None)
    if not enabled() or script is None:
        return
    sock = connect()
    if sock is None:
        return
    request = {
        "script": os.path.abspath(script),
        "argv": list(sys.argv),
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "path": list(sys.path),
        "process": _process_settings(),
    }
    try:
        sock.settimeout(30.0)
        socket.send_fds(sock, [b"F"], [0, 1, 2])
        background.send_message(sock, ("run", request))
        reply = background.recv_message(sock)
    except (OSError, EOFError) as exc:
        log.info("warm start failed (%s); running in this process", exc)
        sock.close()
        return
    if reply[0] != "started":
        log.info("warm start refused (%s); running in this process", reply[1:])
        sock.close()
        return
    child = reply[1]
    for number in _SIGNALS_PASSED_ON:
        signal.signal(number, lambda sig, _frame: _pass_on(child, sig))
    sock.settimeout(None)
    try:
        status = background.recv_message(sock)
    except (OSError, EOFError):
        with contextlib.suppress(OSError):
            os.kill(child, signal.SIGKILL)
        sys.stderr.write(f"hrseg: the warm-start server went away while running {script} (see {Path(str(socket_path())).parent / 'warm.log'})\n")
        os._exit(1)
    _exit_like(status[1])


#: Resource limits a caller hands to its child (``ulimit``), as far as they can be set there.
_LIMITS = ("RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_STACK")


def _process_settings() -> dict[str, Any]:
    """What a process has from the shell beyond its environment: umask, CPU affinity
    (``taskset``, a batch system's binding), niceness and resource limits."""
    import resource

    umask = os.umask(0o022)
    os.umask(umask)
    return {
        "umask": umask,
        "affinity": sorted(os.sched_getaffinity(0)),
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "limits": {name: resource.getrlimit(getattr(resource, name)) for name in _LIMITS if hasattr(resource, name)},
    }


def _apply_process_settings(settings: dict[str, Any]) -> None:
    """Take the caller's ``_process_settings`` over: all of them where the system lets an
    unprivileged process (it cannot raise a hard limit, nor run less nicely than the server)."""
    import resource

    os.umask(settings["umask"])
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, settings["affinity"])
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, settings["nice"])
    for name, limits in settings["limits"].items():
        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(getattr(resource, name), tuple(limits))


def _pass_on(child: int, number: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(child, number)


def _exit_like(code: int) -> None:
    """Exit as the child did: with its exit status, or killed by the same signal."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        time.sleep(1.0)  # the signal is delivered meanwhile
        code = 128 - code
    os._exit(code)


def stop_servers(timeout: float = 10.0) -> int:
    """Ask every warm-start server in this user's folder to exit once its children have
    (tests, benchmarks); how many there were."""
    folder = background.private_dir(ENV_DIR)
    stopped = 0
    for path in sorted(folder.glob("warm-*.sock")) if folder is not None else []:
        sock = _try_connect(path)
        if sock is None:
            continue
        with contextlib.suppress(OSError, EOFError):
            background.send_message(sock, ("shutdown",))
            background.recv_message(sock)
        sock.close()
        stopped += 1
        background.wait_until_gone(path, timeout)
    return stopped


# --------------------------------------------------------------------------------------
# The server's side
# --------------------------------------------------------------------------------------


@dataclass
class _Child:
    pid: int
    pidfd: int
    conn: socket.socket
    caller_alive: bool = True  # False once its connection reached EOF (no longer watched)


class _Server:
    def __init__(self, listener: socket.socket, path: Path, idle: float) -> None:
        self.listener = listener
        self.path = path
        self.inode = path.stat().st_ino
        self.idle = idle
        self.children: dict[int, _Child] = {}  # by pidfd
        self.last_active = time.monotonic()
        self.stopping = False
        self.stop_requested = False  # set by SIGTERM; the loop notices within a second

    def stop(self) -> None:
        if not self.stopping:
            self.stopping = True
            background.remove_own_socket(self.path, self.inode)
            with contextlib.suppress(OSError):
                self.listener.close()

    def loop(self) -> None:
        while not (self.stopping and not self.children):
            if self.stop_requested:
                self.stop()
            watched: list[Any] = [fd for fd in self.children] + [c.conn for c in self.children.values() if c.caller_alive]
            if not self.stopping:
                watched.append(self.listener)
            # the idle clock runs only while no child does; wake at least once a second for SIGTERM
            idle_left = self.idle - (time.monotonic() - self.last_active) if not self.children else 1.0
            ready, _, _ = select.select(watched, [], [], min(1.0, max(0.0, idle_left)))
            if not ready and not self.children and idle_left <= 0:
                log.info("idle for %.0f s: exiting", self.idle)
                self.stop()
                continue
            for item in ready:
                if item is self.listener:
                    self.accept()
                elif isinstance(item, int):
                    self.reap(item)
                else:
                    self.caller_gone(item)

    def accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        self.last_active = time.monotonic()
        conn.settimeout(10.0)
        try:
            while True:
                message = background.recv_message(conn) if not _expects_fds(conn) else None
                if message is None:
                    _, fds, _, _ = socket.recv_fds(conn, 1, 3)
                    message = background.recv_message(conn)
                    if message[0] != "run":
                        raise ValueError(f"expected a run request, got {message[0]!r}")
                    self.start(conn, message[1], fds)
                    return
                if message[0] == "ping":
                    background.send_message(conn, ("ok", PROTOCOL))
                elif message[0] == "shutdown":
                    background.send_message(conn, ("ok", None))
                    conn.close()
                    self.stop()
                    return
                else:
                    background.send_message(conn, ("error", f"unknown request {message[0]!r}"))
        except (OSError, EOFError, ValueError):
            with contextlib.suppress(OSError):
                conn.close()

    def start(self, conn: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
        if len(fds) != 3:
            for fd in fds:
                os.close(fd)
            background.send_message(conn, ("error", "expected stdin, stdout and stderr"))
            conn.close()
            return
        pid = os.fork()
        if pid == 0:  # the child: never returns
            _child_main(request, fds, close=[self.listener, conn, *(c.conn for c in self.children.values())], pidfds=list(self.children))
        for fd in fds:
            os.close(fd)
        pidfd = os.pidfd_open(pid)
        conn.settimeout(None)
        self.children[pidfd] = _Child(pid, pidfd, conn)
        log.info("child %d runs %s", pid, request["script"])
        with contextlib.suppress(OSError):
            background.send_message(conn, ("started", pid))

    def reap(self, pidfd: int) -> None:
        child = self.children.pop(pidfd)
        _, status = os.waitpid(child.pid, 0)
        os.close(pidfd)
        code = os.waitstatus_to_exitcode(status)
        with contextlib.suppress(OSError):
            background.send_message(child.conn, ("exited", code))
        with contextlib.suppress(OSError):
            child.conn.close()
        self.last_active = time.monotonic()

    def caller_gone(self, conn: socket.socket) -> None:
        """The caller closed its end before its child ended: it was killed; so is the child."""
        for child in self.children.values():
            if child.conn is conn:
                child.caller_alive = False
                log.info("caller of child %d went away: killing it", child.pid)
                with contextlib.suppress(OSError):
                    os.kill(child.pid, signal.SIGKILL)


def _expects_fds(conn: socket.socket) -> bool:
    """Whether the next bytes on ``conn`` are the one-byte marker that carries the descriptors."""
    return conn.recv(1, socket.MSG_PEEK) == b"F"


def _child_main(request: dict[str, Any], fds: list[int], close: list[socket.socket], pidfds: list[int]) -> None:
    """Become the caller's process and run its script; exits, never returns."""
    try:
        for sock in close:
            sock.close()
        for fd in pidfds:
            os.close(fd)
        os.setsid()
        with contextlib.suppress(OSError):  # top and ps -o comm show the script, not the server
            Path("/proc/self/comm").write_text(Path(request["script"]).name[:15])
        for number in _SIGNALS_PASSED_ON:
            signal.signal(number, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        _apply_process_settings(request["process"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ[ENV_CHILD] = "1"
        _reopen_stdio()
        sys.argv = list(request["argv"])
        sys.path[:] = request["path"]
        _fresh_globals()
        _forget_server_state()
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        os._exit(70)
    os._exit(_run_script(request["script"]))


def _reopen_stdio() -> None:
    """Standard streams over the caller's descriptors, buffered as Python would buffer them."""
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    encoding = os.environ.get("PYTHONIOENCODING", "").split(":")[0] or None
    streams = []
    for fd, mode in ((0, "r"), (1, "w"), (2, "w")):
        tty = os.isatty(fd)
        raw = io.open(fd, mode + "b", closefd=False)
        text = io.TextIOWrapper(
            raw,
            encoding=encoding,
            errors="backslashreplace" if fd == 2 else None,
            line_buffering=fd == 2 or (tty and fd == 1),
            write_through=unbuffered and mode == "w",
        )
        streams.append(text)
    sys.stdin, sys.stdout, sys.stderr = streams
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = streams


def _forget_server_state() -> None:
    """Leave no trace of the server: its logging set-up (the script's own ``basicConfig`` must
    take effect) and its hrseg modules (the script imports the ones on disk now)."""
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(logging.WARNING)
    for name in [n for n in sys.modules if n == "hrseg" or n.startswith("hrseg.")]:
        del sys.modules[name]


def _fresh_globals() -> None:
    """Module state a fresh process would have: random generators seeded anew, no cached temp folder."""
    import random
    import tempfile

    tempfile.tempdir = None  # the caller's TMPDIR decides, not a folder the server looked up

    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


def _run_script(script: str) -> int:
    """Run ``script`` as ``__main__`` and finish as the interpreter would (threads joined, atexit
    handlers run, streams flushed); the exit status to leave with."""
    import atexit
    import runpy
    import threading

    code, interrupted = 0, False
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        traceback.print_exc()
        interrupted = True
    except BaseException:  # noqa: BLE001 - reported as the interpreter reports it
        traceback.print_exc()
        code = 1
    with contextlib.suppress(BaseException):
        threading._shutdown()  # as the interpreter does at exit (multiprocessing does the same)
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    if interrupted:  # like an interpreter that dies of an uncaught KeyboardInterrupt
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return code & 0xFF


def _preload() -> None:
    """What the server imports before it forks anything: only libraries that start no thread
    that could hold a lock across fork (numpy's OpenBLAS pool has fork handlers; cv2's pool does
    not, so the child imports cv2 itself) and touch no CUDA state."""
    import numpy  # noqa: F401
    import torch
    import torch._dynamo  # noqa: F401 - what torch.optim imports on an optimizer's first step
    import torch.nn.functional  # noqa: F401
    import torch.optim  # noqa: F401

    if torch.cuda.is_initialized():  # pragma: no cover - a fork would break CUDA in the children
        raise RuntimeError("CUDA was initialised while preloading; refusing to fork from this process")


def serve(path: Path, idle: float = DEFAULT_IDLE_S) -> int:
    """Preload, then listen on ``path`` until idle for ``idle`` seconds. Returns 0, also when
    another server already listens there."""
    started = time.monotonic()
    _preload()
    listener = background.bind_listener(path, background.answers(_try_connect))
    if listener is None:
        return 0
    server = _Server(listener, path, idle)
    signal.signal(signal.SIGTERM, lambda *_: setattr(server, "stop_requested", True))
    log.info("listening on %s (pid %d, preloaded in %.1f s)", path, os.getpid(), time.monotonic() - started)
    server.loop()
    return 0


def main(argv: list[str] | None = None) -> int:
    return background.service_main(argv, name="warm-start", env_idle=ENV_IDLE, default_idle=DEFAULT_IDLE_S, serve=serve)


if __name__ == "__main__":
    raise SystemExit(main())
