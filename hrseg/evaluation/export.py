"""ONNX export of HRNetV2 FCN and OCR models.

The exported graph has one input ``image`` (N x 3 x H x W, float32, normalised like the
training images) and the outputs ``out`` (main logits at 1/4 resolution) and optionally ``aux``
(the OCR soft-object-region logits). With ``dynamic=True`` batch, height and width are free:
every resize inside the model is exported against the runtime shapes, so any input size the
PyTorch model accepts gives the same result.

Two exporters are available in torch 2.x (``exporter=``):

``torchscript``  the tracing exporter (``torch.onnx.export(dynamo=False)``); about 25x faster
                 to export here and exact (max |ORT - PyTorch| ~ 1e-7 on the parity fixture).
``dynamo``       the ``torch.export``-based exporter (torch's default since 2.9, needs
                 onnxscript); equally exact, slower to export.
``auto``         ``torchscript`` while torch still ships it, else ``dynamo``.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from hrseg.errors import HrsegError
from hrseg.evaluation.alignment import decide_align_corners
from hrseg.io import write_bytes
from hrseg.models import build_model_from_config
from hrseg.models.checkpoint import load_checkpoint, model_config_from_file
from hrseg.runtime.distributed import unwrap_model

log = logging.getLogger(__name__)

Exporter = Literal["auto", "torchscript", "dynamo"]
EXPORTERS = ("auto", "torchscript", "dynamo")
#: Default opsets: 17 for the tracing exporter, 18 (its minimum) for the dynamo exporter.
DEFAULT_OPSET = {"torchscript": 17, "dynamo": 18}
#: Bilinear resizing with align_corners needs ONNX Resize (opset 11); the dynamo exporter starts at 18.
MIN_OPSET = {"torchscript": 11, "dynamo": 18}
MIN_SIZE = 32  # one pixel in the stride-32 branch


class ExportError(HrsegError):
    """The model or the export options are not valid."""


class _OnnxOutputs(nn.Module):
    """Dict outputs -> a tuple in a fixed order (ONNX graphs have positional outputs). Carries
    the wrapped model's ``align_corners``."""

    def __init__(self, model: nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.names = names
        self.align_corners = getattr(model, "align_corners", None)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(image)
        return tuple(outputs[name] for name in self.names)


def _has_torchscript_exporter() -> bool:
    """torch still ships the tracing exporter (deprecated since 2.9, still present in 2.14)."""
    try:
        import torch.onnx.utils as onnx_utils
    except ImportError:
        return False
    return hasattr(onnx_utils, "export")


def resolve_exporter(exporter: str) -> str:
    if exporter not in EXPORTERS:
        raise ExportError(f"unknown ONNX exporter {exporter!r}; valid: {', '.join(EXPORTERS)}")
    if exporter == "auto":
        return "torchscript" if _has_torchscript_exporter() else "dynamo"
    return exporter


def export_onnx(
    model: nn.Module,
    out_path: str | os.PathLike,
    *,
    height: int,
    width: int,
    dynamic: bool = True,
    include_aux: bool = False,
    opset: int | None = None,
    exporter: Exporter = "auto",
) -> Path:
    """Export ``model`` (an FCN or OCR model from ``hrseg.models``) to ``out_path``.

    ``height`` x ``width`` is the example input size; with ``dynamic=False`` it is also the
    only size the graph accepts (batch 1). ``include_aux`` adds the OCR ``aux`` output. The
    file is written atomically; ``model`` is not modified (an eval-mode copy is exported)."""
    out_path = Path(out_path)
    if height < MIN_SIZE or width < MIN_SIZE:
        raise ExportError(f"export size {height}x{width} is too small; height and width must be >= {MIN_SIZE}")
    if out_path.exists() and out_path.is_dir():
        raise ExportError(f"{out_path}: is a directory, expected an .onnx file path")
    base = unwrap_model(model)
    head = getattr(base, "head_name", None)
    if include_aux and head != "ocr":
        raise ExportError(f"include_aux: the {head or type(base).__name__} model has no 'aux' output (only OCR models do)")
    names = ("out", "aux") if include_aux else ("out",)
    chosen = resolve_exporter(exporter)
    opset = opset or DEFAULT_OPSET[chosen]
    if opset < MIN_OPSET[chosen]:
        raise ExportError(f"the {chosen} exporter needs opset >= {MIN_OPSET[chosen]}, got opset {opset}")

    wrapper = _OnnxOutputs(copy.deepcopy(base).float().cpu().eval(), names).eval()
    # A batch of 2 keeps torch.export from specialising the batch dimension to 1.
    batch = 2 if dynamic and chosen == "dynamo" else 1
    example = torch.randn(batch, 3, height, width, dtype=torch.float32)

    with tempfile.TemporaryDirectory(prefix="hrseg-export-") as tmp:
        tmp_file = Path(tmp) / "model.onnx"
        export = _export_torchscript if chosen == "torchscript" else _export_dynamo
        try:
            export(wrapper, example, tmp_file, names, dynamic, opset)
        except HrsegError:
            raise
        except Exception as exc:  # the exporters raise many types; name the export that failed
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExportError(f"{chosen} ONNX export of {type(base).__name__} to {out_path} failed (opset {opset}): {first}") from exc
        _check_single_file(tmp_file)
        write_bytes(out_path, tmp_file.read_bytes())
    log.info("exported %s (%s exporter, opset %d, %s) to %s", type(base).__name__, chosen, opset,
             "dynamic N x 3 x H x W" if dynamic else f"fixed 1 x 3 x {height} x {width}", out_path)
    return out_path


def _export_torchscript(wrapper: nn.Module, example: torch.Tensor, path: Path, names: tuple[str, ...], dynamic: bool, opset: int) -> None:
    axes = None
    if dynamic:
        axes = {"image": {0: "batch", 2: "height", 3: "width"}}
        axes.update({name: {0: "batch", 2: "out_height", 3: "out_width"} for name in names})
    with warnings.catch_warnings():
        # We choose the tracing exporter on purpose (see the module docstring).
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            wrapper,
            (example,),
            str(path),
            dynamo=False,
            input_names=["image"],
            output_names=list(names),
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
        )


def _export_dynamo(wrapper: nn.Module, example: torch.Tensor, path: Path, names: tuple[str, ...], dynamic: bool, opset: int) -> None:
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        raise ExportError("the dynamo ONNX exporter needs onnxscript; pip install 'hrseg[onnx]' or use exporter='torchscript'") from None
    shapes = None
    if dynamic:
        dim = torch.export.Dim
        # min 33: torch.export guards that the stride-32 branch is wider than one pixel (the
        # exported graph still runs at 32, checked in tests/test_export.py).
        low = MIN_SIZE + 1
        shapes = ({0: dim("batch", min=1, max=1024), 2: dim("height", min=low, max=16384), 3: dim("width", min=low, max=16384)},)
    torch.onnx.export(
        wrapper,
        (example,),
        str(path),
        dynamo=True,
        input_names=["image"],
        output_names=list(names),
        dynamic_shapes=shapes,
        opset_version=opset,
        optimize=True,
        external_data=False,
        verbose=False,
    )


def _check_single_file(path: Path) -> None:
    """Single-file models only (ours are far below ONNX's 2 GB protobuf limit): a side file
    would be lost by the atomic rename, so we say so rather than write a broken export."""
    extra = [p.name for p in path.parent.iterdir() if p != path]
    if extra:
        raise ExportError(f"the ONNX exporter wrote external data files ({', '.join(extra)}); hrseg exports single-file models only")


FORMATS = ("onnx",)
#: Example input size for dynamic exports when none is given (any size works at run time).
DEFAULT_EXAMPLE_SIZE = (256, 512)


def export_checkpoint(
    checkpoint: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    fmt: str = "onnx",
    height: int | None = None,
    width: int | None = None,
    dynamic: bool = False,
    include_aux: bool = False,
    align_corners: bool | None = None,
    opset: int | None = None,
    exporter: Exporter = "auto",
) -> Path:
    """Build the model a checkpoint describes (ours or an official one), load it strictly and
    export it.

    Size rules: ``height`` and ``width`` alone give a fixed-size graph; ``dynamic=True`` keeps
    batch, height and width free (``height`` x ``width`` then only sets the example input,
    default ``DEFAULT_EXAMPLE_SIZE``); with neither, the export is dynamic. ``align_corners``
    is the user's ``--align-corners/--no-align-corners``; without it, the value stored in our
    checkpoint or the weight catalogue's for an official file is used, and an unknown official
    file is refused (``hrseg.evaluation.alignment``)."""
    if fmt not in FORMATS:
        raise ExportError(f"unsupported export format {fmt!r}; valid: {', '.join(FORMATS)}")
    if (height is None) != (width is None):
        raise ExportError(f"give both --height and --width (got height={height}, width={width}), or --dynamic")
    if height is None or width is None:
        dynamic = True
        height, width = DEFAULT_EXAMPLE_SIZE
    decided = decide_align_corners(checkpoint, flag=align_corners)
    config, kind = model_config_from_file(checkpoint, align_corners=decided.value)
    model = build_model_from_config(config)
    report = load_checkpoint(model, checkpoint)
    log.info("%s", report.summary())
    log.info("model %s, %d classes, %s checkpoint", config.name, config.num_classes, kind)
    return export_onnx(model, out_path, height=height, width=width, dynamic=dynamic, include_aux=include_aux, opset=opset, exporter=exporter)
