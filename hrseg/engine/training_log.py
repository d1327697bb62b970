"""A training run's per-epoch history as files: ``log.csv`` (a DVC plot) and the training curve
(train loss, learning rate and validation mIoU per epoch; drawn with PIL, no matplotlib)."""

from __future__ import annotations

import csv
import io as _io
from pathlib import Path
from typing import Any

from hrseg import io as hio
from hrseg.visualize import Picture, line_charts

#: log.csv columns. No wall-clock values: the file is a DVC plot and must be reproducible
#: (epoch times go to MLflow as train/epoch_time_s).
LOG_COLUMNS = ("epoch", "phase", "iteration", "lr", "train_loss", "val_miou", "val_pixel_acc", "val_mean_acc")


def write_log_csv(path: Path, history: list[dict[str, Any]]) -> None:
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOG_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in LOG_COLUMNS})
    hio.write_text(path, buffer.getvalue())


def training_curve(history: list[dict[str, Any]]) -> Picture:
    """Train loss, learning rate and validation mIoU per epoch, side by side: a ``Picture``
    (``hrseg.visualize.line_charts``; it saves like a matplotlib figure, ``.savefig``)."""
    epochs = [r["epoch"] for r in history]
    charts = []
    for key, title in (("train_loss", "train loss"), ("lr", "learning rate"), ("val_miou", "val mIoU")):
        points = [(e, r[key]) for e, r in zip(epochs, history) if r.get(key) is not None]
        charts.append((title, [e for e, _ in points], [v for _, v in points]))
    return line_charts(charts, xlabel="epoch", size=(1000, 320))


def write_training_curve(path: Path, history: list[dict[str, Any]]) -> Picture:
    """Write ``training_curve(history)`` as a PNG to ``path``; return the picture (for MLflow:
    ``MlflowTracker.log_figure`` saves it like a figure, with the same PNG bytes)."""
    picture = training_curve(history)
    hio.write_bytes(path, picture.png())
    return picture
