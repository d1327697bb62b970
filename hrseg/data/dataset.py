"""``SegmentationDataset`` (a torch ``Dataset`` over a list file) and ``build_dataset``.

Augmentation randomness is a pure function of (seed, epoch, index): every sample draws from
``numpy.random.default_rng([seed, epoch, index])``. A resumed run, any number of DataLoader
workers and any number of ranks therefore see the same augmentation for the same sample and
epoch. Call ``set_epoch`` before iterating each epoch; with ``persistent_workers=True`` the
workers keep the epoch they were started with, so leave persistent workers off.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from torch.utils.data import Dataset

from hrseg.data.catalog import get_spec
from hrseg.data.errors import DatasetError
from hrseg.data.image_io import read_image, read_label
from hrseg.data.lists import read_list
from hrseg.data.spec import DatasetSpec
from hrseg.data.transforms import EvalTransform, TrainTransform

Transform = Callable[[np.ndarray, "np.ndarray | None", np.random.Generator], dict]

_WORKER_WRAPPER = re.compile(r"Caught \w+ (in DataLoader worker process \d+)\.\nOriginal Traceback \(most recent call last\):\n")


class SampleError(DatasetError):
    """A sample of a list cannot be loaded (missing, truncated or undecodable file, size
    mismatch); the message starts with ``<list>:<line>:`` and names the file.

    Raised in a DataLoader worker, torch re-raises it in the main process as
    ``SampleError("Caught SampleError in DataLoader worker process N. Original Traceback ...")``;
    the constructor turns that back into the original message (plus which worker), so that
    the user reads one line, not a traceback."""

    def __init__(self, message: str) -> None:
        wrapped = _WORKER_WRAPPER.match(message)
        if wrapped:
            marker = f"\n{type(self).__module__}.{type(self).__qualname__}: "
            at = message.find(marker)
            if at >= 0:
                message = f"{message[at + len(marker):].rstrip()} ({wrapped.group(1)})"
        super().__init__(message)


class SegmentationDataset(Dataset):
    """Samples of one list file.

    ``dataset[i]`` is a dict: ``image`` (float32 3xHxW, normalised RGB), ``label`` (int64 HxW,
    class indices with ignore 255; absent for unlabelled lists), ``name`` (image file stem),
    ``index``, plus what the transform adds (validation: ``orig_size``, ``pad``)."""

    def __init__(
        self,
        spec: DatasetSpec,
        root: str | os.PathLike,
        list_file: str | os.PathLike,
        transform: Transform,
        *,
        seed: int = 0,
        num_samples: int | None = None,
    ) -> None:
        self.spec = spec
        self.root = Path(root)
        self.list_file = Path(list_file)
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0
        entries = read_list(self.list_file, self.root, labels_relative_to=spec.labels_relative_to)
        self.entries = entries[:num_samples] if num_samples else entries
        if getattr(transform, "needs_label", False):
            unlabelled = [e for e in self.entries if e.label is None]
            if unlabelled:
                raise DatasetError(
                    f"{self.list_file}:{unlabelled[0].line}: training needs 'image label' lines; "
                    f"{len(unlabelled)} line(s) have no label (is this a test list?)"
                )
        self._lut = spec.lut()

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation of ``epoch`` (call before iterating that epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.entries)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The decoded BGR image and the mapped uint8 label (or None), before the transform."""
        entry = self.entries[index]
        where = f"{self.list_file}:{entry.line}"
        try:
            image = read_image(entry.image)
            label = self._lut[read_label(entry.label)] if entry.label is not None else None
        except DatasetError as exc:
            raise SampleError(f"{where}: {exc}") from None
        if label is not None and label.shape != image.shape[:2]:
            raise SampleError(
                f"{where}: image {entry.image} is {image.shape[0]}x{image.shape[1]} but label {entry.label} is "
                f"{label.shape[0]}x{label.shape[1]} (expected equal sizes)"
            )
        return image, label

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self.entries):
            raise IndexError(f"index {index} out of range for {len(self.entries)} samples")
        image, label = self.load(index)
        sample = self.transform(image, label, self.rng(index))
        sample["name"] = self.entries[index].name
        sample["index"] = index
        return sample


def build_dataset(data_cfg, split: str, *, train: bool, seed: int = 0, eval_cfg=None, num_samples: int | None = None) -> SegmentationDataset:
    """The dataset of ``<data_cfg.lists>/<split>.lst``.

    ``train=True``: the official augmentation with ``data_cfg`` crop/base size, scale factor and
    flip. ``train=False``: validation sizing with ``eval_cfg`` crop/base size (``data_cfg``'s
    when ``eval_cfg`` is None). ``num_samples`` keeps the first N entries (official
    TEST.NUM_SAMPLES; callers pass ``data_cfg.val_num_samples`` for per-epoch validation)."""
    spec = get_spec(data_cfg.dataset, data_cfg.classes)
    if train:
        transform = TrainTransform.from_spec(
            spec, crop_size=data_cfg.crop_size, base_size=data_cfg.base_size, scale_factor=data_cfg.scale_factor, flip=data_cfg.random_flip
        )
    else:
        sizing = eval_cfg if eval_cfg is not None else data_cfg
        transform = EvalTransform.from_spec(spec, crop_size=sizing.crop_size, base_size=sizing.base_size)
    return SegmentationDataset(spec, data_cfg.root, Path(data_cfg.lists) / f"{split}.lst", transform, seed=seed, num_samples=num_samples)


def worker_init_fn(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: no OpenCV thread pool inside workers (the workers are the
    parallelism). Augmentation seeding needs nothing here (see the module docstring)."""
    cv2.setNumThreads(0)
