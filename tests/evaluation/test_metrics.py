"""ConfusionMatrix: counting rules and the metric formulas on hand-made matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hrseg.errors import HrsegError
from hrseg.metrics import ConfusionMatrix


def test_counts_rows_label_columns_prediction_and_drops_ignored():
    cm = ConfusionMatrix(3)
    label = torch.tensor([[0, 0, 1], [2, 255, 7]])  # 255 ignored, 7 outside [0, 3) dropped
    pred = torch.tensor([[0, 1, 1], [0, 2, 2]])
    cm.update(pred, label)
    expected = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 0]])
    np.testing.assert_array_equal(cm.mat.numpy(), expected)
    assert cm.mat.dtype == torch.int64


def test_custom_ignore_label_and_negative_labels():
    cm = ConfusionMatrix(2)
    cm.update(np.array([0, 1, 1]), np.array([-1, 1, 0]), ignore_label=-1)
    np.testing.assert_array_equal(cm.mat.numpy(), [[0, 1], [0, 1]])


def test_metrics_on_hand_made_matrix():
    # rows = label, columns = prediction; class 3 absent from both label and prediction
    # class 2 never occurs in the label but is predicted once; class 3 occurs nowhere
    mat = np.array(
        [
            [5, 1, 1, 0],
            [2, 3, 0, 0],
            [0, 0, 0, 0],
            [0, 0, 0, 0],
        ]
    )
    cm = ConfusionMatrix.from_matrix(mat)
    r = cm.compute()
    # class 0: tp 5, gt 7, pred 7 -> 5 / 9;  class 1: tp 3, gt 5, pred 4 -> 3 / 6
    # class 2: tp 0, gt 0, pred 1 -> 0;       class 3: absent -> 0 (official), skipped by nan-mean
    iou = [5 / 9, 3 / 6, 0.0, 0.0]
    assert r["iou"] == pytest.approx(iou)
    assert r["miou"] == pytest.approx(sum(iou) / 4)
    assert r["miou_nan"] == pytest.approx(sum(iou[:3]) / 3)
    assert r["present"] == [True, True, True, False]
    assert r["pixel_acc"] == pytest.approx(8 / 12)
    assert r["acc"] == pytest.approx([5 / 7, 3 / 5, 0.0, 0.0])
    assert r["mean_acc"] == pytest.approx((5 / 7 + 3 / 5) / 4)
    assert r["gt_pixels"] == [7, 5, 0, 0]
    assert r["pred_pixels"] == [7, 4, 1, 0]
    assert r["num_pixels"] == 12


def test_perfect_prediction_and_empty_matrix():
    cm = ConfusionMatrix(3)
    label = torch.tensor([0, 1, 2, 2])
    cm.update(label.clone(), label)
    r = cm.compute()
    assert r["miou"] == r["miou_nan"] == r["pixel_acc"] == r["mean_acc"] == 1.0
    empty = ConfusionMatrix(3).compute()
    assert empty["miou"] == 0.0 and empty["pixel_acc"] == 0.0 and math.isnan(empty["miou_nan"])


def test_matches_numpy_reference_on_random_data():
    rng = np.random.default_rng(0)
    k = 7
    label = rng.integers(0, k + 1, size=(3, 17, 23))
    label[label == k] = 255
    pred = rng.integers(0, k, size=label.shape)
    cm = ConfusionMatrix(k)
    for p, lab in zip(pred, label, strict=True):  # several updates accumulate
        cm.update(torch.from_numpy(p), torch.from_numpy(lab))
    keep = label != 255
    ref = np.zeros((k, k), np.int64)
    np.add.at(ref, (label[keep], pred[keep]), 1)
    np.testing.assert_array_equal(cm.mat.numpy(), ref)
    merged = ConfusionMatrix(k).merge(cm).merge(cm)
    np.testing.assert_array_equal(merged.mat.numpy(), 2 * ref)
    cm.reset()
    assert int(cm.mat.sum()) == 0


def test_all_reduce_without_distributed_is_a_no_op():
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 0]))
    before = cm.mat.clone()
    cm.all_reduce()
    assert torch.equal(cm.mat, before)


@pytest.mark.parametrize(
    "pred, label, match",
    [
        (torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long), "shape"),
        (torch.zeros(4), torch.zeros(4, dtype=torch.long), "integer"),
        (torch.tensor([0, 5]), torch.tensor([0, 1]), "outside"),
    ],
)
def test_bad_input_raises_hrseg_error(pred, label, match):
    with pytest.raises(HrsegError, match=match):
        ConfusionMatrix(3).update(pred, label)


def test_bad_construction():
    with pytest.raises(HrsegError, match="positive"):
        ConfusionMatrix(0)
    with pytest.raises(HrsegError, match="square"):
        ConfusionMatrix.from_matrix(np.zeros((2, 3)))
