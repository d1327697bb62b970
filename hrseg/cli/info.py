"""``hrseg info``: parameters and operation counts of a model at an input size.

Answered from the shipped table (``hrseg.complexity_table``, no torch: well under a second)
wherever it can; other sizes and unknown names are counted live by ``hrseg.models.complexity``.
"""

from __future__ import annotations

import importlib
from typing import Annotated

import typer

from hrseg.cli._app import app, check_format, print_table, user_errors
from hrseg.complexity_table import Complexity, ComplexityTable, read_table


def complexity(table: ComplexityTable, name: str, num_classes: int, height: int, width: int) -> Complexity:
    """From the table, else a live count (an unknown name gets the live path's error)."""
    found = table.lookup(name, num_classes, height, width)
    if found is not None:
        return found
    # Imported here, not at the top: hrseg.models.complexity imports torch (about 2 s), which only the
    # sizes and names the table cannot answer need.
    live = importlib.import_module("hrseg.models.complexity")
    return live.count_named(name, num_classes, height, width)


@app.command("info")
def info_cli(
    models: Annotated[list[str] | None, typer.Argument(help="Model names such as hrnetv2_w48_ocr or hrnetv2_w48 (= FCN head); default: all.")] = None,
    height: Annotated[int, typer.Option(help="Input height.")] = 1024,
    width: Annotated[int, typer.Option(help="Input width.")] = 2048,
    num_classes: Annotated[int, typer.Option("--num-classes", "-k", help="Number of classes.")] = 19,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table (plain text when piped), tsv or json.")] = "table",
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
) -> None:
    """Print parameters, multiply-adds and FLOPs.

    "GFLOPs (official)" is the unit of the official README: convolution multiply-adds / 2^30.
    "GMACs" counts convolution and matmul multiply-adds in 1e9 units; true "GFLOPs" is twice that.
    """
    with user_errors():
        fmt = "json" if as_json else fmt
        check_format(fmt)
        table = read_table()
        rows = [complexity(table, name, num_classes, height, width).as_dict() for name in models or table.model_names()]
    cells = [[r["model"], f"{r['params_m']:.2f}", f"{r['official_gflops']:.1f}", f"{r['gmacs']:.1f}", f"{r['gflops']:.1f}"] for r in rows]
    print_table(
        ["model", "params (M)", "official", "GMACs", "GFLOPs"],
        cells,
        fmt=fmt,
        right=("params (M)", "official", "GMACs", "GFLOPs"),
        title=f"{height}x{width} input, {num_classes} classes, batch 1",
        caption="official = conv multiply-adds / 2^30 (the official README's 'GFLOPs'); "
        "GMACs = conv + matmul multiply-adds / 1e9; GFLOPs = 2 x GMACs",
        records=rows,
    )
