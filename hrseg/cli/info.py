"""``hrseg info``: parameters and operation counts of a model at an input size."""

from __future__ import annotations

from typing import Annotated

import typer

from hrseg.cli._app import app, check_format, print_table, user_errors


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
    from hrseg.models import MODELS, parse_model_name
    from hrseg.models.complexity import count

    with user_errors():
        fmt = "json" if as_json else fmt
        check_format(fmt)
        names = models or sorted(MODELS)
        rows = []
        for name in names:
            backbone, head = parse_model_name(name)
            rows.append(count(backbone, head, num_classes, height, width).as_dict())
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
