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
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import torch
from torch.overrides import TorchFunctionMode

from hrseg.models.segmentation import build_model

#: Every HRNet feature map is exactly 1/2^l of the input when both sides are multiples of this.
EXACT_MULTIPLE = 32
_PROBES = ((32, 32), (64, 32), (64, 64))


@dataclass(frozen=True)
class Complexity:
    name: str
    height: int
    width: int
    params: int
    conv_macs: int  # multiply-adds of all convolutions, one image
    matmul_macs: int  # multiply-adds of matrix products (the OCR attention)

    @property
    def official_gflops(self) -> float:
        """The official README's unit: conv multiply-adds / 2^30."""
        return self.conv_macs / 2**30

    @property
    def gmacs(self) -> float:
        return (self.conv_macs + self.matmul_macs) / 1e9

    @property
    def gflops(self) -> float:
        """True FLOPs (2 per multiply-add, convolutions + matmuls), in 1e9 units."""
        return 2 * (self.conv_macs + self.matmul_macs) / 1e9

    def as_dict(self) -> dict[str, float | int | str]:
        return {
            "model": self.name,
            "input": f"{self.height}x{self.width}",
            "params": self.params,
            "params_m": round(self.params / 1e6, 2),
            "official_gflops": round(self.official_gflops, 1),
            "gmacs": round(self.gmacs, 1),
            "gflops": round(self.gflops, 1),
        }


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

    def affine(index: int, area: int) -> Fraction:
        slope = Fraction(second[index] - first[index], area2 - area1)  # per input pixel; lower branches make it fractional
        return first[index] + slope * (area - area1)

    # the third probe checks the assumption; a model that breaks it is counted directly
    if any(affine(i, area) != macs[i] for area, macs in probes[2:] for i in range(2)):
        return count_model(model, height, width, name=name)
    conv, matmul = (affine(i, height * width) for i in range(2))
    if conv.denominator != 1 or matmul.denominator != 1:
        return count_model(model, height, width, name=name)
    return Complexity(name, height, width, params, int(conv), int(matmul))
