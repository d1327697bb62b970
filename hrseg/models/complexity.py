"""Parameter and operation counts, in the official README's unit and in true FLOPs.

The official README's "GFLOPs" are convolution multiply-adds divided by 2^30 (their
``modelsummary.py``). ``torch.utils.flop_counter.FlopCounterMode`` counts 2 FLOPs per
multiply-add for convolutions and matrix products; we run it on the meta device, so counting a
1024x2048 forward of W48 costs no memory and no time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from hrseg.models.segmentation import build_model


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


def count_model(model: torch.nn.Module, height: int, width: int, name: str = "") -> Complexity:
    """Count ``model`` on a (1, 3, height, width) input. The model may live on any device;
    a meta-device model counts instantly."""
    device = next(model.parameters()).device
    params = sum(p.numel() for p in model.parameters())
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.empty(1, 3, height, width, device=device))
    model.train(was_training)
    totals = counter.get_flop_counts()["Global"]
    conv = sum(v for op, v in totals.items() if "convolution" in str(op))
    matmul = sum(v for op, v in totals.items() if "convolution" not in str(op))
    return Complexity(name or type(model).__name__, height, width, params, conv // 2, matmul // 2)


def count(backbone: str, head: str, num_classes: int = 19, height: int = 1024, width: int = 2048, **kwargs) -> Complexity:
    with torch.device("meta"):
        model = build_model(backbone, head, num_classes, **kwargs)
    return count_model(model, height, width, name=f"{backbone}_{head}")
