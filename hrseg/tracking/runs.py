"""Query the MLflow store and format a comparison table of runs (``hrseg runs``).

``list_runs()`` reads every run of the chosen experiments into one row per run, from what
training and evaluation log (``hrseg.tracking.tracker``): tags ``hrseg.dataset``, ``hrseg.stage``,
``hrseg.recipe``, ``hrseg.model``, ``dvc.exp_name``, ``git.commit``; params ``train.lr``,
``train.epochs``; metrics ``miou``/``pixel_acc``/``mean_acc`` (evaluation runs) or
``final_miou``/``final_pixel_acc``/``final_mean_acc`` (finished training runs), else the last
``val/miou``/``val/pixel_acc``/``val/mean_acc`` (a training run still in progress).
Runs logged by other tools still get a row; what is missing stays empty.

``format_runs()`` renders the table for a terminal, as TSV, CSV, JSON or Markdown.
``by_stage()`` keeps the model runs (``LISTED_STAGES``: training and evaluation, and runs
without an ``hrseg.stage`` tag) and counts what it leaves out (the pipeline's synth, prepare,
fetch and results-table runs), so that ``hrseg runs`` can say so; ``hrseg runs --all`` keeps all.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from hrseg.errors import HrsegError
from hrseg.runtime.tracker import TRAIN_RUN_TAG
from hrseg.tracking.service import client_for
from hrseg.tracking.tracker import default_tracking_uri

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

#: Columns of ``list_runs()``, in order (CSV has them all).
COLUMNS = (
    "dataset", "stage", "recipe", "model", "lr", "epochs", "miou", "pixel_acc", "run_name", "run_id",
    "start_time", "dvc_exp", "mean_acc", "status", "experiment", "profile", "git_commit", "train_run_id",
)  # fmt: skip
#: Columns shown by the ``table`` and ``md`` formats (the run name last: it is the long one).
SUMMARY_COLUMNS = ("dataset", "stage", "model", "lr", "epochs", "miou", "pixel_acc", "run_id", "start_time", "dvc_exp", "run_name")
#: Headers of the summary columns (accuracies are shown in percent).
HEADERS = {
    "dataset": "dataset", "stage": "stage", "model": "model", "lr": "lr", "epochs": "epochs",
    "miou": "mIoU %", "pixel_acc": "pixel acc %", "run_name": "run name", "run_id": "run id",
    "start_time": "started", "dvc_exp": "DVC exp",
}  # fmt: skip
FORMATS = ("table", "tsv", "csv", "json", "md")
Format = Literal["table", "tsv", "csv", "json", "md"]
#: Stages ``by_stage()`` keeps by default: the runs that train or evaluate a model.
LISTED_STAGES = ("train", "eval")

_METRIC_KEYS = {
    "miou": ("miou", "final_miou", "val/miou"),
    "pixel_acc": ("pixel_acc", "final_pixel_acc", "val/pixel_acc"),
    "mean_acc": ("mean_acc", "final_mean_acc", "val/mean_acc"),
}
_RUN_NAME_WIDTH = 60  # the terminal table cuts longer run names


class RunsError(HrsegError):
    """The store cannot be read, or an experiment or format is unknown."""


# --------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (``sqlite:////abs.db`` is absolute,
    ``sqlite:///rel.db`` relative to the working directory); None for other URIs."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def check_local_store(uri: str, *, must_exist: bool = True) -> Path | None:
    """For a SQLite URI, return the database path (``RunsError`` if ``must_exist`` and it is
    missing: MLflow would silently create an empty one). None for other URIs."""
    db = sqlite_path(uri)
    if db is not None and must_exist and not db.is_file():
        raise RunsError(
            f"no MLflow store at {db} (tracking URI {uri}): nothing has been tracked there yet. "
            "`hrseg train` and `hrseg evaluate` create it; otherwise pass --uri or set MLFLOW_TRACKING_URI"
        )
    return db


# --------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------


def _number(text: str | None, kind: type = float) -> float | int | None:
    if text is None or text == "" or text.lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    if kind is int and value.is_integer():
        return int(value)
    return value


def _metric(metrics: dict[str, float], column: str) -> float | None:
    for key in _METRIC_KEYS[column]:
        if key in metrics and not math.isnan(metrics[key]):
            return float(metrics[key])
    return None


def run_row(run: dict[str, Any]) -> dict[str, Any]:
    """One table row (a dict over ``COLUMNS``) for a run record of ``backend.LocalClient.search_runs``."""
    import pandas as pd  # here, not at the top: `hrseg ui` imports this module and needs no pandas

    tags, params, metrics = run["tags"], run["params"], run["metrics"]
    model = tags.get("hrseg.model")
    if model is None and "model.backbone" in params:
        model = f"{params['model.backbone']}_{params.get('model.head', '?')}"
    start = run["start_time"]
    return {
        "dataset": tags.get("hrseg.dataset") or params.get("data.dataset"),
        "stage": tags.get("hrseg.stage") or tags.get("dvc.stage"),
        "recipe": tags.get("hrseg.recipe") or params.get("name"),
        "model": model,
        "lr": _number(params.get("train.lr")),
        "epochs": _number(params.get("train.epochs"), int),
        "miou": _metric(metrics, "miou"),
        "pixel_acc": _metric(metrics, "pixel_acc"),
        "run_name": run["run_name"],
        "run_id": run["run_id"],
        "start_time": pd.Timestamp(datetime.fromtimestamp(start / 1000)) if start else None,
        "dvc_exp": tags.get("dvc.exp_name"),
        "mean_acc": _metric(metrics, "mean_acc"),
        "status": run["status"],
        "experiment": run["experiment"],
        "profile": tags.get("hrseg.profile"),
        "git_commit": tags.get("git.commit") or tags.get("mlflow.source.git.commit"),
        "train_run_id": tags.get(TRAIN_RUN_TAG) or tags.get("mlflow.parentRunId"),
    }


def list_runs(uri: str | None = None, experiments: Iterable[str] | None = None) -> pd.DataFrame:
    """Every active run of ``experiments`` (names or ids; default: all) in the store at ``uri``
    (default: the project's store), newest first, one row per run over ``COLUMNS``.

    Raises ``RunsError`` for a missing SQLite store (instead of creating an empty one), an
    unreadable store or an unknown experiment. An empty store gives an empty frame."""
    import pandas as pd  # only where used (see run_row)

    uri = uri or default_tracking_uri()
    check_local_store(uri)
    client = None
    try:
        client = client_for(uri)  # the tracking service for a local SQLite store: no mlflow import here
        records, names, unknown = client.search_runs(list(experiments or []))
    except Exception as exc:  # MlflowException, sqlalchemy errors, unreachable servers
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise RunsError(f"cannot read MLflow runs from {uri}: {type(exc).__name__}: {first}") from exc
    finally:
        if client is not None:
            client.close()
    if unknown:
        raise RunsError(f"unknown experiment(s) {', '.join(map(repr, unknown))} in {uri}; available: {', '.join(names) or '(none)'}")
    rows = [run_row(record) for record in records]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    if len(frame):
        frame = frame.sort_values("start_time", ascending=False, na_position="last", kind="stable").reset_index(drop=True)
    return frame


# --------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------


def by_stage(frame: pd.DataFrame, stages: Iterable[str] | None = LISTED_STAGES) -> tuple[pd.DataFrame, dict[str, int]]:
    """``(rows whose stage is in stages or missing, {left-out stage: number of runs})``;
    ``stages=None`` keeps every row."""
    if stages is None or frame.empty:
        return frame, {}
    keep = frame["stage"].isna() | frame["stage"].isin(list(stages))
    left_out = frame.loc[~keep, "stage"].value_counts()
    return frame[keep].reset_index(drop=True), {str(k): int(v) for k, v in sorted(left_out.items())}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or type(value).__name__ == "NaTType"


def cell(column: str, value: Any) -> str:
    """A summary cell as text: accuracies in percent, lr in %g, times to the minute."""
    if _missing(value):
        return "-"
    if column in ("miou", "pixel_acc", "mean_acc"):
        return f"{100 * float(value):.2f}"
    if column == "lr":
        return f"{float(value):g}"
    if column == "epochs":
        return str(int(value))
    if column == "start_time":
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


def _text_table(frame: pd.DataFrame, cut_names: bool = True) -> str:
    """Aligned columns; the DVC column only when some run has one; long run names cut
    (unless ``cut_names`` is false)."""
    columns = [c for c in SUMMARY_COLUMNS if c != "dvc_exp" or frame[c].notna().any()]
    rows = []
    for record in frame.to_dict("records"):
        row = [cell(c, record[c]) for c in columns]
        if cut_names and len(row[-1]) > _RUN_NAME_WIDTH:
            row[-1] = row[-1][: _RUN_NAME_WIDTH - 3] + "..."
        rows.append(row)
    headers = [HEADERS[c] for c in columns]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    right = {i for i, c in enumerate(columns) if c in ("lr", "epochs", "miou", "pixel_acc")}

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]) + "\n"


def _markdown(frame: pd.DataFrame) -> str:
    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")

    headers = [HEADERS[c] for c in SUMMARY_COLUMNS]
    align = ["---:" if c in ("lr", "epochs", "miou", "pixel_acc") else "---" for c in SUMMARY_COLUMNS]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    for record in frame.to_dict("records"):
        lines.append("| " + " | ".join(escape(cell(c, record[c])) for c in SUMMARY_COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def _tsv(frame: pd.DataFrame) -> str:
    """The summary columns as the table shows them, tab-separated, with a header line."""
    lines = ["\t".join(HEADERS[c] for c in SUMMARY_COLUMNS)]
    for record in frame.to_dict("records"):
        lines.append("\t".join(cell(c, record[c]).replace("\t", " ").replace("\n", " ") for c in SUMMARY_COLUMNS))
    return "\n".join(lines) + "\n"


def _plain(column: str, value: Any) -> Any:
    """A value of every-column output: None when missing, ISO times, integer epochs."""
    if _missing(value):
        return None
    if column == "start_time":
        return value.isoformat(timespec="seconds")
    if column == "epochs":
        return int(value)
    return value


def _csv(frame: pd.DataFrame) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for record in frame.to_dict("records"):
        writer.writerow(["" if (v := _plain(c, record[c])) is None else str(v) for c in COLUMNS])
    return buffer.getvalue()


def _json(frame: pd.DataFrame) -> str:
    records = [{c: _plain(c, record[c]) for c in COLUMNS} for record in frame.to_dict("records")]
    return json.dumps(records, indent=2, default=str) + "\n"


def format_runs(frame: pd.DataFrame, fmt: str = "table", *, cut_names: bool = True) -> str:
    """Render ``list_runs()`` output: ``table`` (aligned text; run names longer than 60
    characters cut unless ``cut_names`` is false), ``tsv`` (the same cells, tab-separated),
    ``md`` (a Markdown table for reports; these three show ``SUMMARY_COLUMNS``, accuracies in
    percent; the table leaves out the DVC column when no run has one), ``csv`` or ``json``
    (every column, fractions as logged, ISO times)."""
    missing = [c for c in (COLUMNS if fmt in ("csv", "json") else SUMMARY_COLUMNS) if c not in frame.columns]
    if fmt not in FORMATS:
        raise RunsError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if missing:
        raise RunsError(f"runs table lacks column(s) {', '.join(missing)}; expected the output of list_runs()")
    if fmt == "csv":
        return _csv(frame)
    if fmt == "json":
        return _json(frame)
    if fmt == "tsv":
        return _tsv(frame)
    if fmt == "md":
        return _markdown(frame)
    return _text_table(frame, cut_names)
