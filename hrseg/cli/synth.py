"""``hrseg synth``: write miniature synthetic copies of the datasets (test data)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hrseg.cli._app import app, console, setup_logging, user_errors
from hrseg.data.synth import generate_synthetic


@app.command("synth")
def synth_cli(
    out: Annotated[Path, typer.Option("--out", help="Output directory; each dataset goes to OUT/<dataset>/.")],
    seed: Annotated[int, typer.Option(help="Random seed (same seed = byte-identical files).")] = 0,
    datasets: Annotated[
        list[str] | None,
        typer.Option("--datasets", "-d", help="Datasets to write (repeat or comma-separate): cityscapes, lip, pascal_ctx, cocostuff, ade20k, custom, custom_rgb. Default: all."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Write tiny synthetic datasets in the exact on-disk formats of the real ones.

    Run `hrseg prepare DATASET --root OUT/DATASET --out LISTS` on them like on real data.
    """
    setup_logging(verbose)
    names = [n.strip() for item in datasets for n in item.split(",") if n.strip()] if datasets else None
    with user_errors():
        report = generate_synthetic(out, seed=seed, datasets=names)
    for name, info in report.items():
        console.print(f"{name}: {info['files']} files, {info['bytes'] / 1e6:.2f} MB in {info['path']}", highlight=False)
