"""What a training run reports: progress bar / log lines, ``log.csv``, the training curve,
prediction overlays, and the MLflow run (name, tags, params)."""

from __future__ import annotations

import csv
import io as _io
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from hrseg import io as hio
from hrseg.config import flatten
from hrseg.errors import HrsegError
from hrseg.models.segmentation import resize_logits
from hrseg.recipe import Recipe, load_recipe
from hrseg.runtime.distributed import DistInfo
from hrseg.visualize import denormalize, prediction_panel, save_png

log = logging.getLogger(__name__)

#: log.csv columns. No wall-clock values: the file is a DVC plot and must be reproducible
#: (epoch times go to MLflow as train/epoch_time_s).
LOG_COLUMNS = ("epoch", "phase", "iteration", "lr", "train_loss", "val_miou", "val_pixel_acc", "val_mean_acc")


class Progress:
    """A rich progress bar on a TTY (rank 0), plain log lines every ``log_every`` steps otherwise."""

    def __init__(self, enabled: bool, total_epochs: int) -> None:
        self.total_epochs = total_epochs
        self.bar = None
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.bar.start()
        self.enabled = enabled
        self.task = None
        # log lines go through rich's stderr proxy while the bar is live (printed above it)
        self._swapped: list[tuple[logging.StreamHandler, Any]] = []
        if self.bar is not None and sys.stderr is not sys.__stderr__:
            for handler in logging.getLogger().handlers:
                if isinstance(handler, logging.StreamHandler) and handler.stream is sys.__stderr__:
                    self._swapped.append((handler, handler.setStream(sys.stderr)))

    def start_epoch(self, epoch: int, steps: int, done: int) -> None:
        if self.bar is not None:
            if self.task is not None:
                self.bar.remove_task(self.task)
            self.task = self.bar.add_task(f"epoch {epoch + 1}/{self.total_epochs}", total=steps, completed=done, stats="")

    def update(self, epoch: int, step: int, steps: int, loss: float, lr: float, ips: float, *, log_line: bool) -> None:
        stats = f"loss {loss:.4f} lr {lr:.3e} {ips:.1f} img/s"
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, completed=step + 1, stats=stats)
        elif self.enabled and log_line:
            log.info("epoch %d/%d iter %d/%d %s", epoch + 1, self.total_epochs, step + 1, steps, stats)

    def close(self) -> None:
        if self.bar is not None:
            for handler, stream in self._swapped:
                handler.setStream(stream)
            self._swapped = []
            self.bar.stop()
            self.bar = None


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


def write_overlays(model: nn.Module, dataset: Dataset, recipe: Recipe, info: DistInfo, spec: Any, out: Path, count: int) -> list[Path]:
    """Titled ``image | ground truth | prediction`` panels with a legend of the classes present
    (``hrseg.visualize.prediction_panel``) for the first ``count`` validation images."""
    import numpy as np


    if count <= 0 or len(dataset) == 0:  # type: ignore[arg-type]
        return []
    model.eval()
    mean = getattr(spec, "mean", (0.485, 0.456, 0.406))
    std = getattr(spec, "std", (0.229, 0.224, 0.225))
    paths = []
    for i in range(min(count, len(dataset))):  # type: ignore[arg-type]
        sample = dataset[i]
        image = sample["image"].unsqueeze(0).to(info.device)
        with torch.no_grad():
            logits = model(image)["out"]
        logits = resize_logits(logits.float(), image.shape[-2:], align_corners=model.align_corners)
        pred = logits.argmax(1)[0].cpu().numpy().astype(np.uint8)
        label = sample.get("label")
        label = None if label is None or tuple(label.shape) != pred.shape else np.asarray(label)
        picture = prediction_panel(
            denormalize(sample["image"], mean, std), pred, spec.palette, label,
            ignore_label=spec.ignore_label, class_names=getattr(spec, "class_names", None),
        )  # fmt: skip
        name = Path(str(sample.get("name", f"{i:04d}"))).name
        path = out / f"{i:02d}_{name}.png"
        save_png(path, picture)
        paths.append(path)
    return paths


#: Recipe keys left out of run names (paths and settings that do not change the result).
_NOT_IN_RUN_NAME = ("name", "description", "data.root", "data.lists", "data.num_workers", "train.pretrained", "train.log_every", "train.checkpoint_every", "eval.num_overlays")


def run_name_for(recipe: Recipe, limit: int = 6) -> str:
    """``"train <recipe> key=value ..."``: the recipe name plus the values that differ from the
    recipe file (DVC ``-S`` sweeps, ``--set`` overrides), train settings first, in field order."""
    name = f"train {recipe.name}"
    try:
        base = flatten(load_recipe(recipe.name).to_dict())
    except HrsegError:
        return name
    current = flatten(recipe.to_dict())
    order = {"train": 0, "model": 1, "data": 2, "eval": 3}
    keys = [k for k in current if k not in _NOT_IN_RUN_NAME and base.get(k) != current[k]]
    keys.sort(key=lambda k: order.get(k.split(".")[0], 4))  # stable: field order within a section
    parts = [f"{k.rsplit('.', 1)[-1]}={_short(current[k])}" for k in keys]
    return " ".join([name, *parts[:limit]]) + (" ..." if len(parts) > limit else "")


def _short(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(map(str, value)) + "]"
    return str(value)


def start_run_tracking(
    recipe: Recipe,
    info: DistInfo,
    *,
    enabled: bool,
    uri: str | None,
    run_id: str | None,
    run_name: str | None,
    profile: str | None,
    tags: Mapping[str, Any] | None = None,
) -> Any:
    """The MLflow run of a training (rank 0; a disabled tracker elsewhere or when off/down)."""
    from hrseg.tracking.tracker import params_from_dict, start_tracking

    run_tags: dict[str, Any] = {
        "hrseg.recipe": recipe.name,
        "hrseg.stage": "train",
        "hrseg.dataset": recipe.data.dataset,
        "hrseg.model": recipe.model.name,
        "world_size": info.world_size,
        "device": str(info.device) if info.device.type == "cpu" else torch.cuda.get_device_name(info.device),
        "torch": torch.__version__,
    }
    if profile:
        run_tags["hrseg.profile"] = profile
    if recipe.description:
        # the recipe file's description as the run's note, not as a parameter: overrides may
        # have changed what it says, and the parameters show what really ran
        run_tags["mlflow.note.content"] = f"Recipe {recipe.name}: {recipe.description}. The parameters show the values that ran (after profile and overrides)."
    run_tags.update({str(k): str(v) for k, v in (tags or {}).items()})
    return start_tracking(
        f"hrseg/{recipe.data.dataset}",
        run_name or run_name_for(recipe),
        tags=run_tags,
        params=params_from_dict({k: v for k, v in recipe.to_dict().items() if k != "description"}),
        uri=uri,
        run_id=run_id,
        enabled=enabled and info.is_main,
    )
