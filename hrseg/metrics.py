"""Segmentation metrics from a confusion matrix (official testval arithmetic).

``ConfusionMatrix`` counts ``(label, prediction)`` pairs in an int64 ``K x K`` matrix
(rows = ground truth, columns = prediction), exactly like the official
``get_confusion_matrix``: pixels whose label equals ``ignore_label`` or lies outside
``[0, K)`` are dropped. ``compute()`` derives (official.md section 7):

- ``iou[c] = TP_c / max(1, GT_c + Pred_c - TP_c)``;
- ``miou``: the official plain mean over **all** K classes (a class absent from both the
  ground truth and the prediction counts as IoU 0);
- ``miou_nan``: the mean over classes present in the ground truth or the prediction (the
  "nan-mean" most other tools report; NaN when no class is present);
- ``miou_gt``: the mean over classes present in the ground truth (what a small evaluation
  set that lacks most classes can say; NaN when no labelled pixel was counted);
- ``pixel_acc = sum(TP) / sum(GT)`` and ``mean_acc = mean(TP_c / max(1, GT_c))``.

Under ``torchrun`` every rank counts its own images and ``all_reduce()`` sums the
matrices once (counts are integers, so the sum is exact and order-independent).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from hrseg.errors import HrsegError


class MetricsError(HrsegError):
    """Predictions and labels that cannot be compared."""


class ConfusionMatrix:
    """An int64 ``num_classes x num_classes`` count matrix; rows = label, columns = prediction."""

    def __init__(self, num_classes: int, device: str | torch.device = "cpu") -> None:
        if not isinstance(num_classes, int) or num_classes < 1:
            raise MetricsError(f"num_classes must be a positive integer, got {num_classes!r}")
        self.num_classes = num_classes
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    # ------------------------------------------------------------------ building

    @classmethod
    def from_matrix(cls, matrix: Any) -> ConfusionMatrix:
        """Wrap an existing square count matrix (rows = label, columns = prediction)."""
        mat = torch.as_tensor(np.asarray(matrix), dtype=torch.int64)
        if mat.ndim != 2 or mat.shape[0] != mat.shape[1]:
            raise MetricsError(f"a confusion matrix must be square, got shape {tuple(mat.shape)}")
        if (mat < 0).any():
            raise MetricsError("a confusion matrix holds counts; found negative entries")
        cm = cls(int(mat.shape[0]))
        cm.mat = mat.clone()
        return cm

    def reset(self) -> None:
        self.mat.zero_()

    def update(self, pred: torch.Tensor | np.ndarray, label: torch.Tensor | np.ndarray, ignore_label: int = 255) -> None:
        """Count one batch. ``pred`` holds class indices (an argmax), ``label`` the ground truth;
        both of the same shape (any number of dimensions)."""
        pred = torch.as_tensor(pred)
        label = torch.as_tensor(label, device=pred.device)
        if pred.shape != label.shape:
            raise MetricsError(
                f"prediction shape {tuple(pred.shape)} differs from label shape {tuple(label.shape)}; "
                "resize the prediction to the label size before counting"
            )
        if pred.is_floating_point() or label.is_floating_point():
            raise MetricsError(f"expected integer class indices, got prediction {pred.dtype} and label {label.dtype}")
        pred = pred.reshape(-1).long()
        label = label.reshape(-1).long()
        k = self.num_classes
        keep = (label != ignore_label) & (label >= 0) & (label < k)
        pred = pred[keep]
        label = label[keep]
        if pred.numel() == 0:
            return
        lo, hi = int(pred.min()), int(pred.max())
        if lo < 0 or hi >= k:
            raise MetricsError(f"predicted class {lo if lo < 0 else hi} is outside [0, {k}) for a {k}-class confusion matrix")
        counts = torch.bincount(label * k + pred, minlength=k * k).reshape(k, k)
        self.mat += counts.to(self.mat.device)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix's counts to this one (in place) and return self."""
        if other.num_classes != self.num_classes:
            raise MetricsError(f"cannot merge a {other.num_classes}-class matrix into a {self.num_classes}-class one")
        self.mat += other.mat.to(self.mat.device)
        return self

    def all_reduce(self) -> None:
        """Sum the counts over all ranks; a no-op unless torch.distributed is initialised with
        more than one process. Call it once, after the last ``update``."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        tensor = self.mat
        if dist.get_backend() == "nccl" and tensor.device.type != "cuda":
            tensor = tensor.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        if tensor is not self.mat:
            self.mat.copy_(tensor.to(self.mat.device))

    # ------------------------------------------------------------------ results

    def compute(self) -> dict[str, Any]:
        """Summary scalars and per-class lists as plain Python floats/ints.

        Degenerate cases: ``miou_nan`` is NaN when no class occurs at all; ``pixel_acc`` is 0.0
        when no pixel was counted (the official code would divide by zero)."""
        mat = self.mat.detach().cpu().double()
        tp = mat.diag()
        gt = mat.sum(1)
        pr = mat.sum(0)
        union = gt + pr - tp
        iou = tp / union.clamp(min=1.0)
        acc = tp / gt.clamp(min=1.0)
        present = union > 0
        in_gt = gt > 0
        total = float(gt.sum())
        return {
            "miou": float(iou.mean()),
            "miou_nan": float(iou[present].mean()) if bool(present.any()) else math.nan,
            "miou_gt": float(iou[in_gt].mean()) if bool(in_gt.any()) else math.nan,
            "pixel_acc": float(tp.sum()) / total if total > 0 else 0.0,
            "mean_acc": float(acc.mean()),
            "iou": [float(v) for v in iou],
            "acc": [float(v) for v in acc],
            "present": [bool(v) for v in present],
            "gt_pixels": [int(v) for v in self.mat.sum(1).cpu()],
            "pred_pixels": [int(v) for v in self.mat.sum(0).cpu()],
            "num_pixels": int(total),
        }

    def __repr__(self) -> str:
        return f"ConfusionMatrix(num_classes={self.num_classes}, pixels={int(self.mat.sum())})"


def scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric entries of a metrics dict as floats (lists, flags, None and text dropped):
    what goes into a checkpoint's ``metrics`` and a tracker's ``log_metrics``."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
