"""``hrseg runs``: compare tracked runs in the terminal, or as TSV / CSV / JSON / Markdown."""

from __future__ import annotations

from typing import Annotated

import typer

from hrseg.cli._app import app, console, err_console, user_errors
from hrseg.tracking.runs import FORMATS, LISTED_STAGES, RunsError, by_stage, format_runs, list_runs
from hrseg.tracking.tracker import default_tracking_uri


@app.command("runs")
def runs_cli(
    experiments: Annotated[
        list[str] | None, typer.Option("--experiment", "-e", help="Experiment name or id (repeatable; default: all), e.g. hrseg/cityscapes.")
    ] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="table (aligned text), tsv (the same cells), csv or json (every column, fractions) or md (Markdown, percent).",
        ),
    ] = "table",
    every_stage: Annotated[
        bool, typer.Option("--all", "-a", help="Also list the pipeline's other runs (synth, prepare, fetch, results_table).")
    ] = False,
    uri: Annotated[str | None, typer.Option(help="Tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:////<repo>/mlflow.db).")] = None,
) -> None:
    """Print a comparison table of the training and evaluation runs, newest first.

    Runs of the other pipeline stages (synth, prepare, fetch, results_table) are left out
    unless --all is given; a note on stderr counts them. Columns: dataset, stage
    (train/eval), model, lr, epochs, mIoU and pixel accuracy in % (eval runs: the
    evaluation; training runs: the final validation, or the latest while running), run id,
    start time, DVC experiment, run name. csv and json add recipe, mean acc, status,
    experiment, profile, git commit and the training run of an evaluation.
    """
    with user_errors():
        if fmt not in FORMATS:
            raise RunsError(f"unknown --format {fmt!r}; expected one of {', '.join(FORMATS)}")
        store = uri or default_tracking_uri()
        frame, left_out = by_stage(list_runs(store, experiments), None if every_stage else LISTED_STAGES)
    if left_out:
        counts = ", ".join(f"{n} {stage}" for stage, n in left_out.items())
        err_console.print(
            f"listing {' and '.join(LISTED_STAGES)} runs; left out: {counts} (--all lists them)", highlight=False, soft_wrap=True
        )
    if frame.empty:
        which = f"experiment(s) {', '.join(experiments)}" if experiments else "any experiment"
        err_console.print(f"no {'' if every_stage else 'train or eval '}runs in {which} of {store}", highlight=False, soft_wrap=True)
        if fmt == "table":
            return
    typer.echo(format_runs(frame, fmt, cut_names=console.is_terminal), nl=False)
