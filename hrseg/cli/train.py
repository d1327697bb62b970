"""``hrseg train``: train a recipe on CPU, one GPU, or several GPUs/nodes under torchrun.

``hrseg.engine.train`` (and with it torch, about 2 s) is imported inside ``train_cli``, once the
options are parsed: ``hrseg train --help`` and typer's option errors then need no torch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hrseg.cli._app import app, setup_logging, user_errors
from hrseg.recipe import DEFAULT_PROFILE, resolve_recipe
from hrseg.runtime import HOST_MEMORY_HELP, parse_isa, pin_cpu_numerics, set_host_memory
from hrseg.runtime.tracker import profile_tags
from hrseg.tracking.tracker import MlflowTracker


@app.command("train")
def train_cli(
    recipe: Annotated[str, typer.Argument(help="Recipe name (params/<profile>/<name>.yaml) or path to a recipe YAML.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output directory (default: models/<recipe name>).")] = None,
    profile: Annotated[str, typer.Option(help="Recipe folder params/<profile>/: full (official recipes) or embedded (the pipeline's default); also the MLflow tag hrseg.profile.")] = DEFAULT_PROFILE,
    data_root: Annotated[str | None, typer.Option(help="Read the dataset from <data-root>/<folder>, as the pipeline's data_root does (default: data).")] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", "-s", help="Override a recipe value, e.g. --set train.lr=1e-3 (repeatable).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda or auto (default: cuda when available).")] = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from <out>/checkpoint.pth when it exists.")] = True,
    track: Annotated[bool, typer.Option("--track/--no-track", help="Log to MLflow (rank 0).")] = True,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:////<repo>/mlflow.db).")] = None,
    run_name: Annotated[str | None, typer.Option(help="MLflow run name (default: 'train <recipe> <changed values>').")] = None,
    cpu_threads: Annotated[int, typer.Option(help="CPU intra-op threads (0: all cores); the pipeline pins 2 so results reproduce.")] = 0,
    cpu_isa: Annotated[str, typer.Option(help="CPU kernel instruction set: native, avx2, avx512 or default (the pipeline pins avx2).")] = "native",
    host_memory: Annotated[str, typer.Option(help=HOST_MEMORY_HELP)] = "keep",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Train RECIPE and write checkpoint.pth, best.pth, final.pth, metrics.json and log.csv to --out.

    Several GPUs: torchrun --standalone --nproc-per-node=4 -m hrseg.cli train RECIPE ...
    (batch size is per process; the schedule uses the real number of processes)."""
    setup_logging(verbose)
    with user_errors():
        set_host_memory(host_memory)  # checks the value
        pin_cpu_numerics(cpu_threads, parse_isa(cpu_isa))
        resolved = resolve_recipe(recipe, profile=profile, data_root=data_root, overrides=overrides or [], data_root_origin="--data-root")
        tracker = MlflowTracker(uri=tracking_uri, tags=profile_tags(profile), run_name=run_name or resolved.run_name("train")) if track else None
        from hrseg.engine.train import train  # torch only when the command runs (see the module docstring)

        train(resolved.recipe, out or Path("models") / resolved.recipe.name, resume=resume, device=device, tracker=tracker)
