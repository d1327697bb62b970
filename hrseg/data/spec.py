"""``DatasetSpec``: everything about a dataset that is not on disk.

A spec names the classes, how raw label values map to class indices (a 256-entry lookup
table, ignore = 255), which left/right classes a horizontal flip swaps, the normalisation and
which official resizing rules its training and validation pipelines follow.

Ignore is 255 in every uint8 label array. PASCAL-Context's official ignore value is -1; hrseg
stores it as 255 (the loss and metrics use ``spec.ignore_label``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IGNORE_LABEL = 255

TrainResize = Literal["long_side", "short_side", "lip"]
EvalResize = Literal["none", "crop_size", "short_side"]


@dataclass(frozen=True)
class DatasetSpec:
    """Static description of one dataset variant (``DATASETS[name]``).

    ``label_map[v]`` is the class index (or ``ignore_label``) of raw label value ``v``.
    ``layout`` is the ``hrseg prepare`` name whose list files this spec reads.
    ``train_resize``: ``long_side`` = the generic official pipeline; ``short_side`` = first
    resize the short side to ``base_size`` (COCO-Stuff, ADE20K); ``lip`` = flip with left/right
    swap, then resize to the crop size ignoring aspect (LIP). ``eval_resize`` (testval sizing):
    ``none`` = original image; ``crop_size`` = resize to the crop size (LIP); ``short_side`` =
    short side to ``base_size``, pad bottom/right to a multiple of 8 with the mean colour.
    ``labels_relative_to``: list-file label paths are relative to the dataset root, or (for
    labels that ``hrseg prepare`` generated, PASCAL-Context) to the list file's directory.
    """

    name: str
    num_classes: int
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    label_map: tuple[int, ...]
    layout: str
    ignore_label: int = IGNORE_LABEL
    flip_pairs: tuple[tuple[int, int], ...] = ()
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    train_resize: TrainResize = "long_side"
    eval_resize: EvalResize = "none"
    labels_relative_to: Literal["root", "list"] = "root"

    def __post_init__(self) -> None:
        # Programming errors in the tables below, not user input: fail loudly at import.
        if len(self.class_names) != self.num_classes or len(self.palette) != self.num_classes:
            raise ValueError(f"{self.name}: {self.num_classes} classes but {len(self.class_names)} names / {len(self.palette)} colours")
        if len(self.label_map) != 256:
            raise ValueError(f"{self.name}: label_map needs 256 entries, got {len(self.label_map)}")
        bad = sorted({v for v in self.label_map if not (0 <= v < self.num_classes or v == self.ignore_label)})
        if bad:
            raise ValueError(f"{self.name}: label_map produces invalid values {bad}")

    def lut(self) -> np.ndarray:
        """``label_map`` as a uint8 array: ``spec.lut()[raw_label]`` is the training label."""
        return np.asarray(self.label_map, dtype=np.uint8)

    def flip_lut(self) -> np.ndarray:
        """uint8 table that swaps the ``flip_pairs`` class indices (identity elsewhere)."""
        return swap_table(self.flip_pairs)


def swap_table(pairs: Iterable[tuple[int, int]]) -> np.ndarray:
    """A 256-entry uint8 table exchanging each pair of values (identity elsewhere)."""
    table = np.arange(256, dtype=np.uint8)
    for a, b in pairs:
        table[a], table[b] = b, a
    return table


def lut_from_pairs(pairs: Iterable[tuple[int, int]], ignore: int = IGNORE_LABEL) -> tuple[int, ...]:
    """A 256-entry table with ``table[raw] = index`` for the given pairs, ``ignore`` elsewhere."""
    table = [ignore] * 256
    for raw, index in pairs:
        table[raw] = index
    return tuple(table)


def bit_palette(n: int) -> tuple[tuple[int, int, int], ...]:
    """The PASCAL VOC bit-interleaved colour map (the official ``get_palette``), first ``n``."""
    colours = []
    for j in range(n):
        lab, r, g, b, i = j, 0, 0, 0, 0
        while lab:
            r |= ((lab >> 0) & 1) << (7 - i)
            g |= ((lab >> 1) & 1) << (7 - i)
            b |= ((lab >> 2) & 1) << (7 - i)
            i += 1
            lab >>= 3
        colours.append((r, g, b))
    return tuple(colours)
