"""Training losses: cross-entropy and OHEM cross-entropy over one or two model outputs.

Arithmetic of the official ``lib/core/criterion.py`` (official.md section 5):

- every output is bilinearly upsampled to the label size inside the loss, with the model's
  ``align_corners``, and compared in float32;
- ``cross_entropy``: class-weighted mean over the non-ignored pixels, i.e.
  ``sum(w[y] * nll) / sum(w[y])`` (PyTorch's ``CrossEntropyLoss(weight, ignore_index)``);
- ``ohem_cross_entropy``: among the non-ignored pixels, sort p(ground truth) ascending, take
  ``threshold = max(p[min(min_kept, n - 1)], thresh)`` and average the class-weighted losses
  of the pixels with ``p < threshold`` -- a plain mean over the kept pixels, *not* normalised
  by the weights. ``min_kept`` counts pixels of this process's batch;
- the total is ``sum_i balance_weights[i] * loss_i`` over the outputs in the order
  ``(aux, out)``; only the main output gets OHEM.

The official OHEM+aux quirk: with OHEM on, the official code computes the aux term as a
per-pixel loss map whose mean is taken over *all* pixels, ignored ones (loss 0) included, so
the aux weight shrinks with the share of ignored pixels in the batch. ``LossConfig.ohem_aux_quirk``
reproduces it; the default (False) averages the aux term over valid pixels like every non-OHEM
run. The official COCO-Stuff and ADE20K OCR recipes set it to True to match the released
numbers.

Two degenerate cases where the official code returns NaN return 0 here (with a gradient of
zero): a batch without any valid pixel, and an OHEM selection that keeps no pixel.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from hrseg.config import ConfigError
from hrseg.models.segmentation import resize_logits
from hrseg.recipe import LossConfig


def resize_to_label(logits: torch.Tensor, label: torch.Tensor, align_corners: bool) -> torch.Tensor:
    """Bilinear upsampling of ``logits`` (N, K, h, w) to the label's (H, W), in float32."""
    return resize_logits(logits.float(), label.shape[-2:], align_corners=align_corners)


def _zero(logits: torch.Tensor) -> torch.Tensor:
    return logits.sum() * 0.0


def pixel_losses(logits: torch.Tensor, label: torch.Tensor, *, weight: torch.Tensor | None, ignore_label: int) -> torch.Tensor:
    """Per-pixel class-weighted negative log-likelihood, 0 where the label is ignored."""
    return F.cross_entropy(logits, label, weight=weight, ignore_index=ignore_label, reduction="none")


def cross_entropy(
    logits: torch.Tensor,
    label: torch.Tensor,
    *,
    weight: torch.Tensor | None = None,
    ignore_label: int = 255,
    align_corners: bool,
) -> torch.Tensor:
    """Class-weighted mean CE over non-ignored pixels (0 if there are none)."""
    logits = resize_to_label(logits, label, align_corners)
    valid = label != ignore_label
    losses = pixel_losses(logits, label, weight=weight, ignore_label=ignore_label)
    if weight is None:
        denom = valid.sum().to(losses.dtype)
    else:
        denom = (weight[label.clamp(0, weight.numel() - 1)] * valid).sum()
    # no valid pixel: the numerator is 0 too, so the result is 0 (and NaN weights still show)
    return losses.sum() / denom.clamp(min=1e-12)


def mean_over_all_pixels(
    logits: torch.Tensor,
    label: torch.Tensor,
    *,
    weight: torch.Tensor | None = None,
    ignore_label: int = 255,
    align_corners: bool,
) -> torch.Tensor:
    """The official OHEM-run aux term: the per-pixel loss map averaged over *all* pixels."""
    logits = resize_to_label(logits, label, align_corners)
    return pixel_losses(logits, label, weight=weight, ignore_label=ignore_label).mean()


def ohem_cross_entropy(
    logits: torch.Tensor,
    label: torch.Tensor,
    *,
    thresh: float = 0.9,
    min_kept: int = 131072,
    weight: torch.Tensor | None = None,
    ignore_label: int = 255,
    align_corners: bool,
) -> torch.Tensor:
    """Online hard example mining CE (official ``OhemCrossEntropy``), per process."""
    logits = resize_to_label(logits, label, align_corners)
    losses = pixel_losses(logits, label, weight=weight, ignore_label=ignore_label).reshape(-1)
    flat_label = label.reshape(-1)
    valid = flat_label != ignore_label
    with torch.no_grad():
        prob = logits.softmax(dim=1)
        gt = torch.where(label == ignore_label, torch.zeros_like(label), label)
        p_gt = prob.gather(1, gt.unsqueeze(1)).reshape(-1)[valid]
        n = p_gt.numel()
        if n == 0:
            return _zero(logits)
        sorted_p = p_gt.sort().values
        threshold = torch.clamp(sorted_p[min(min_kept, n - 1)], min=thresh)
        keep = p_gt < threshold
    kept = losses[valid][keep]
    if kept.numel() == 0:
        return _zero(logits)
    return kept.mean()


class SegmentationLoss(nn.Module):
    """The weighted sum of the per-output losses of a recipe's ``LossConfig``.

    ``forward(outputs, label)`` takes the model's dict (``"out"`` and, for OCR, ``"aux"``) and
    an int64 label (N, H, W); it returns a scalar."""

    def __init__(self, cfg: LossConfig, *, num_classes: int, align_corners: bool, ignore_label: int = 255) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.align_corners = align_corners
        if cfg.class_weights is not None and len(cfg.class_weights) != num_classes:
            raise ConfigError(
                f"train.loss.class_weights: {len(cfg.class_weights)} weights given, the model has {num_classes} classes"
            )
        if not cfg.balance_weights:
            raise ConfigError("train.loss.balance_weights: expected one weight per model output, got an empty list")
        weight = None if cfg.class_weights is None else torch.tensor(cfg.class_weights, dtype=torch.float32)
        # a buffer, so it follows .to(device); not persistent, so it is not part of checkpoints
        self.register_buffer("class_weights", weight, persistent=False)

    def output_names(self, outputs: Mapping[str, torch.Tensor]) -> list[str]:
        names = ["aux", "out"] if "aux" in outputs else ["out"]
        if len(names) != len(self.cfg.balance_weights):
            raise ConfigError(
                f"train.loss.balance_weights: {list(self.cfg.balance_weights)} has {len(self.cfg.balance_weights)} "
                f"weight(s) but the model has {len(names)} output(s) ({', '.join(names)}); "
                "use [0.4, 1.0] (aux, main) for the OCR head and [1.0] for the FCN head"
            )
        return names

    def forward(self, outputs: Mapping[str, torch.Tensor], label: torch.Tensor) -> torch.Tensor:
        return sum(self.terms(outputs, label).values())  # type: ignore[return-value]

    def terms(self, outputs: Mapping[str, torch.Tensor], label: torch.Tensor) -> dict[str, torch.Tensor]:
        """The weighted loss of every output, keyed by output name (they sum to the loss)."""
        names = self.output_names(outputs)
        common = {"weight": self.class_weights, "ignore_label": self.ignore_label, "align_corners": self.align_corners}
        terms = {}
        for name, w in zip(names, self.cfg.balance_weights):
            logits = outputs[name]
            if not self.cfg.use_ohem:
                value = cross_entropy(logits, label, **common)
            elif name == names[-1]:
                value = ohem_cross_entropy(logits, label, thresh=self.cfg.ohem_thresh, min_kept=self.cfg.ohem_keep, **common)
            elif self.cfg.ohem_aux_quirk:
                value = mean_over_all_pixels(logits, label, **common)
            else:
                value = cross_entropy(logits, label, **common)
            terms[name] = w * value
        return terms

