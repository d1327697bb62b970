"""MLflow tracking behind two small classes; a tracking failure warns, it never stops a run.

``MlflowTracker`` is the ``hrseg.runtime.tracker.Tracker`` that the CLI and the DVC stages hand
to the library: where runs go (``uri``), the tags it adds to every run it starts, and the run
name that replaces the library's default. Its ``start_run`` (``start_tracking(...)``, which the
stages that log by themselves call directly) returns an ``MlflowRun``. Only global rank 0 talks
to MLflow: on any other rank, with ``enabled=False``, or when the backend cannot be reached, it
returns a ``hrseg.runtime.tracker.NullRun`` that accepts every call and does nothing.

Failure policy (documented in the README):

- **Start-up: fail fast.** Creating the experiment and the run (and logging the parameters) is
  a preflight done with ``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0`` and
  ``MLFLOW_HTTP_REQUEST_TIMEOUT=<preflight_timeout>`` (5 s) set for those calls only. If it
  fails, one warning is logged and training continues untracked.
- **Local stores are checked first** (``store_problem``): a SQLite file that is not a
  database, is read-only or sits in a folder that cannot be written, or a file-store folder
  that cannot be written, is found in well under a second, before MLflow would spend ~100 s
  retrying its SQLAlchemy engine; one warning, and the run continues untracked.
- **During the run: buffer.** Every later call (metrics, tags, artifacts, closing the run) is
  queued and sent by one background thread, so a slow or dead backend never stalls the
  training loop (or the other DDP ranks waiting in a collective). The first failure logs one
  warning and disables the tracker; later calls are dropped. A failing artifact upload (an
  unwritable artifacts folder) only stops the artifact uploads: metrics and tags go on.
  ``close()`` always tries to end the run (``FINISHED``, ``FAILED`` or ``KILLED``; after a
  failure with the preflight's short timeouts), waits for the queue for at most
  ``close_timeout`` seconds (60 s), then gives up with a warning.
- **A resumed run logs each step once**: reopened with ``run_id``, the tracker drops metric
  values at steps that the run already has for that key (steps re-run after the last
  checkpoint were logged before the interruption).

**Where the MLflow work happens.** For a local SQLite store (the default), in the tracking
service (``hrseg.tracking.service``): one background process per user that keeps mlflow
imported and the store open, so a stage or command pays a socket connection instead of
mlflow's ~4.5 s start-up. A remote store, ``HRSEG_TRACKING_SERVICE=0``, or a service that
cannot be started: in this process, as a ``hrseg.tracking.backend.LocalClient``. Either way
``MlflowRun`` sends plain values through the same client methods.

Default store: ``$MLFLOW_TRACKING_URI``, else ``sqlite:////<repo root>/mlflow.db`` with
artifacts in ``<repo root>/mlartifacts/`` (absolute paths, so ``dvc exp run --temp/--queue``
runs, which execute in ``.dvc/tmp/exps/...``, log to the same store). The repository root is
``$DVC_ROOT`` if set, else the git top level of the working directory, else the working
directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from hrseg.runtime.tracker import NullRun
from hrseg.tracking.backend import LocalClient, Metric, short_timeouts
from hrseg.tracking.service import RemoteClient, client_for

log = logging.getLogger(__name__)

_QUEUE_SIZE = 10_000


# --------------------------------------------------------------------------------------
# Where to log, and what to tag
# --------------------------------------------------------------------------------------


def repo_root(cwd: str | os.PathLike | None = None) -> Path:
    """``$DVC_ROOT``, else the git top level of ``cwd``, else ``cwd`` (absolute)."""
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    cwd = Path(cwd or Path.cwd()).resolve()
    top = _git(["rev-parse", "--show-toplevel"], cwd)
    return Path(top).resolve() if top else cwd


def default_tracking_uri(cwd: str | os.PathLike | None = None) -> str:
    """``$MLFLOW_TRACKING_URI``, else ``sqlite:////<repo root>/mlflow.db`` (an absolute path)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(repo_root(cwd) / 'mlflow.db').as_posix()}"


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def standard_tags(cwd: str | os.PathLike | None = None) -> dict[str, str]:
    """Git commit and dirty flag, plus the DVC experiment variables when set.

    ``git.dirty`` ignores untracked files (DVC outputs and caches are untracked or ignored)."""
    cwd = Path(cwd or Path.cwd())
    tags: dict[str, str] = {}
    commit = _git(["rev-parse", "HEAD"], cwd)
    if commit:
        tags["git.commit"] = commit
        tags["mlflow.source.git.commit"] = commit
        status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
        if status is not None:
            tags["git.dirty"] = "true" if status else "false"
    for env, tag in (("DVC_STAGE", "dvc.stage"), ("DVC_EXP_NAME", "dvc.exp_name"), ("DVC_EXP_BASELINE_REV", "dvc.baseline_rev")):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    return tags


# --------------------------------------------------------------------------------------
# The tracker and its runs
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MlflowTracker:
    """Where and how the library's runs go to MLflow (an ``hrseg.runtime.tracker.Tracker``).

    ``uri``: the store (None: ``default_tracking_uri()``); ``tags``: added to every run it
    starts, over the library's (e.g. ``hrseg.profile``, the pipeline's stage tags);
    ``run_name``: replaces the library's default name."""

    uri: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    run_name: str | None = None
    preflight_timeout: float = 5.0
    close_timeout: float = 60.0

    def start_run(
        self, experiment: str, name: str, tags: Mapping[str, str], params: Mapping[str, str], *, run_id: str | None = None
    ) -> MlflowRun | NullRun:
        return start_tracking(
            experiment, self.run_name or name, tags={**tags, **self.tags}, params=params, uri=self.uri, run_id=run_id,
            preflight_timeout=self.preflight_timeout, close_timeout=self.close_timeout,
        )  # fmt: skip

    def find_run(self, tag: str, value: str) -> str | None:
        return find_run_by_tag(tag, value, self.uri)


class MlflowRun:
    """One MLflow run. Calls return at once; a background thread sends them in order."""

    def __init__(
        self,
        client: Any,
        run_id: str,
        *,
        uri: str | None = None,
        close_timeout: float = 60.0,
        logged_steps: Mapping[str, int] | None = None,
        retry_timeout: float = 5.0,
    ) -> None:
        self._client = client
        self.run_id = run_id
        self.uri = uri
        self.close_timeout = close_timeout
        self.retry_timeout = retry_timeout
        #: the last step the (reopened) run already has for each metric key
        self.logged_steps = dict(logged_steps or {})
        self._failed = False
        self._artifacts_failed = False
        self._dropped = 0
        self._closed = False
        self._queue: queue.Queue = queue.Queue(maxsize=_QUEUE_SIZE)
        self._thread = threading.Thread(target=self._work, name="hrseg-mlflow", daemon=True)
        self._thread.start()

    @property
    def enabled(self) -> bool:
        return not self._failed and not self._closed

    def __repr__(self) -> str:
        state = "enabled" if self.enabled else "disabled"
        return f"MlflowRun({state}, run_id={self.run_id!r}, uri={self.uri!r})"

    # ------------------------------------------------------------------ worker

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                what, call, kind = item
                if kind == "end" or not (self._failed or (kind == "artifact" and self._artifacts_failed)):
                    try:
                        call()
                    except Exception as exc:  # any backend error: warn once, then stop sending
                        self._note_failure(exc, what, kind)
            finally:
                self._queue.task_done()

    def _note_failure(self, exc: Exception, what: str, kind: str) -> None:
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        if kind == "end":
            log.warning("MLflow: could not end run %s (%s); it may stay RUNNING in the UI", self.run_id, reason)
        elif kind == "artifact":
            self._artifacts_failed = True
            log.warning(
                "MLflow artifact upload failed (%s) while %s; later artifacts of run %s are skipped, metrics "
                "and tags are still logged (is the artifacts folder writable?)",
                reason, what, self.run_id,
            )  # fmt: skip
        else:
            self._failed = True
            log.warning(
                "MLflow tracking failed (%s) while %s; training continues, later tracking calls for run %s are dropped",
                reason, what, self.run_id,
            )  # fmt: skip

    def _submit(self, what: str, call: Callable[[], Any], kind: str = "call") -> None:
        if not self.enabled or (kind == "artifact" and self._artifacts_failed):
            return
        try:
            self._queue.put_nowait((what, call, kind))
        except queue.Full:
            self._dropped += 1
            if self._dropped == 1:
                log.warning("MLflow backend is too slow: tracking queue full, dropping %s (and later overflows)", what)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued call was sent (or ``timeout`` seconds); True if drained."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    # ------------------------------------------------------------------ logging

    def log_params(self, params: Mapping[str, Any]) -> None:
        items = [(str(k), str(v)) for k, v in params.items()] if self.enabled else []
        if items:
            self._submit("logging params", lambda: self._client.log_batch(self.run_id, params=items))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if not self.enabled:
            return
        now = int(time.time() * 1000)
        at = int(step or 0)
        items = [Metric(str(k), float(v), now, at) for k, v in metrics.items() if at > self.logged_steps.get(str(k), -1)]
        if items:
            self._submit(f"logging metrics at step {step}", lambda: self._client.log_batch(self.run_id, metrics=items))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        items = [(str(k), str(v)) for k, v in tags.items()]
        if items:
            self._submit("setting tags", lambda: self._client.log_batch(self.run_id, tags=items))

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        if self.enabled:
            path = str(path)
            self._submit(f"uploading {path}", lambda: self._client.log_artifact(self.run_id, path, artifact_path), "artifact")

    def log_dict(self, data: Mapping[str, Any], name: str) -> None:
        """``name`` is the artifact file (``.json`` or ``.yaml``), e.g. ``"config/recipe.yaml"``."""
        if self.enabled:
            data = dict(data)
            self._submit(f"writing {name}", lambda: self._client.log_dict(self.run_id, data, name), "artifact")

    def log_text(self, text: str, name: str) -> None:
        if self.enabled:
            self._submit(f"writing {name}", lambda: self._client.log_text(self.run_id, text, name), "artifact")

    def log_figure(self, figure: Any, name: str) -> None:
        """Log a matplotlib figure as ``name`` (e.g. ``"curves/training.png"``). The figure is
        rendered now, so the caller may close it as soon as this returns."""
        if not self.enabled:
            return
        import io

        buffer = io.BytesIO()
        try:
            figure.savefig(buffer, format=Path(name).suffix.lstrip(".") or "png", dpi=100, bbox_inches="tight")
        except Exception as exc:
            log.warning("could not render figure %s for MLflow: %s", name, exc)
            return
        payload = buffer.getvalue()
        self._submit(f"uploading {name}", lambda: self._upload_bytes(payload, name), "artifact")

    def _upload_bytes(self, payload: bytes, name: str) -> None:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="hrseg-mlflow-") as tmp:
            local = Path(tmp) / Path(name).name
            local.write_bytes(payload)
            parent = str(Path(name).parent)
            self._client.log_artifact(self.run_id, str(local), None if parent in ("", ".") else parent)

    def close(self, status: str = "FINISHED") -> None:
        """End the run (``FINISHED``, ``FAILED`` or ``KILLED``) and stop the worker thread."""
        if self._closed:
            return
        failed = self._failed

        def end() -> None:
            # after a failure the backend may be down: one quick try instead of MLflow's retries
            with short_timeouts(self.retry_timeout) if failed or self._failed else contextlib.nullcontext():
                self._client.set_terminated(self.run_id, status)

        try:
            self._queue.put((f"ending the run ({status})", end, "end"), timeout=1.0)
        except queue.Full:
            pass
        self._closed = True
        try:
            self._queue.put(None, timeout=1.0)
        except queue.Full:
            pass
        self._thread.join(self.close_timeout)
        if self._thread.is_alive():
            log.warning("MLflow backend did not answer within %.0f s; run %s may stay RUNNING", self.close_timeout, self.run_id)
        else:
            close = getattr(self._client, "close", None)  # a tracking service connection: ends it
            if close is not None:
                close()

    def __enter__(self) -> MlflowRun:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close("FINISHED" if exc_type is None else "KILLED" if exc_type is KeyboardInterrupt else "FAILED")


def _global_rank() -> int:
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def start_tracking(
    experiment: str,
    run_name: str,
    *,
    tags: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    uri: str | None = None,
    run_id: str | None = None,
    enabled: bool = True,
    preflight_timeout: float = 5.0,
    close_timeout: float = 60.0,
) -> MlflowRun | NullRun:
    """Open (or, with ``run_id``, reopen) an MLflow run and return its ``MlflowRun``.

    ``experiment`` is created when missing (with its artifacts next to a local SQLite store).
    ``tags`` are added to ``standard_tags()``; ``params`` are logged once (on a reopened run,
    only the keys it does not have yet, so a resume never trips MLflow's "param changed" error).
    Returns a ``NullRun`` on non-zero ranks, when ``enabled`` is false, or when the
    backend does not answer within ``preflight_timeout`` seconds (one warning)."""
    if not enabled or _global_rank() != 0:
        return NullRun()
    uri = uri or default_tracking_uri()
    problem = store_problem(uri, timeout=preflight_timeout)
    if problem is not None:
        log.warning(
            "MLflow tracking disabled: the store %s cannot be used (%s); the run continues untracked. Fix the path, "
            "point MLFLOW_TRACKING_URI (or --tracking-uri) elsewhere, or turn tracking off",
            uri,
            problem,
        )
        return NullRun()
    all_tags = {**standard_tags(), **{k: str(v) for k, v in (tags or {}).items()}}
    client: LocalClient | RemoteClient | None = None
    try:
        with short_timeouts(preflight_timeout):
            client = client_for(uri)
            active_run_id, logged, notes = client.open_run(experiment, run_name, all_tags, dict(params or {}), run_id)
    except Exception as exc:
        if client is not None:
            client.close()
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        log.warning(
            "MLflow tracking disabled: the backend at %s did not answer (%s: %s); the run continues untracked",
            uri,
            type(exc).__name__,
            first,
        )
        return NullRun()
    for note in notes:
        log.warning("%s", note)
    log.info("MLflow run %s in experiment %r at %s", active_run_id, experiment, uri)
    return MlflowRun(client, active_run_id, uri=uri, close_timeout=close_timeout, logged_steps=logged, retry_timeout=preflight_timeout)


_SQLITE_HEADER = b"SQLite format 3\x00"


def _folder_problem(folder: Path) -> str | None:
    """Why files cannot be created in ``folder`` (created when missing), or None."""
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".hrseg-write-check-"):
            pass
    except OSError as exc:
        return f"cannot write in {folder}: {exc.strerror or exc}"
    return None


def store_problem(uri: str, *, timeout: float = 5.0) -> str | None:
    """Why the local MLflow store at ``uri`` cannot be used, or None (also for remote stores,
    which the preflight checks). Takes well under a second for a local store: it looks for
    what would otherwise make MLflow retry its SQLAlchemy engine for ~100 s."""
    import sqlite3
    import urllib.parse

    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme == "sqlite":
        raw = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else ""
        if not raw or raw == ":memory:" or raw.startswith("file:"):
            return None
        path = Path(urllib.parse.unquote(raw.split("?", 1)[0]))
        if path.is_dir():
            return f"{path} is a directory, not an SQLite database file"
        if path.is_file():
            try:
                with open(path, "rb") as handle:
                    head = handle.read(len(_SQLITE_HEADER))
            except OSError as exc:
                return f"cannot read {path}: {exc.strerror or exc}"
            if head and head != _SQLITE_HEADER:
                return f"{path} is not an SQLite database"
        else:
            problem = _folder_problem(path.parent)
            if problem:
                return problem
        try:
            connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rwc", uri=True, timeout=timeout)
            try:
                version = connection.execute("PRAGMA user_version").fetchone()[0]
                connection.execute("BEGIN IMMEDIATE")
                connection.execute(f"PRAGMA user_version = {int(version)}")  # a write, rolled back
                connection.rollback()
            finally:
                connection.close()
        except sqlite3.Error as exc:
            return f"{path} cannot be written as an SQLite database ({exc})"
        return None
    if parsed.scheme in ("", "file"):
        folder = Path(urllib.parse.unquote(parsed.path) if parsed.scheme == "file" else uri)
        if folder.exists() and not folder.is_dir():
            return f"{folder} is a file; a file store is a folder"
        return _folder_problem(folder)
    return None


def find_run_by_tag(key: str, value: str, uri: str | None = None, timeout: float = 10.0) -> str | None:
    """The newest run (any experiment) whose tag ``key`` equals ``value``; None when there is
    none or the store cannot be read (this is a convenience link, never an error). How an
    evaluation finds its training run with it: ``hrseg.runtime.tracker.find_training_run``."""
    client = None
    try:
        with short_timeouts(timeout):
            client = client_for(uri or default_tracking_uri())
            return client.find_run(key, value)
    except Exception as exc:  # noqa: BLE001 - tracking must never stop evaluation
        log.debug("could not search MLflow runs by %s: %s", key, exc)
        return None
    finally:
        if client is not None:
            client.close()
