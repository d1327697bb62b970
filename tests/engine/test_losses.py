"""Loss values against hand-computed cases (official lib/core/criterion.py arithmetic)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hrseg.config import ConfigError
from hrseg.engine.losses import SegmentationLoss, cross_entropy, ohem_cross_entropy
from hrseg.recipe import LossConfig


def two_class_logits(p_class0: list[float]) -> torch.Tensor:
    """(1, 2, 1, n) logits whose softmax gives class 0 probability ``p`` at each pixel."""
    p = torch.tensor(p_class0, dtype=torch.float64)
    logits = torch.stack([torch.zeros_like(p), torch.log((1 - p) / p)])  # p0 = 1 / (1 + (1-p)/p) = p
    return logits.reshape(1, 2, 1, -1).float()


def test_cross_entropy_ignores_pixels():
    logits = two_class_logits([0.25, 0.5])
    label = torch.tensor([[[0, 255]]])
    assert cross_entropy(logits, label, align_corners=True).item() == pytest.approx(math.log(4), rel=1e-6)


def test_cross_entropy_class_weights_normalise_by_weight_sum():
    # pixel 0: class 0 with p=1/4 (loss ln 4, weight 2); pixel 1: class 1 with p1=3/4 (loss ln 4/3, weight 1)
    logits = two_class_logits([0.25, 0.25])
    label = torch.tensor([[[0, 1]]])
    weight = torch.tensor([2.0, 1.0])
    expected = (2 * math.log(4) + math.log(4 / 3)) / 3
    assert cross_entropy(logits, label, weight=weight, align_corners=True).item() == pytest.approx(expected, rel=1e-6)


def test_cross_entropy_all_ignored_is_zero_with_gradient():
    logits = two_class_logits([0.3, 0.6]).requires_grad_()
    loss = cross_entropy(logits, torch.full((1, 1, 2), 255), align_corners=True)
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(logits.grad) == 0


P_GT = [0.2, 0.5, 0.95, 0.99]


@pytest.mark.parametrize(
    ("min_kept", "kept"),
    [
        (1, [0.2, 0.5]),  # p[1] = 0.5 < 0.9 -> threshold 0.9
        (2, [0.2, 0.5]),  # p[2] = 0.95 -> threshold 0.95, strict "<" drops 0.95
        (3, [0.2, 0.5, 0.95]),  # p[3] = 0.99
        (100, [0.2, 0.5, 0.95]),  # index clamped to n - 1
    ],
)
def test_ohem_keep_rule(min_kept, kept):
    logits = two_class_logits(P_GT + [0.01])
    label = torch.tensor([[[0, 0, 0, 0, 255]]])  # the ignored pixel (p=0.01) never counts
    expected = sum(-math.log(p) for p in kept) / len(kept)
    value = ohem_cross_entropy(logits, label, thresh=0.9, min_kept=min_kept, align_corners=True)
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_ohem_class_weighted_mean_is_not_normalised():
    logits = two_class_logits([0.2, 0.5, 0.95])
    label = torch.tensor([[[0, 1, 0]]])  # p(gt) = 0.2, 0.5, 0.95
    weight = torch.tensor([3.0, 0.5])
    # threshold 0.9 keeps the first two pixels: mean of weighted losses over 2 pixels
    expected = (3.0 * -math.log(0.2) + 0.5 * -math.log(0.5)) / 2
    value = ohem_cross_entropy(logits, label, thresh=0.9, min_kept=1, weight=weight, align_corners=True)
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_ohem_nothing_kept_is_zero_not_nan():
    logits = two_class_logits([0.97])
    value = ohem_cross_entropy(logits, torch.tensor([[[0]]]), thresh=0.9, min_kept=5, align_corners=True)
    assert value.item() == 0.0


def test_logits_upsampled_with_the_models_align_corners():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 4, 6)
    label = torch.randint(0, 5, (2, 16, 24))
    for align in (True, False):
        expected = F.cross_entropy(F.interpolate(logits, size=(16, 24), mode="bilinear", align_corners=align), label)
        assert cross_entropy(logits, label, align_corners=align).item() == pytest.approx(expected.item(), rel=1e-6)
    assert cross_entropy(logits, label, align_corners=True).item() != pytest.approx(cross_entropy(logits, label, align_corners=False).item(), rel=1e-6)


def test_aux_and_main_weighted_04_1():
    aux = two_class_logits([0.5, 0.25])
    out = two_class_logits([0.25, 0.5])
    label = torch.tensor([[[0, 255]]])
    loss = SegmentationLoss(LossConfig(), num_classes=2, align_corners=True)
    expected = 0.4 * math.log(2) + 1.0 * math.log(4)
    assert loss({"aux": aux, "out": out}, label).item() == pytest.approx(expected, rel=1e-6)
    terms = loss.terms({"aux": aux, "out": out}, label)
    assert terms["aux"].item() == pytest.approx(0.4 * math.log(2), rel=1e-6)


def test_ohem_aux_quirk_averages_aux_over_all_pixels():
    aux = two_class_logits([0.5, 0.25, 0.5, 0.5])
    out = two_class_logits([0.2, 0.5, 0.95, 0.5])
    label = torch.tensor([[[0, 0, 255, 255]]])  # two valid, two ignored pixels
    aux_sum = math.log(2) + math.log(4)
    main = (-math.log(0.2) - math.log(0.5)) / 2  # OHEM keeps both valid pixels (p < 0.9)
    quirk = SegmentationLoss(LossConfig(use_ohem=True, ohem_keep=1, ohem_aux_quirk=True), num_classes=2, align_corners=True)
    clean = SegmentationLoss(LossConfig(use_ohem=True, ohem_keep=1, ohem_aux_quirk=False), num_classes=2, align_corners=True)
    assert quirk({"aux": aux, "out": out}, label).item() == pytest.approx(0.4 * aux_sum / 4 + main, rel=1e-5)
    assert clean({"aux": aux, "out": out}, label).item() == pytest.approx(0.4 * aux_sum / 2 + main, rel=1e-5)


def test_single_output_uses_ohem_on_main():
    out = two_class_logits(P_GT)
    label = torch.tensor([[[0, 0, 0, 0]]])
    loss = SegmentationLoss(LossConfig(balance_weights=(1.0,), use_ohem=True, ohem_keep=1), num_classes=2, align_corners=True)
    assert loss({"out": out}, label).item() == pytest.approx((-math.log(0.2) - math.log(0.5)) / 2, rel=1e-5)


def test_balance_weights_must_match_outputs():
    loss = SegmentationLoss(LossConfig(balance_weights=(0.4, 1.0)), num_classes=2, align_corners=True)
    with pytest.raises(ConfigError, match=r"train\.loss\.balance_weights.*1 output"):
        loss({"out": two_class_logits([0.5])}, torch.tensor([[[0]]]))


def test_class_weights_must_match_classes():
    with pytest.raises(ConfigError, match=r"train\.loss\.class_weights: 3 weights.*19 classes"):
        SegmentationLoss(LossConfig(class_weights=(1.0, 1.0, 1.0)), num_classes=19, align_corners=True)


def official_ohem(score, target, *, thresh, min_kept, weight, ignore_label=255):
    """The official OhemCrossEntropy._ohem_forward, step by step (sort, index, threshold)."""
    pred = F.softmax(score, dim=1)
    pixel_losses = F.cross_entropy(score, target, weight=weight, ignore_index=ignore_label, reduction="none").contiguous().view(-1)
    mask = target.contiguous().view(-1) != ignore_label
    tmp_target = target.clone()
    tmp_target[tmp_target == ignore_label] = 0
    pred = pred.gather(1, tmp_target.unsqueeze(1))
    pred, ind = pred.contiguous().view(-1)[mask].contiguous().sort()
    min_value = pred[min(min_kept, pred.numel() - 1)]
    threshold = max(min_value, thresh)
    pixel_losses = pixel_losses[mask][ind]
    return pixel_losses[pred < threshold].mean()


@pytest.mark.parametrize("min_kept", [10, 300, 5000])
def test_ohem_matches_the_official_procedure(min_kept):
    torch.manual_seed(1)
    score = torch.randn(2, 7, 24, 32) * 3
    target = torch.randint(0, 7, (2, 24, 32))
    target[:, :4] = 255
    weight = torch.rand(7) + 0.5
    ours = ohem_cross_entropy(score, target, thresh=0.7, min_kept=min_kept, weight=weight, align_corners=True)
    ref = official_ohem(score, target, thresh=0.7, min_kept=min_kept, weight=weight)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
