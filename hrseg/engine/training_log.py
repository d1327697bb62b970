"""A training run's per-epoch history as files: ``log.csv`` (a DVC plot) and the training curve
(train loss, learning rate and validation mIoU per epoch)."""

from __future__ import annotations

import csv
import io as _io
from pathlib import Path
from typing import Any

from hrseg import io as hio

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


def training_curve(history: list[dict[str, Any]]) -> Any:
    """A matplotlib figure (Agg) of train loss, LR and val mIoU per epoch."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state, Agg rendering

    fig = Figure(figsize=(10, 3.2))
    epochs = [r["epoch"] for r in history]
    for i, (key, title) in enumerate((("train_loss", "train loss"), ("lr", "learning rate"), ("val_miou", "val mIoU"))):
        ax = fig.add_subplot(1, 3, i + 1)
        points = [(e, r[key]) for e, r in zip(epochs, history) if r.get(key) is not None]
        if points:
            ax.plot(*zip(*points), marker="o" if len(points) < 30 else None)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def write_training_curve(path: Path, history: list[dict[str, Any]]) -> Any:
    """Write ``training_curve(history)`` as a PNG to ``path``; return the figure (for MLflow)."""
    fig = training_curve(history)
    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    hio.write_bytes(path, buffer.getvalue())
    return fig
