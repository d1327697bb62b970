"""``hrseg export``: a checkpoint (ours or an official one) to an ONNX model.

``hrseg.evaluation.export`` (and with it torch, about 2 s) is imported inside ``export_cli``,
once the options are parsed: ``hrseg export --help`` and typer's option errors then need no
torch. The ``--align-corners`` help comes from the torch-free ``hrseg.evaluation.options``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hrseg.cli._app import app, console, setup_logging, user_errors
from hrseg.evaluation.options import ALIGN_CORNERS_HELP


@app.command("export")
def export_cli(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", "-c", help="Checkpoint: an hrseg checkpoint or an official HRNet-Semantic-Segmentation .pth.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file, e.g. model.onnx.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="Export format (onnx).")] = "onnx",
    height: Annotated[int | None, typer.Option(help="Fixed input height (with --width). With --dynamic: only the example size.")] = None,
    width: Annotated[int | None, typer.Option(help="Fixed input width (with --height).")] = None,
    dynamic: Annotated[bool, typer.Option("--dynamic", help="Free batch, height and width (the default when no size is given).")] = False,
    aux: Annotated[bool, typer.Option("--aux", help="Also output the OCR auxiliary logits ('aux').")] = False,
    align_corners: Annotated[bool | None, typer.Option("--align-corners/--no-align-corners", help=ALIGN_CORNERS_HELP)] = None,
    opset: Annotated[int | None, typer.Option(help="ONNX opset (default: 17 torchscript, 18 dynamo).")] = None,
    exporter: Annotated[str, typer.Option(help="auto | torchscript | dynamo (auto = torchscript while torch ships it).")] = "auto",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Export a segmentation checkpoint to ONNX.

    The graph takes "image" (N x 3 x H x W float32, normalised) and returns "out" (logits at
    1/4 resolution) and, with --aux, "aux". Without --height/--width the size is dynamic.
    The log says which source decided align_corners (see --align-corners).
    """
    setup_logging(verbose)
    with user_errors():
        from hrseg.evaluation.export import export_checkpoint  # torch only when the command runs (see the module docstring)

        path = export_checkpoint(
            checkpoint,
            out,
            fmt=fmt,
            height=height,
            width=width,
            dynamic=dynamic,
            include_aux=aux,
            align_corners=align_corners,
            opset=opset,
            exporter=exporter,  # type: ignore[arg-type]
        )
    shape = "dynamic N x 3 x H x W" if dynamic or height is None else f"1 x 3 x {height} x {width}"
    console.print(f"wrote {path} ({fmt}, input {shape}, outputs: out{', aux' if aux else ''})", highlight=False)
