"""The Cityscapes benchmark-server format: labelId PNGs (palettised with the official colours)
from trainId predictions, using ``cityscapesscripts``' label table."""

from __future__ import annotations

import os

import numpy as np
import torch
from cityscapesscripts.helpers.labels import labels

from hrseg.data.cityscapes import train_id_to_label_id
from hrseg.visualize import save_label_png


def cityscapes_label_id_lut() -> np.ndarray:
    """256-entry uint8 table trainId -> labelId (``cityscapesscripts``); other values -> 0."""
    lut = np.zeros(256, np.uint8)
    for train_id, label_id in train_id_to_label_id().items():
        lut[train_id] = label_id
    return lut


def cityscapes_label_id_palette() -> list[tuple[int, int, int]]:
    """The official colour of every labelId 0..33 (for viewing submission PNGs)."""
    palette = [(0, 0, 0)] * 34
    for label in labels:
        if 0 <= label.id < 34:
            palette[label.id] = tuple(label.color)
    return palette


def write_cityscapes_result(path: str | os.PathLike, pred_train_ids: np.ndarray | torch.Tensor) -> None:
    """A submission-ready labelId PNG (palettised, values = labelIds) from trainId predictions."""
    pred = pred_train_ids.cpu().numpy() if isinstance(pred_train_ids, torch.Tensor) else np.asarray(pred_train_ids)
    save_label_png(path, cityscapes_label_id_lut()[pred.astype(np.uint8)], cityscapes_label_id_palette())
