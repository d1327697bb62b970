"""The MLflow calls hrseg makes, on plain values: the one module of ``tracking`` that imports mlflow
to write runs.

``hrseg.tracking.tracker.MlflowRun`` logs through a *client* with these methods, all on plain
Python values (``Metric`` tuples, ``(key, value)`` pairs, paths, dicts), never on
``mlflow.entities`` objects, so that the process that logs need not import mlflow (about 2 s
here) to build them:

- ``open_run(experiment, run_name, tags, params, run_id) -> (run_id, logged, notes)``
- ``log_batch(run_id, metrics=(), params=(), tags=())``
- ``log_artifact(run_id, path, artifact_path)``, ``log_dict(run_id, data, name)``,
  ``log_text(run_id, text, name)``
- ``set_terminated(run_id, status)``
- ``find_run(key, value) -> run id | None``, ``search_runs(experiments) -> (runs, names, unknown)``
- ``close()``

``LocalClient`` is that client on an in-process ``mlflow.MlflowClient``. The tracking service
(``hrseg.tracking.service``) runs ``LocalClient``s in its own long-lived process and gives the
caller a ``RemoteClient`` with the same methods.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from hrseg.runtime.tracker import MAX_PARAM_LENGTH


class Metric(NamedTuple):
    """One metric value as MLflow stores it (``timestamp`` in ms since the epoch)."""

    key: str
    value: float
    timestamp: int
    step: int


@contextlib.contextmanager
def short_timeouts(timeout: float) -> Iterator[None]:
    """MLflow's HTTP client reads these per request; set them for a preflight only, then restore."""
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


def artifact_location(uri: str, experiment: str) -> str | None:
    """For a local SQLite store, keep artifacts next to the database (``mlartifacts/``), not in
    the working directory; other backends decide for themselves."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri[len("sqlite:///") :])
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment).strip("_") or "default"
    return (db.parent / "mlartifacts" / safe).as_uri()


def _cut(value: Any) -> str:
    return str(value)[:MAX_PARAM_LENGTH]


class LocalClient:
    """The client methods (module docstring) on an ``mlflow.MlflowClient`` in this process."""

    def __init__(self, uri: str) -> None:
        from mlflow import MlflowClient

        self.uri = uri
        self._client = MlflowClient(tracking_uri=uri)

    def __repr__(self) -> str:
        return f"LocalClient({self.uri!r})"

    def open_run(
        self, experiment: str, run_name: str, tags: Mapping[str, str], params: Mapping[str, Any], run_id: str | None
    ) -> tuple[str, dict[str, int], list[str]]:
        """Create the run ``run_name`` in ``experiment`` (created when missing), or reopen
        ``run_id``; log ``tags`` and ``params`` (a reopened run keeps the values it has).
        Returns ``(run_id, logged, notes)``: ``logged`` maps each metric of a reopened run to
        its last step ({} for a new run); ``notes`` are warnings for the caller to log."""
        from mlflow.entities import Param, RunTag
        from mlflow.exceptions import MlflowException

        client = self._client
        notes: list[str] = []
        run_tags = [RunTag(str(k), str(v)) for k, v in tags.items()]
        if run_id:
            try:
                run = client.get_run(run_id)
            except MlflowException as exc:
                notes.append(f"MLflow run {run_id} not found at {self.uri} ({str(exc).splitlines()[0][:200]}); starting a new run")
            else:
                if run.info.lifecycle_stage == "deleted":
                    notes.append(f"MLflow run {run_id} was deleted; starting a new run")
                else:
                    client.update_run(run_id, status="RUNNING")
                    have = run.data.params
                    new = [Param(str(k), _cut(v)) for k, v in params.items() if str(k) not in have]
                    changed = sorted(str(k) for k, v in params.items() if str(k) in have and have[str(k)] != _cut(v))
                    if changed:
                        notes.append(f"resumed MLflow run {run_id} keeps its original values of {', '.join(changed)}")
                    client.log_batch(run_id, params=new, tags=run_tags)
                    logged = {key: max((m.step for m in client.get_metric_history(run_id, key)), default=-1) for key in run.data.metrics}
                    return run_id, logged, notes
        experiment_id = self._ensure_experiment(experiment)
        run = client.create_run(experiment_id, tags={t.key: t.value for t in run_tags}, run_name=run_name)
        client.log_batch(run.info.run_id, params=[Param(str(k), _cut(v)) for k, v in params.items()])
        return run.info.run_id, {}, notes

    def _ensure_experiment(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        found = self._client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                self._client.restore_experiment(found.experiment_id)
            return found.experiment_id
        try:
            return self._client.create_experiment(name, artifact_location=artifact_location(self.uri, name))
        except MlflowException:
            # another process created it in the meantime
            found = self._client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def log_batch(
        self, run_id: str, metrics: Iterable[Metric] = (), params: Iterable[tuple[str, Any]] = (), tags: Iterable[tuple[str, Any]] = ()
    ) -> None:
        from mlflow.entities import Metric as MlflowMetric
        from mlflow.entities import Param, RunTag

        self._client.log_batch(
            run_id,
            metrics=[MlflowMetric(m.key, m.value, m.timestamp, m.step) for m in map(Metric._make, metrics)],
            params=[Param(str(k), _cut(v)) for k, v in params],
            tags=[RunTag(str(k), str(v)) for k, v in tags],
        )

    def log_artifact(self, run_id: str, path: str, artifact_path: str | None = None) -> None:
        self._client.log_artifact(run_id, path, artifact_path)

    def log_dict(self, run_id: str, data: Mapping[str, Any], name: str) -> None:
        self._client.log_dict(run_id, dict(data), name)

    def log_text(self, run_id: str, text: str, name: str) -> None:
        self._client.log_text(run_id, text, name)

    def set_terminated(self, run_id: str, status: str) -> None:
        self._client.set_terminated(run_id, status)

    def find_run(self, key: str, value: str) -> str | None:
        """The newest run (any experiment) whose tag ``key`` equals ``value``, or None."""
        experiments = [e.experiment_id for e in self._client.search_experiments()]
        if not experiments:
            return None
        runs = self._client.search_runs(experiments, filter_string=f"tags.`{key}` = '{value}'", order_by=["attributes.start_time DESC"], max_results=1)
        return runs[0].info.run_id if runs else None

    def search_runs(self, experiments: list[str] | None = None) -> tuple[list[dict[str, Any]], list[str], list[str]]:
        """Every active run of ``experiments`` (names or ids; None or empty: all) as plain records
        (``experiment``, ``run_id``, ``run_name``, ``status``, ``start_time`` in ms, ``tags``,
        ``params``, ``metrics``: the latest value of each), plus the names of all active
        experiments and the requested ones that do not exist (then no runs are read)."""
        from mlflow.entities import ViewType

        every = self._client.search_experiments(view_type=ViewType.ACTIVE_ONLY)
        names = sorted(e.name for e in every)
        chosen = every
        if experiments:
            by_key = {**{e.experiment_id: e for e in every}, **{e.name: e for e in every}}
            unknown = [name for name in experiments if name not in by_key]
            if unknown:
                return [], names, unknown
            chosen = list({by_key[name].experiment_id: by_key[name] for name in experiments}.values())
        records = []
        for experiment in chosen:
            token = None
            while True:
                page = self._client.search_runs([experiment.experiment_id], max_results=1000, page_token=token)
                records += [
                    {
                        "experiment": experiment.name, "run_id": run.info.run_id, "run_name": run.info.run_name,
                        "status": run.info.status, "start_time": run.info.start_time,
                        "tags": dict(run.data.tags), "params": dict(run.data.params), "metrics": dict(run.data.metrics),
                    }  # fmt: skip
                    for run in page
                ]
                token = page.token
                if not token:
                    break
        return records, names, []

    def close(self) -> None:
        pass
