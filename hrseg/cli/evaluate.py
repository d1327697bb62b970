"""``hrseg evaluate``: the official test protocol (multi-scale, flip, sliding windows) on a split.

``hrseg.evaluation.evaluate`` (and with it torch, about 2 s) is imported inside ``evaluate_cli``,
once the options are parsed: ``hrseg evaluate --help`` and typer's option errors then need no
torch. The option texts and ``--scales``' parser come from the torch-free
``hrseg.evaluation.options``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hrseg.cli._app import app, console, setup_logging, user_errors
from hrseg.evaluation.options import ALIGN_CORNERS_HELP, parse_scales
from hrseg.recipe import DEFAULT_PROFILE, resolve_recipe
from hrseg.runtime import HOST_MEMORY_HELP, parse_isa, pin_cpu_numerics, set_host_memory
from hrseg.runtime.tracker import profile_tags
from hrseg.tracking.tracker import MlflowTracker


@app.command("evaluate")
def evaluate_cli(
    recipe: Annotated[str, typer.Argument(help="Recipe name (params/<profile>/<name>.yaml) or path to a recipe YAML.")],
    checkpoint: Annotated[Path, typer.Option("--checkpoint", "-c", help="hrseg checkpoint or released official .pth file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory (metrics.json, per_class.csv, pictures).")],
    scales: Annotated[str | None, typer.Option(help="Test scales, comma-separated, e.g. 0.5,0.75,1.0,1.25,1.5,1.75 (default: the recipe's).")] = None,
    flip: Annotated[bool | None, typer.Option("--flip/--no-flip", help="Average with the mirrored image (default: the recipe's).")] = None,
    split: Annotated[str | None, typer.Option(help="List file <lists>/<split>.lst to evaluate (default: the recipe's eval.split).")] = None,
    profile: Annotated[str, typer.Option(help="Recipe folder params/<profile>/: full (official recipes) or embedded (the pipeline's default); also the MLflow tag hrseg.profile.")] = DEFAULT_PROFILE,
    data_root: Annotated[str | None, typer.Option(help="Read the dataset from <data-root>/<folder>, as the pipeline's data_root does (default: data).")] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", "-s", help="Override a recipe value, e.g. --set eval.ade20k_pad_quirk=true (repeatable).")] = None,
    batch: Annotated[int | None, typer.Option(help="Network inputs per forward pass, mirrored copies and windows included (default: the recipe's eval.batch_size, 1 = the official order, bit-exact; 2+ is faster on GPUs, and on CPUs for small windows: the embedded recipes use 8).")] = None,
    align_corners: Annotated[bool | None, typer.Option("--align-corners/--no-align-corners", help=ALIGN_CORNERS_HELP)] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda or auto (default: cuda when available).")] = None,
    path: Annotated[str, typer.Option(help="Inference path: auto (default: fastest within float32 tolerance), eager (bit-exact official arithmetic), channels_last, folded, folded_cl, winograd (CPU), onnx, cuda_fp16, cuda_bf16.")] = "auto",
    num_samples: Annotated[int | None, typer.Option(help="Evaluate only the first N images of the list.")] = None,
    overlays: Annotated[int | None, typer.Option(help="Number of overlay pictures (default: the recipe's eval.num_overlays).")] = None,
    save_predictions: Annotated[bool, typer.Option("--save-predictions", help="Also write predictions/<name>.png for labelled splits.")] = False,
    track: Annotated[bool, typer.Option("--track/--no-track", help="Log to MLflow (rank 0).")] = True,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:////<repo>/mlflow.db).")] = None,
    run_name: Annotated[str | None, typer.Option(help="MLflow run name (default: 'eval <recipe> <checkpoint> <protocol>').")] = None,
    cpu_threads: Annotated[int, typer.Option(help="CPU intra-op threads (0: all cores); the pipeline pins 2 so results reproduce.")] = 0,
    cpu_isa: Annotated[str, typer.Option(help="CPU kernel instruction set: native, avx2, avx512 or default (the pipeline pins avx2).")] = "native",
    host_memory: Annotated[str, typer.Option(help=HOST_MEMORY_HELP)] = "keep",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Evaluate CHECKPOINT with the official test protocol and write the results to --out.

    Writes metrics.json, per_class.csv, confusion_matrix.png and overlays/ (unlabelled test
    splits: test_results/<name>.png, for Cityscapes submission-ready labelId PNGs).

    Several GPUs or processes: torchrun --standalone --nproc-per-node=4 -m hrseg.cli evaluate ...
    (each process evaluates every 4th image; the confusion matrices are summed). The log says
    which source decided align_corners (see --align-corners)."""
    setup_logging(verbose)
    with user_errors():
        set_host_memory(host_memory)  # checks the value
        pin_cpu_numerics(cpu_threads, parse_isa(cpu_isa))
        resolved = resolve_recipe(recipe, profile=profile, data_root=data_root, overrides=overrides or [], data_root_origin="--data-root").recipe
        tracker = MlflowTracker(uri=tracking_uri, tags=profile_tags(profile), run_name=run_name) if track else None
        test_scales = parse_scales(scales) if scales is not None else None
        from hrseg.evaluation.evaluate import evaluate  # torch only when the command runs (see the module docstring)

        result = evaluate(
            resolved,
            checkpoint,
            out,
            scales=test_scales,
            flip=flip,
            split=split,
            batch_size=batch,
            align_corners=align_corners,
            device=device,
            path=path,
            num_samples=num_samples,
            num_overlays=overlays,
            save_predictions=save_predictions,
            tracker=tracker,
        )
    if "miou" in result:
        nan_mean = "n/a" if result["miou_nan"] is None else f"{100 * result['miou_nan']:.2f}"
        console.print(
            f"mIoU {100 * result['miou']:.2f}  (nan-mean {nan_mean})  "
            f"pixel acc {100 * result['pixel_acc']:.2f}  mean acc {100 * result['mean_acc']:.2f}  "
            f"[{result['num_images']} images] -> {out}",
            highlight=False,
        )
    else:
        console.print(f"{result['num_images']} test predictions -> {out / 'test_results'}", highlight=False)
