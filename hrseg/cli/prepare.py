"""``hrseg prepare``: verify a dataset and write its list files (what the DVC prepare stages run)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hrseg.cli._app import app, console, setup_logging, user_errors
from hrseg.data.custom import weights_override
from hrseg.data.errors import DatasetError
from hrseg.data.prepare import prepare_dataset


@app.command("prepare")
def prepare_cli(
    dataset: Annotated[str, typer.Argument(help="cityscapes, lip, pascal_ctx (lists serve pascal_ctx and pascal_ctx60), cocostuff, ade20k or custom (your own).")],
    root: Annotated[Path, typer.Option("--root", help="The dataset as downloaded (see README 'Datasets' for each layout).")],
    out: Annotated[Path | None, typer.Option("--out", help="Directory for <split>.lst, summary.json (and PASCAL-Context label PNGs). custom: default <root>/lists.")] = None,
    workers: Annotated[int, typer.Option(help="Decoding threads (0: min(8, CPUs)).")] = 0,
    classes: Annotated[Path | None, typer.Option("--classes", help="custom: the classes file (default <root>/classes.yaml).")] = None,
    class_weights: Annotated[str | None, typer.Option("--class-weights", help="custom: also compute class weights, inverse or median (frequency balancing).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Check every image/label pair, then write the official-format list files.

    Nothing is written when a problem is found: all problems are reported together (the first
    20 listed) and the command exits with status 1.
    """
    setup_logging(verbose)
    with user_errors():
        if out is None and dataset != "custom":
            raise DatasetError(f"--out is required for {dataset} (only custom defaults it, to <root>/lists)")
        out = out if out is not None else root / "lists"
        summary = prepare_dataset(dataset, root, out, workers=workers or None, classes=classes, class_weights=class_weights)
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
    if dataset == "custom":
        _print_class_table(summary)


def _print_class_table(summary: dict) -> None:
    """Per-class pixel frequencies of the train split (and the weights when computed)."""
    weights = (summary.get("class_weights") or {}).get("weights")
    table = Table(title=f"classes (train split){': ' + summary['class_weights']['method'] + ' weights' if weights else ''}")
    for column in ("index", "class", "pixels", "frequency") + (("weight",) if weights else ()):
        table.add_column(column, justify="left" if column == "class" else "right")
    pixels = summary["splits"]["train"]["class_pixels"]
    for i, (name, freq) in enumerate(zip(summary["classes"], summary["class_frequencies"])):
        table.add_row(str(i), name, str(pixels[i]), f"{freq:.4f}", *([f"{weights[i]:.4f}"] if weights else []))
    console.print(table)
    if summary["absent_classes"]:
        console.print(f"[yellow]no train pixel:[/] {', '.join(summary['absent_classes'])}", highlight=False)
    if weights:
        console.print(f"recipe: --set '{weights_override(summary)}' ({summary['class_weights']['formula']})", highlight=False, soft_wrap=True)
