"""``hrseg predict``: segment an image or a folder of images.

``hrseg.evaluation.predict`` (and with it torch, about 2 s) is imported inside ``predict_cli``,
once the options are parsed and checked: ``hrseg predict --help``, typer's option errors and a
bad ``--scales`` then need no torch. The option texts and ``--scales``' parser come from the
torch-free ``hrseg.evaluation.options``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hrseg.cli._app import app, console, err_console, setup_logging, user_errors
from hrseg.errors import HrsegError
from hrseg.evaluation.options import ALIGN_CORNERS_HELP, parse_scales
from hrseg.recipe import load_recipe
from hrseg.runtime import HOST_MEMORY_HELP, set_host_memory

#: Exit status when some images could not be read or segmented (the others were written).
EXIT_SOME_FAILED = 2


@app.command("predict")
def predict_cli(
    inputs: Annotated[Path, typer.Argument(help="An image file or a folder (searched recursively).")],
    checkpoint: Annotated[Path, typer.Option("--checkpoint", "-c", help="hrseg checkpoint or released official .pth file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory for label PNGs and overlays/.")],
    recipe: Annotated[str | None, typer.Option(help="Recipe name or YAML: model, dataset and test sizing.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Dataset name (palette, classes; test sizes from params/full/<dataset>_hrnet.yaml) when no recipe is given.")] = None,
    scales: Annotated[str | None, typer.Option(help="Test scales, comma-separated (default: the recipe's, else 1.0).")] = None,
    flip: Annotated[bool | None, typer.Option("--flip/--no-flip", help="Average with the mirrored image.")] = None,
    align_corners: Annotated[bool | None, typer.Option("--align-corners/--no-align-corners", help=ALIGN_CORNERS_HELP)] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", "-s", help="Override a recipe value (with --recipe), e.g. --set eval.batch_size=2.")] = None,
    batch: Annotated[int | None, typer.Option(help="Network inputs per forward pass, mirrored copies and windows included (default: the recipe's eval.batch_size, 1 = the official order, bit-exact; 2+ is faster on GPUs).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda or auto (default: cuda when available).")] = None,
    path: Annotated[str, typer.Option(help="Inference path: auto (default), eager, channels_last, folded, folded_cl, winograd (CPU), onnx, cuda_fp16, cuda_bf16.")] = "auto",
    overlays: Annotated[bool, typer.Option("--overlays/--no-overlays", help="Also write overlays/<name>.png.")] = True,
    workers: Annotated[int, typer.Option(help="Image-reading worker processes.")] = 2,
    host_memory: Annotated[str, typer.Option(help=HOST_MEMORY_HELP)] = "keep",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Write a palettised label PNG (pixel value = class index) and an overlay per image.

    Unreadable images are reported and skipped; the exit status is then 2. The log says which
    source decided align_corners (see --align-corners)."""
    setup_logging(verbose)
    with user_errors():
        set_host_memory(host_memory)  # checks the value
        if overrides and recipe is None:
            raise HrsegError("--set needs --recipe")
        resolved = load_recipe(recipe, overrides or []) if recipe is not None else None
        test_scales = parse_scales(scales) if scales is not None else None
        from hrseg.evaluation.predict import predict  # torch only when the command runs (see the module docstring)

        report = predict(
            inputs,
            checkpoint,
            out,
            recipe=resolved,
            dataset=dataset,
            scales=test_scales,
            flip=flip,
            batch_size=batch,
            align_corners=align_corners,
            device=device,
            path=path,
            overlays=overlays,
            workers=workers,
        )
    console.print(f"{len(report.written)} prediction(s) -> {out}", highlight=False)
    if report.failed:
        err_console.print(f"[bold red]{len(report.failed)} image(s) failed:[/]", highlight=False)
        for source, reason in report.failed:
            err_console.print(f"  {source}: {reason}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_SOME_FAILED)
