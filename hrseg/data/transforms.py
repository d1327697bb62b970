"""Training augmentation and validation (testval) sizing, exactly as the official code.

Training (``TrainTransform``), on the BGR uint8 image and the mapped uint8 label:

1. dataset pre-step: COCO-Stuff/ADE20K resize the short side to ``base_size``; LIP flips
   (swapping left/right classes) and resizes to the crop size ignoring aspect;
2. random scale ``s = 0.5 + randint(0, scale_factor) / 10``: resize so the long side is
   ``int(base_size * s + 0.5)`` (image linear, label nearest);
3. pad bottom/right to the crop size (image 0, label ignore); uniform random crop;
4. horizontal flip with probability 1/2 (not for LIP, already flipped);
5. normalise: BGR -> RGB, / 255, ImageNet mean/std.

Randomness comes from the ``numpy.random.Generator`` passed in, which ``SegmentationDataset``
derives from (seed, epoch, index).

Validation (``EvalTransform``): no augmentation; the image is kept (Cityscapes, PASCAL-Context),
resized to the crop size (LIP) or short side resized to ``base_size`` and padded bottom/right
to a multiple of 8 with the mean colour (COCO-Stuff, ADE20K). The label stays at its original
size; ``orig_size`` is its (H, W) and ``pad`` the (bottom, right) padding that was added.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from hrseg.data.errors import DatasetError
from hrseg.data.spec import (
    IGNORE_LABEL,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DatasetSpec,
    EvalResize,
    TrainResize,
    swap_table,
)

PAD_STRIDE = 8  # testval padding multiple (COCO-Stuff, ADE20K)


def resize_pair(image: np.ndarray, label: np.ndarray | None, width: int, height: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Resize to ``width x height``: image bilinear, label nearest."""
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    if label is not None:
        label = cv2.resize(label, (width, height), interpolation=cv2.INTER_NEAREST)
    return image, label


def long_side_size(height: int, width: int, long_size: int) -> tuple[int, int]:
    """(new_h, new_w) with the long side = ``long_size`` (official rounding)."""
    if height > width:
        return long_size, int(width * long_size / height + 0.5)
    return int(height * long_size / width + 0.5), long_size


def short_side_size(height: int, width: int, short_size: int) -> tuple[int, int]:
    """(new_h, new_w) with the short side = ``short_size`` (official rounding)."""
    if height < width:
        return short_size, int(width * short_size / height + 0.5)
    return int(height * short_size / width + 0.5), short_size


def random_scale(scale_factor: int, rng: np.random.Generator) -> float:
    return 0.5 + int(rng.integers(0, scale_factor, endpoint=True)) / 10.0


def pad_bottom_right(array: np.ndarray, pad_h: int, pad_w: int, value: Any) -> np.ndarray:
    if pad_h <= 0 and pad_w <= 0:
        return array
    return cv2.copyMakeBorder(array, 0, max(pad_h, 0), 0, max(pad_w, 0), cv2.BORDER_CONSTANT, value=value)


def hflip(image: np.ndarray, label: np.ndarray, swap: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mirror left-right; ``swap`` (a 256-entry table) relabels left/right classes."""
    image, label = image[:, ::-1], label[:, ::-1]
    if swap is not None:
        label = swap[label]
    return image, label


def normalize(image: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """BGR uint8 HxWx3 -> float32 3xHxW tensor: RGB, / 255, minus mean, over std."""
    rgb = image[:, :, ::-1].astype(np.float32) / np.float32(255.0)
    rgb -= np.asarray(mean, dtype=np.float32)
    rgb /= np.asarray(std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))


def label_tensor(label: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(label).astype(np.int64))


@dataclass(frozen=True)
class TrainTransform:
    """The official training augmentation; see the module docstring."""

    crop_size: tuple[int, int]  # (height, width)
    base_size: int
    scale_factor: int = 16
    flip: bool = True
    resize: TrainResize = "long_side"
    flip_pairs: tuple[tuple[int, int], ...] = ()
    ignore_label: int = IGNORE_LABEL
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    needs_label = True

    @classmethod
    def from_spec(cls, spec: DatasetSpec, *, crop_size: tuple[int, int], base_size: int, scale_factor: int, flip: bool) -> TrainTransform:
        return cls(
            crop_size=tuple(crop_size), base_size=base_size, scale_factor=scale_factor, flip=flip, resize=spec.train_resize,
            flip_pairs=spec.flip_pairs, ignore_label=spec.ignore_label, mean=spec.mean, std=spec.std,
        )  # fmt: skip

    def _swap(self) -> np.ndarray | None:
        return swap_table(self.flip_pairs) if self.flip_pairs else None

    def __call__(self, image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator) -> dict:
        if label is None:
            raise DatasetError("training needs labels, but this sample has none")
        crop_h, crop_w = self.crop_size
        flip = self.flip
        if self.resize == "short_side":
            image, label = resize_pair(image, label, *reversed(short_side_size(*label.shape, self.base_size)))
        elif self.resize == "lip":
            if flip and rng.integers(0, 2) == 1:
                image, label = hflip(image, label, self._swap())
            image, label = resize_pair(image, label, crop_w, crop_h)
            flip = False
        # random scale of the long side
        new_h, new_w = long_side_size(*label.shape, int(self.base_size * random_scale(self.scale_factor, rng) + 0.5))
        image, label = resize_pair(image, label, new_w, new_h)
        # pad bottom/right to the crop size, then a uniform random crop
        image = pad_bottom_right(image, crop_h - new_h, crop_w - new_w, (0, 0, 0))
        label = pad_bottom_right(label, crop_h - new_h, crop_w - new_w, self.ignore_label)
        height, width = label.shape
        x = int(rng.integers(0, width - crop_w, endpoint=True))
        y = int(rng.integers(0, height - crop_h, endpoint=True))
        image, label = image[y : y + crop_h, x : x + crop_w], label[y : y + crop_h, x : x + crop_w]
        if flip and rng.integers(0, 2) == 1:
            image, label = hflip(image, label, self._swap())
        return {"image": normalize(image, self.mean, self.std), "label": label_tensor(label)}


@dataclass(frozen=True)
class EvalTransform:
    """Validation / testval: no augmentation, the official per-dataset sizing."""

    crop_size: tuple[int, int]  # (height, width): LIP resizes to it
    base_size: int  # short side for COCO-Stuff / ADE20K
    resize: EvalResize = "none"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    needs_label = False

    @classmethod
    def from_spec(cls, spec: DatasetSpec, *, crop_size: tuple[int, int], base_size: int) -> EvalTransform:
        return cls(crop_size=tuple(crop_size), base_size=base_size, resize=spec.eval_resize, mean=spec.mean, std=spec.std)

    def __call__(self, image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator | None = None) -> dict:
        orig_h, orig_w = (label if label is not None else image).shape[:2]
        pad_h = pad_w = 0
        if self.resize == "crop_size":
            image = cv2.resize(image, (self.crop_size[1], self.crop_size[0]), interpolation=cv2.INTER_LINEAR)
        elif self.resize == "short_side":
            new_h, new_w = short_side_size(*image.shape[:2], self.base_size)
            image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
            pad_h, pad_w = -new_h % PAD_STRIDE, -new_w % PAD_STRIDE
            image = pad_bottom_right(image, pad_h, pad_w, tuple(m * 255 for m in self.mean[::-1]))  # mean colour, BGR
        sample = {
            "image": normalize(image, self.mean, self.std),
            "orig_size": torch.tensor([orig_h, orig_w], dtype=torch.int64),
            "pad": torch.tensor([pad_h, pad_w], dtype=torch.int64),
        }
        if label is not None:
            sample["label"] = label_tensor(label)
        return sample
