"""Prediction overlays of a finished training run: ``image | ground truth | prediction`` panels
for the first validation images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from hrseg.models.segmentation import resize_logits
from hrseg.recipe import Recipe
from hrseg.runtime.distributed import DistInfo
from hrseg.visualize import denormalize, prediction_panel, save_png


def write_overlays(model: nn.Module, dataset: Dataset, recipe: Recipe, info: DistInfo, spec: Any, out: Path, count: int) -> list[Path]:
    """Titled ``image | ground truth | prediction`` panels with a legend of the classes present
    (``hrseg.visualize.prediction_panel``) for the first ``count`` validation images."""
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
