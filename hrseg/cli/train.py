"""``hrseg train``: train a recipe on CPU, one GPU, or several GPUs/nodes under torchrun."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hrseg.cli._app import app, setup_logging, user_errors


@app.command("train")
def train_cli(
    recipe: Annotated[str, typer.Argument(help="Recipe name (params/<name>.yaml) or path to a recipe YAML.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output directory (default: models/<recipe name>).")] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", "-s", help="Override a recipe value, e.g. --set train.lr=0.02 (repeatable).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda or auto (default: cuda when available).")] = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from <out>/checkpoint.pth when it exists.")] = True,
    track: Annotated[bool, typer.Option("--track/--no-track", help="Log to MLflow (rank 0).")] = True,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:////<repo>/mlflow.db).")] = None,
    run_name: Annotated[str | None, typer.Option(help="MLflow run name (default: 'train <recipe> <changed values>').")] = None,
    profile: Annotated[str | None, typer.Option(help="Free-form profile label, stored as the MLflow tag hrseg.profile.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Train RECIPE and write checkpoint.pth, best.pth, final.pth, metrics.json and log.csv to --out.

    Several GPUs: torchrun --standalone --nproc-per-node=4 -m hrseg.cli train RECIPE ...
    (batch size is per process; the schedule uses the real number of processes)."""
    from hrseg.engine.train import train
    from hrseg.recipe import load_recipe

    setup_logging(verbose)
    with user_errors():
        resolved = load_recipe(recipe, overrides or [])
        train(
            resolved,
            out or Path("models") / resolved.name,
            resume=resume,
            device=device,
            tracking=track,
            tracking_uri=tracking_uri,
            run_name=run_name,
            profile=profile,
        )
