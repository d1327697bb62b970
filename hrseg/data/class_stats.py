"""Per-class pixel statistics of a labelled split and the class weights derived from them.

Everything counts *class-index* labels (after the dataset's label map) and skips ignored
pixels. With ``n_c`` the pixels of class ``c`` over the split, ``N = sum_c n_c`` and ``K`` the
number of classes that occur (``n_c > 0``):

- **frequency**: ``f_c = n_c / N``.
- **inverse frequency** (``inverse``): ``w_c = N / (K * n_c) = 1 / (K * f_c)``. The
  pixel-weighted mean weight ``sum_c f_c * w_c`` is exactly 1, so the loss keeps its scale
  (scikit-learn's "balanced" weights).
- **median-frequency balancing** (``median``, Eigen & Fergus, ICCV 2015):
  ``freq_c = n_c / P_c`` where ``P_c`` is the number of valid pixels of the images in which
  ``c`` occurs, and ``w_c = median_k(freq_k) / freq_c`` (median over the classes that occur).
  The class with the median frequency gets weight 1.

A class that never occurs gets weight 0: it contributes no pixel to the loss anyway, and a
finite weight keeps ``train.loss.class_weights`` valid.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

WeightMethod = Literal["inverse", "median"]
WEIGHT_METHODS: tuple[str, ...] = ("inverse", "median")


def class_pixel_counts(label: np.ndarray, num_classes: int) -> np.ndarray:
    """Pixels per class index ``0..num_classes-1`` of one class-index label (ignore and any
    other value >= ``num_classes`` are not counted); int64 vector of length ``num_classes``."""
    counts = np.bincount(np.asarray(label, dtype=np.uint8).ravel(), minlength=256)
    return counts[:num_classes].astype(np.int64)


@dataclass(frozen=True)
class ClassStats:
    """Per-class totals of one split: ``pixels[c] = n_c`` and ``image_pixels[c] = P_c`` (the
    valid pixels of the images where ``c`` occurs), and ``images[c]`` (how many images)."""

    pixels: tuple[int, ...]
    image_pixels: tuple[int, ...]
    images: tuple[int, ...]

    @classmethod
    def from_counts(cls, per_image: Iterable[Sequence[int]], num_classes: int) -> ClassStats:
        """Totals from per-image count vectors (``class_pixel_counts`` of each image)."""
        pixels = np.zeros(num_classes, dtype=np.int64)
        image_pixels = np.zeros(num_classes, dtype=np.int64)
        images = np.zeros(num_classes, dtype=np.int64)
        for counts in per_image:
            counts = np.asarray(counts, dtype=np.int64)
            if counts.shape != (num_classes,):
                raise ValueError(f"expected {num_classes} counts per image, got {counts.shape}")
            present = counts > 0
            pixels += counts
            image_pixels[present] += counts.sum()
            images[present] += 1
        return cls(tuple(map(int, pixels)), tuple(map(int, image_pixels)), tuple(map(int, images)))

    @property
    def num_classes(self) -> int:
        return len(self.pixels)

    def absent(self) -> list[int]:
        """Class indices without any pixel."""
        return [c for c, n in enumerate(self.pixels) if n == 0]

    def frequencies(self) -> list[float]:
        """``f_c = n_c / N`` (all zeros when the split has no valid pixel)."""
        total = sum(self.pixels)
        return [n / total if total else 0.0 for n in self.pixels]

    def weights(self, method: WeightMethod) -> list[float]:
        """Class weights by ``method`` (see the module docstring); 0 for absent classes."""
        if method == "inverse":
            return inverse_frequency_weights(self.pixels)
        if method == "median":
            return median_frequency_weights(self.pixels, self.image_pixels)
        raise ValueError(f"unknown class-weight method {method!r}; expected one of {', '.join(WEIGHT_METHODS)}")


def inverse_frequency_weights(pixels: Sequence[int]) -> list[float]:
    """``w_c = N / (K * n_c)`` over the ``K`` classes with ``n_c > 0``; 0 elsewhere."""
    total = sum(pixels)
    present = sum(1 for n in pixels if n > 0)
    return [total / (present * n) if n > 0 else 0.0 for n in pixels]


def median_frequency_weights(pixels: Sequence[int], image_pixels: Sequence[int]) -> list[float]:
    """``w_c = median(freq) / freq_c`` with ``freq_c = n_c / P_c``; 0 for absent classes."""
    freq = [n / p if n > 0 else 0.0 for n, p in zip(pixels, image_pixels)]
    occurring = [f for f in freq if f > 0]
    if not occurring:
        return [0.0] * len(pixels)
    median = float(np.median(occurring))
    return [median / f if f > 0 else 0.0 for f in freq]
