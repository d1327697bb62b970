"""Parameter and operation counts, in the official README's unit and in true FLOPs.

The official README's "GFLOPs" are convolution multiply-adds divided by 2^30 (their
``modelsummary.py``). We count multiply-adds with a ``TorchFunctionMode`` that sees every
``conv2d`` / ``matmul`` / ``linear`` call and reads the sizes off its output (the same formulas
as ``torch.utils.flop_counter``, which counts 2 FLOPs per multiply-add; that module is not used
because entering it imports ``torch._dynamo``, about 3 s).

``count()`` does not run the model at the requested size. In HRNet every feature map of a
(H, W) input whose sides are multiples of 32 is exactly (H / 2^l, W / 2^l); the only maps that do
not scale are the OCR object regions (K x 1). So each count is ``a * H * W + b`` exactly, and two
forward passes on tiny inputs (32x32 and 64x32) give ``a`` and ``b``; a third (64x64) checks
the fit. Other sizes, or a model that fails the check, run one forward pass at the real size
(on the meta device for other sizes: exact, but a few seconds, as meta kernels import
``torch._dynamo``).

``complexity_table()`` turns the same exact fits into the table ``hrseg info`` reads without
torch (``hrseg.complexity_table``); ``python -m hrseg.models.complexity`` rewrites that file.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from hrseg import io as hio
from hrseg.complexity_table import COUNTS, EXACT_MULTIPLE, TABLE_FILE, Complexity
from hrseg.errors import HrsegError
from hrseg.models.config import HRNET_CONFIGS
from hrseg.models.segmentation import MODELS, build_model, parse_model_name

_PROBES = ((32, 32), (64, 32), (64, 64))
#: Class counts the shipped table is fitted on (the first two) and checked on (the rest).
TABLE_CLASS_COUNTS = (19, 150, 60)


_CONVS = {torch.conv1d, torch.conv2d, torch.conv3d, torch.nn.functional.conv1d, torch.nn.functional.conv2d, torch.nn.functional.conv3d}
_MATMULS = {torch.matmul, torch.mm, torch.bmm, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.Tensor.mm, torch.Tensor.bmm}


class MacCounter(TorchFunctionMode):
    """Counts multiply-adds of convolutions and matrix products while active.

    Convolution: output elements x (input channels / groups) x kernel size; matmul: output
    elements x the contracted size; ``F.linear``: output elements x input features."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = 0
        self.matmul = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in _CONVS:
            weight = args[1] if len(args) > 1 else kwargs["weight"]
            self.conv += out.numel() * weight[0].numel()
        elif func in _MATMULS:
            self.matmul += out.numel() * args[0].shape[-1]
        elif func is torch.nn.functional.linear:
            self.matmul += out.numel() * args[0].shape[-1]
        return out


def _macs(model: torch.nn.Module, height: int, width: int, device: torch.device) -> tuple[int, int]:
    counter = MacCounter()
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, height, width, device=device))
    return counter.conv, counter.matmul


def count_model(model: torch.nn.Module, height: int, width: int, name: str = "") -> Complexity:
    """Count ``model`` on a (1, 3, height, width) input by running it there. The model may live
    on any device; a meta-device model costs no memory."""
    device = next(model.parameters()).device
    params = sum(p.numel() for p in model.parameters())
    was_training = model.training
    model.eval()
    try:
        conv, matmul = _macs(model, height, width, device)
    finally:
        model.train(was_training)
    return Complexity(name or type(model).__name__, height, width, params, conv, matmul)


def _probe_fit(model: torch.nn.Module) -> list[tuple[Fraction, Fraction]] | None:
    """(multiply-adds per input pixel, fixed multiply-adds) of the convolutions and of the
    matmuls, from two tiny passes, or None when the third pass disagrees with the fit.
    Zeroes the model's weights."""
    with torch.no_grad():  # all-zero activations: the official N(0, 0.001^2) weights make denormals, 10x slower on CPU
        for tensor in model.parameters():
            tensor.zero_()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny passes: threads only add waiting (several seconds on a busy 2-core machine)
    try:
        probes = [(h * w, _macs(model, h, w, torch.device("cpu"))) for h, w in _PROBES]
    finally:
        torch.set_num_threads(threads)
    (area1, first), (area2, second) = probes[:2]
    fit = []
    for i in range(len(COUNTS)):
        slope = Fraction(second[i] - first[i], area2 - area1)  # per input pixel; lower branches make it fractional
        fit.append((slope, first[i] - slope * area1))
    # the third probe checks the assumption
    if any(slope * area + fixed != macs[i] for area, macs in probes[2:] for i, (slope, fixed) in enumerate(fit)):
        return None
    return fit


def count(backbone: str, head: str, num_classes: int = 19, height: int = 1024, width: int = 2048, **kwargs) -> Complexity:
    """Parameters and multiply-adds of ``build_model(backbone, head, num_classes, **kwargs)``
    on one ``height`` x ``width`` image (see the module docstring for how)."""
    name = f"{backbone}_{head}"
    if height % EXACT_MULTIPLE or width % EXACT_MULTIPLE:
        with torch.device("meta"):
            model = build_model(backbone, head, num_classes, **kwargs)
        return count_model(model, height, width, name=name)
    model = build_model(backbone, head, num_classes, **kwargs).eval()
    params = sum(p.numel() for p in model.parameters())
    fit = _probe_fit(model)
    if fit is None:  # a model that breaks the assumption is counted directly
        return count_model(model, height, width, name=name)
    conv, matmul = (slope * height * width + fixed for slope, fixed in fit)
    if conv.denominator != 1 or matmul.denominator != 1:
        return count_model(model, height, width, name=name)
    return Complexity(name, height, width, params, int(conv), int(matmul))


def count_named(name: str, num_classes: int = 19, height: int = 1024, width: int = 2048) -> Complexity:
    """``count`` of a model name: ``hrnetv2_w48_ocr``, or a bare backbone name (FCN head)."""
    backbone, head = parse_model_name(name)
    return count(backbone, head, num_classes, height, width)


def _integer(value: Fraction, what: str) -> int:
    if value.denominator != 1:
        raise HrsegError(f"{what} is {value}, not an integer: the exact form of hrseg.complexity_table does not hold")
    return int(value)


def _table_entry(name: str, class_counts: Sequence[int]) -> dict[str, Any]:
    """One model's entry of the table: every count fitted on the first two class counts, checked on the others."""
    backbone, head = parse_model_name(name)
    rows = []  # per class count: params, then (per block, fixed) of each count
    for k in class_counts:
        model = build_model(backbone, head, k).eval()
        params = sum(p.numel() for p in model.parameters())
        fit = _probe_fit(model)
        if fit is None:
            raise HrsegError(f"{name} with {k} classes: counts are not affine in the input area; it cannot be in the table")
        rows.append([params, *(value for slope, fixed in fit for value in (slope * EXACT_MULTIPLE**2, fixed))])
    (k1, first), (k2, second) = zip(class_counts[:2], rows[:2])
    linear = []
    for i, what in enumerate(["params", *(f"{c} {part}" for c in COUNTS for part in ("per block", "fixed"))]):
        per_class = Fraction(second[i] - first[i], k2 - k1)
        linear.append((_integer(first[i] - per_class * k1, f"{name}: {what} at 0 classes"), _integer(per_class, f"{name}: {what} per class")))
    for k, row in zip(class_counts[2:], rows[2:]):
        for i, (base, per_class) in enumerate(linear):
            if base + per_class * k != row[i]:
                raise HrsegError(f"{name}: counts are not linear in the number of classes (checked at {k}); it cannot be in the table")
    entry: dict[str, Any] = {"params": list(linear[0])}
    for j, c in enumerate(COUNTS):
        entry[c] = {"per_block": list(linear[1 + 2 * j]), "fixed": list(linear[2 + 2 * j])}
    return entry


def complexity_table(class_counts: Sequence[int] = TABLE_CLASS_COUNTS) -> dict[str, Any]:
    """The content of ``hrseg/complexity_table.json``: every model of ``MODELS`` counted with torch
    at each class count (at least two; the first two fix each line, the others check it)."""
    if len(set(class_counts)) < 2:
        raise HrsegError(f"class counts {list(class_counts)}: need at least two different ones")
    return {
        "about": "Exact parameter and multiply-add counts per model; format in hrseg/complexity_table.py. "
        "Generated by `python -m hrseg.models.complexity`, checked by tests/models/test_complexity.py.",
        "backbones": sorted(HRNET_CONFIGS),
        "models": {name: _table_entry(name, class_counts) for name in sorted(MODELS)},
    }


def write_complexity_table(path: Path = TABLE_FILE) -> Path:
    hio.write_json(path, complexity_table())
    return path


if __name__ == "__main__":
    print(f"wrote {write_complexity_table()}")
