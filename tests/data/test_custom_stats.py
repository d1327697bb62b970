"""Per-class pixel frequencies and class weights on hand-made masks (``hrseg.data.class_stats``)."""

from __future__ import annotations

import numpy as np
import pytest

from hrseg.data.class_stats import ClassStats, class_pixel_counts, inverse_frequency_weights, median_frequency_weights

# two 2x4 masks, 3 classes, 255 = ignore
A = np.array([[0, 0, 0, 0], [0, 1, 255, 255]], np.uint8)  # 5 x class 0, 1 x class 1 (6 valid pixels)
B = np.array([[0, 0, 2, 2], [2, 2, 2, 2]], np.uint8)  # 2 x class 0, 6 x class 2 (8 valid pixels)


def stats() -> ClassStats:
    return ClassStats.from_counts([class_pixel_counts(A, 3), class_pixel_counts(B, 3)], 3)


def test_counts_skip_ignore_and_totals_per_class():
    assert class_pixel_counts(A, 3).tolist() == [5, 1, 0]
    s = stats()
    assert s.pixels == (7, 1, 6)
    assert s.images == (2, 1, 1)
    # P_c: valid pixels of the images containing c (class 0 is in both: 6 + 8)
    assert s.image_pixels == (14, 6, 8)
    assert s.frequencies() == pytest.approx([7 / 14, 1 / 14, 6 / 14])
    assert s.absent() == []


def test_inverse_frequency_weights():
    # w_c = N / (K n_c) with N = 14, K = 3
    w = stats().weights("inverse")
    assert w == pytest.approx([14 / 21, 14 / 3, 14 / 18])
    # the pixel-weighted mean weight is exactly 1
    assert sum(f * x for f, x in zip(stats().frequencies(), w)) == pytest.approx(1.0)


def test_median_frequency_weights():
    # freq_c = n_c / P_c = 7/14, 1/6, 6/8; median = 1/2; w_c = median / freq_c
    w = stats().weights("median")
    assert w == pytest.approx([1.0, 3.0, 2 / 3])


def test_absent_classes_get_weight_zero_and_nothing_is_nan():
    s = ClassStats.from_counts([class_pixel_counts(A, 4)], 4)  # class 2 and 3 never occur
    assert s.absent() == [2, 3]
    for method in ("inverse", "median"):
        w = s.weights(method)
        assert w[2] == w[3] == 0.0 and all(np.isfinite(w))
    assert inverse_frequency_weights([5, 1, 0, 0]) == pytest.approx([6 / 10, 6 / 2, 0, 0])  # K = 2 present
    assert median_frequency_weights([0, 0], [0, 0]) == [0.0, 0.0]
    assert ClassStats.from_counts([], 2).frequencies() == [0.0, 0.0]


def test_binary_background_foreground():
    mask = np.zeros((10, 10), np.uint8)
    mask[:2] = 1  # 20 % foreground
    s = ClassStats.from_counts([class_pixel_counts(mask, 2)], 2)
    assert s.weights("inverse") == pytest.approx([100 / (2 * 80), 100 / (2 * 20)])
    assert s.weights("median") == pytest.approx([np.median([0.8, 0.2]) / 0.8, np.median([0.8, 0.2]) / 0.2])


def test_unknown_method():
    with pytest.raises(ValueError, match="inverse, median"):
        stats().weights("log")  # type: ignore[arg-type]
