"""Training data: datasets of a recipe, resumable samplers and the per-epoch loaders.

The train sampler is ``DistributedSampler`` (shuffled with ``train.seed + epoch``, padded to a
multiple of the world size, rank ``r`` takes every ``W``-th index) that can skip the batches of
an interrupted epoch. With one process it is the same permutation, un-sharded. Each loader gets
a private generator, so creating an iterator never consumes the global RNG (bit-exact resume).
Augmentation is a pure function of (seed, epoch, index) (``hrseg.data``), so any number of
workers and ranks see the same augmented sample.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, default_collate

from hrseg.data import build_dataset, worker_init_fn
from hrseg.recipe import Recipe
from hrseg.runtime.distributed import DistInfo


class ResumableDistributedSampler(DistributedSampler):
    """``DistributedSampler`` (same shuffling and padding) that can skip the first ``start``
    indices of its shard, to resume in the middle of an epoch."""

    def __init__(self, dataset: Dataset, *, num_replicas: int, rank: int, seed: int, start: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.start :])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)


class ShardSampler(Sampler[int]):
    """Validation: rank r takes indices r, r + W, r + 2W, ... (no padding, no duplicates)."""

    def __init__(self, length: int, num_replicas: int, rank: int) -> None:
        self.indices = list(range(rank, length, num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def build_datasets(recipe: Recipe, seed: int) -> dict[str, Dataset]:
    """``train`` (+ ``extra`` for extra epochs) and ``val`` datasets (``hrseg.data`` contract)."""
    data = recipe.data
    sets = {"train": build_dataset(data, data.train_split, train=True, seed=seed)}
    if recipe.train.extra_epochs > 0:
        sets["extra"] = build_dataset(data, recipe.train.extra_split, train=True, seed=seed)
    sets["val"] = build_dataset(data, data.val_split, train=False, seed=seed, num_samples=data.val_num_samples)
    return sets


def train_loader(dataset: Dataset, recipe: Recipe, info: DistInfo, epoch: int, start_step: int) -> DataLoader:
    """The epoch's loader; ``start_step`` optimizer steps of this epoch are skipped."""
    cfg = recipe.train
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    sampler = ResumableDistributedSampler(
        dataset, num_replicas=info.world_size, rank=info.rank, seed=cfg.seed, start=start_step * cfg.batch_size * cfg.accumulate_steps
    )
    sampler.set_epoch(epoch)
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=recipe.data.num_workers,
        pin_memory=info.device.type == "cuda",
        drop_last=True,
        worker_init_fn=worker_init_fn,
        # a private generator: creating the iterator must not consume the global RNG
        generator=torch.Generator().manual_seed(cfg.seed + epoch),
    )


def steps_in_epoch(dataset: Dataset, recipe: Recipe, info: DistInfo) -> int:
    """Optimizer steps the full epoch's loader gives (the official loop walks the whole loader)."""
    per_rank = math.ceil(len(dataset) / info.world_size)  # type: ignore[arg-type]
    return (per_rank // recipe.train.batch_size) // recipe.train.accumulate_steps


def same_size_batches(samples: list[dict]) -> list[dict]:
    """Validation's ``collate_fn``: the loader's ``eval.batch_size`` samples, collated into runs
    of consecutive samples of one image size. Images of different sizes cannot share a forward
    pass, and padding them to one size would change what the network sees at the borders."""
    runs: list[list[dict]] = []
    for sample in samples:
        if runs and _size(sample) == _size(runs[-1][0]):
            runs[-1].append(sample)
        else:
            runs.append([sample])
    return [default_collate(run) for run in runs]


def _size(sample: dict) -> tuple:
    return tuple(sample["image"].shape), tuple(sample["label"].shape) if "label" in sample else ()


def val_loader(dataset: Dataset, recipe: Recipe, info: DistInfo) -> DataLoader:
    """Batches of up to ``eval.batch_size`` validation images, as lists of same-size batches
    (``same_size_batches``)."""
    return DataLoader(
        dataset,
        batch_size=recipe.eval.batch_size,
        collate_fn=same_size_batches,
        sampler=ShardSampler(len(dataset), info.world_size, info.rank),  # type: ignore[arg-type]
        num_workers=recipe.data.num_workers,
        pin_memory=info.device.type == "cuda",
        worker_init_fn=worker_init_fn,
        generator=torch.Generator().manual_seed(recipe.train.seed),
    )
