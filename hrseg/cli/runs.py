"""``hrseg runs``: compare tracked runs in the terminal, or as CSV / Markdown for reports."""

from __future__ import annotations

from typing import Annotated

import typer

from hrseg.cli._app import app, err_console, user_errors


@app.command("runs")
def runs_cli(
    experiments: Annotated[
        list[str] | None, typer.Option("--experiment", "-e", help="Experiment name or id (repeatable; default: all), e.g. hrseg/cityscapes.")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table (terminal), csv (every column, fractions) or md (Markdown, percent).")] = "table",
    uri: Annotated[str | None, typer.Option(help="Tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:////<repo>/mlflow.db).")] = None,
) -> None:
    """Print a comparison table of the tracked runs, newest first.

    Columns: dataset, stage (train/eval), model, lr, epochs, mIoU and pixel accuracy in %
    (eval runs: the evaluation; training runs: the final validation, or the latest while
    running), run id, start time, DVC experiment, run name. --format csv adds recipe, mean
    acc, status, experiment, profile, git commit and the training run of an evaluation.
    """
    from hrseg.runs import FORMATS, RunsError, format_runs, list_runs
    from hrseg.tracking import default_tracking_uri

    with user_errors():
        if fmt not in FORMATS:
            raise RunsError(f"unknown --format {fmt!r}; expected one of {', '.join(FORMATS)}")
        store = uri or default_tracking_uri()
        frame = list_runs(store, experiments)
    if frame.empty:
        which = f"experiment(s) {', '.join(experiments)}" if experiments else "any experiment"
        err_console.print(f"no runs in {which} of {store}", highlight=False, soft_wrap=True)
        if fmt == "table":
            return
    typer.echo(format_runs(frame, fmt), nl=False)
