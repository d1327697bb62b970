"""``hrseg prepare``: verify a dataset and write its list files (what the DVC prepare stages run)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hrseg.cli._app import app, console, setup_logging, user_errors


@app.command("prepare")
def prepare_cli(
    dataset: Annotated[str, typer.Argument(help="cityscapes, lip, pascal_ctx (lists serve pascal_ctx and pascal_ctx60), cocostuff or ade20k.")],
    root: Annotated[Path, typer.Option("--root", help="The dataset as downloaded (see README 'Datasets' for each layout).")],
    out: Annotated[Path, typer.Option("--out", help="Directory for <split>.lst, summary.json (and PASCAL-Context label PNGs).")],
    workers: Annotated[int, typer.Option(help="Decoding threads (0: min(8, CPUs)).")] = 0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Check every image/label pair, then write the official-format list files.

    Nothing is written when a problem is found: all problems are reported together (the first
    20 listed) and the command exits with status 1.
    """
    from hrseg.data.prepare import prepare_dataset

    setup_logging(verbose)
    with user_errors():
        summary = prepare_dataset(dataset, root, out, workers=workers or None)
    table = Table(title=f"{dataset}: lists in {out}")
    for column in ("split", "samples", "image sizes", "label values"):
        table.add_column(column)
    for split, info in summary["splits"].items():
        sizes = ", ".join(f"{k} ({v})" for k, v in list(info["image_sizes"].items())[:3])
        if len(info["image_sizes"]) > 3:
            sizes += f", ... {len(info['image_sizes'])} sizes"
        values = info["label_values"]
        table.add_row(split, str(info["count"]), sizes, f"{len(values)} values" + (f" ({values[0]}..{values[-1]})" if values else ""))
    console.print(table)
