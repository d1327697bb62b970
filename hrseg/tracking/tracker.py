"""MLflow tracking behind one small class; a tracking failure warns, it never stops a run.

``start_tracking(...)`` returns a ``Tracker``. Only global rank 0 talks to MLflow: on any
other rank, with ``enabled=False``, or when the backend cannot be reached, it returns a
*disabled* tracker that accepts every call and does nothing.

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

Default store: ``$MLFLOW_TRACKING_URI``, else ``sqlite:////<repo root>/mlflow.db`` with
artifacts in ``<repo root>/mlartifacts/`` (absolute paths, so ``dvc exp run --temp/--queue``
runs, which execute in ``.dvc/tmp/exps/...``, log to the same store). The repository root is
``$DVC_ROOT`` if set, else the git top level of the working directory, else the working
directory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from hrseg.config import flatten
from hrseg.io import sha256_file

log = logging.getLogger(__name__)

#: MLflow's limit on the length of a parameter value.
MAX_PARAM_LENGTH = 6000
#: ``hrseg train`` records its MLflow run in this file, next to its checkpoints
RUN_FILE = "mlflow_run.json"
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


def recorded_run_id(directory: str | os.PathLike) -> str | None:
    """The MLflow run id that ``hrseg train`` recorded in ``directory/RUN_FILE`` (None when the
    file is absent or unreadable)."""
    path = Path(directory) / RUN_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("mlflow_run_id") if path.is_file() else None
    except (OSError, ValueError, AttributeError):
        return None


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


def params_from_dict(data: Mapping[str, Any]) -> dict[str, str]:
    """Flatten a nested (resolved recipe) dict into MLflow params: dotted keys, string values,
    ``None`` written as ``"none"``, lists as ``[a, b]``, values cut at MLflow's length limit."""
    params = {}
    for key, value in flatten(dict(data)).items():
        if value is None:
            text = "none"
        elif isinstance(value, (list, tuple)):
            text = "[" + ", ".join("none" if v is None else str(v) for v in value) + "]"
        else:
            text = str(value)
        params[key] = text[:MAX_PARAM_LENGTH]
    return params


def file_reference_tags(name: str, path: str | os.PathLike) -> dict[str, str]:
    """Tags that reference a file without uploading it: ``<name>.path`` and ``<name>.sha256``."""
    path = Path(path)
    return {f"{name}.path": str(path.resolve()), f"{name}.sha256": sha256_file(path)}


def _artifact_location(uri: str, experiment: str) -> str | None:
    """For a local SQLite store, keep artifacts next to the database (``mlartifacts/``), not in
    the working directory; other backends decide for themselves."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri[len("sqlite:///") :])
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment).strip("_") or "default"
    return (db.parent / "mlartifacts" / safe).as_uri()


@contextlib.contextmanager
def _short_timeouts(timeout: float) -> Iterator[None]:
    """MLflow reads these per request; set them for the preflight only, then restore."""
    names = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, round(timeout))),
    }
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(names)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# --------------------------------------------------------------------------------------
# The tracker
# --------------------------------------------------------------------------------------


class Tracker:
    """One MLflow run. Calls return at once; a background thread sends them in order.

    A tracker built without a client is disabled: every method is a no-op and ``run_id`` is
    ``None``."""

    def __init__(
        self,
        client: Any = None,
        run_id: str | None = None,
        *,
        uri: str | None = None,
        close_timeout: float = 60.0,
        logged_steps: Mapping[str, int] | None = None,
        retry_timeout: float = 5.0,
    ) -> None:
        self._client = client
        self.run_id = run_id if client is not None else None
        self.uri = uri
        self.close_timeout = close_timeout
        self.retry_timeout = retry_timeout
        #: the last step the (reopened) run already has for each metric key
        self.logged_steps = dict(logged_steps or {})
        self._failed = False
        self._artifacts_failed = False
        self._dropped = 0
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        if client is not None:
            self._queue = queue.Queue(maxsize=_QUEUE_SIZE)
            self._thread = threading.Thread(target=self._work, name="hrseg-mlflow", daemon=True)
            self._thread.start()

    @property
    def enabled(self) -> bool:
        return self._client is not None and not self._failed and not self._closed

    def __repr__(self) -> str:
        state = "enabled" if self.enabled else "disabled"
        return f"Tracker({state}, run_id={self.run_id!r}, uri={self.uri!r})"

    # ------------------------------------------------------------------ worker

    def _work(self) -> None:
        assert self._queue is not None
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
        if not self.enabled or self._queue is None or (kind == "artifact" and self._artifacts_failed):
            return
        try:
            self._queue.put_nowait((what, call, kind))
        except queue.Full:
            self._dropped += 1
            if self._dropped == 1:
                log.warning("MLflow backend is too slow: tracking queue full, dropping %s (and later overflows)", what)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued call was sent (or ``timeout`` seconds); True if drained."""
        if self._queue is None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    # ------------------------------------------------------------------ logging

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(str(k), str(v)[:MAX_PARAM_LENGTH]) for k, v in params.items()] if self.enabled else []
        if items:
            self._submit("logging params", lambda: self._client.log_batch(self.run_id, params=items))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if not self.enabled:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        at = int(step or 0)
        items = [Metric(str(k), float(v), now, at) for k, v in metrics.items() if at > self.logged_steps.get(str(k), -1)]
        if items:
            self._submit(f"logging metrics at step {step}", lambda: self._client.log_batch(self.run_id, metrics=items))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        from mlflow.entities import RunTag

        items = [RunTag(str(k), str(v)) for k, v in tags.items()]
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
        if self._client is None or self._closed:
            return
        if self._queue is not None:
            failed = self._failed

            def end() -> None:
                # after a failure the backend may be down: one quick try instead of MLflow's retries
                with _short_timeouts(self.retry_timeout) if failed or self._failed else contextlib.nullcontext():
                    self._client.set_terminated(self.run_id, status)

            try:
                self._queue.put((f"ending the run ({status})", end, "end"), timeout=1.0)
            except queue.Full:
                pass
        self._closed = True
        assert self._queue is not None and self._thread is not None
        try:
            self._queue.put(None, timeout=1.0)
        except queue.Full:
            pass
        self._thread.join(self.close_timeout)
        if self._thread.is_alive():
            log.warning("MLflow backend did not answer within %.0f s; run %s may stay RUNNING", self.close_timeout, self.run_id)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close("FINISHED" if exc_type is None else "KILLED" if exc_type is KeyboardInterrupt else "FAILED")


def disabled_tracker() -> Tracker:
    return Tracker(None)


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
) -> Tracker:
    """Open (or, with ``run_id``, reopen) an MLflow run and return its ``Tracker``.

    ``experiment`` is created when missing (with its artifacts next to a local SQLite store).
    ``tags`` are added to ``standard_tags()``; ``params`` are logged once (on a reopened run,
    only the keys it does not have yet, so a resume never trips MLflow's "param changed" error).
    Returns a disabled tracker on non-zero ranks, when ``enabled`` is false, or when the
    backend does not answer within ``preflight_timeout`` seconds (one warning)."""
    if not enabled or _global_rank() != 0:
        return disabled_tracker()
    uri = uri or default_tracking_uri()
    problem = store_problem(uri, timeout=preflight_timeout)
    if problem is not None:
        log.warning(
            "MLflow tracking disabled: the store %s cannot be used (%s); the run continues untracked. Fix the path, "
            "point MLFLOW_TRACKING_URI (or --tracking-uri) elsewhere, or turn tracking off",
            uri,
            problem,
        )
        return disabled_tracker()
    try:
        with _short_timeouts(preflight_timeout):
            client, active_run_id, logged = _open_run(uri, experiment, run_name, dict(tags or {}), dict(params or {}), run_id)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        log.warning(
            "MLflow tracking disabled: the backend at %s did not answer (%s: %s); the run continues untracked",
            uri,
            type(exc).__name__,
            first,
        )
        return disabled_tracker()
    log.info("MLflow run %s in experiment %r at %s", active_run_id, experiment, uri)
    return Tracker(client, active_run_id, uri=uri, close_timeout=close_timeout, logged_steps=logged, retry_timeout=preflight_timeout)


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


def _open_run(uri: str, experiment: str, run_name: str, tags: dict, params: dict, run_id: str | None) -> tuple[Any, str, dict[str, int]]:
    """``(client, run_id, logged)``: ``logged`` maps each metric of a reopened run to its
    last step ({} for a new run)."""
    from mlflow import MlflowClient
    from mlflow.entities import Param, RunTag
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=uri)
    all_tags = {**standard_tags(), **{k: str(v) for k, v in tags.items()}}
    if run_id:
        try:
            run = client.get_run(run_id)
        except MlflowException as exc:
            log.warning("MLflow run %s not found at %s (%s); starting a new run", run_id, uri, str(exc).splitlines()[0][:200])
        else:
            if run.info.lifecycle_stage == "deleted":
                log.warning("MLflow run %s was deleted; starting a new run", run_id)
            else:
                client.update_run(run_id, status="RUNNING")
                have = run.data.params
                new = [Param(str(k), str(v)[:MAX_PARAM_LENGTH]) for k, v in params.items() if str(k) not in have]
                changed = sorted(k for k, v in params.items() if str(k) in have and have[str(k)] != str(v)[:MAX_PARAM_LENGTH])
                if changed:
                    log.warning("resumed MLflow run %s keeps its original values of %s", run_id, ", ".join(changed))
                client.log_batch(run_id, params=new, tags=[RunTag(k, v) for k, v in all_tags.items()])
                logged = {key: max((m.step for m in client.get_metric_history(run_id, key)), default=-1) for key in run.data.metrics}
                return client, run_id, logged
    experiment_id = _ensure_experiment(client, experiment, uri)
    run = client.create_run(experiment_id, tags=all_tags, run_name=run_name)
    client.log_batch(run.info.run_id, params=[Param(str(k), str(v)[:MAX_PARAM_LENGTH]) for k, v in params.items()])
    return client, run.info.run_id, {}


def _ensure_experiment(client: Any, name: str, uri: str) -> str:
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=_artifact_location(uri, name))
    except MlflowException:
        # another process created it in the meantime
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def find_run_by_tag(key: str, value: str, uri: str | None = None, timeout: float = 10.0) -> str | None:
    """The newest run (any experiment) whose tag ``key`` equals ``value``; None when there is
    none or the store cannot be read (this is a convenience link, never an error). The
    evaluation of a model finds the training run that wrote it this way, by the model file's
    sha256 (tag ``checkpoint.final.sha256``), so no side file has to travel with the model."""
    try:
        from mlflow import MlflowClient

        with _short_timeouts(timeout):
            client = MlflowClient(tracking_uri=uri or default_tracking_uri())
            experiments = [e.experiment_id for e in client.search_experiments()]
            if not experiments:
                return None
            runs = client.search_runs(experiments, filter_string=f"tags.`{key}` = '{value}'", order_by=["attributes.start_time DESC"], max_results=1)
    except Exception as exc:  # noqa: BLE001 - tracking must never stop evaluation
        log.debug("could not search MLflow runs by %s: %s", key, exc)
        return None
    return runs[0].info.run_id if runs else None
