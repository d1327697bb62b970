"""Loading a segmentation checkpoint for inference: build the recipe's model, load ours or an
official release strictly, and prepare it along an inference path (``inference_paths``).
``evaluate`` and ``predict`` share it."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import torch

from hrseg.evaluation.inference_paths import prepare_inference_model
from hrseg.models import build_model_from_config
from hrseg.models.checkpoint import load_checkpoint
from hrseg.recipe import Recipe

log = logging.getLogger(__name__)


@dataclasses.dataclass
class LoadedModel:
    """The model callable plus what evaluation needs to know about it."""

    model: Any  # nn.Module or a prepared callable with .align_corners / .num_classes
    num_classes: int
    checkpoint: Path
    report: str
    path: str


def load_model(recipe: Recipe, checkpoint: str | os.PathLike, device: torch.device, *, path: str = "eager") -> LoadedModel:
    """Build ``recipe.model``, load ``checkpoint`` strictly (ours or an official release) and
    prepare it for inference along ``path`` (``hrseg.evaluation.inference_paths``; ``eager`` = the model as built).

    The model is built with ``recipe.model.align_corners`` as it is: decide it for the checkpoint
    first (``hrseg.evaluation.alignment``; ``evaluate`` and ``predict`` do). The loaded model
    carries it (``loaded.model.align_corners``)."""
    checkpoint = Path(checkpoint)
    model = build_model_from_config(recipe.model)
    report = load_checkpoint(model, checkpoint)
    log.info("%s", report.summary())
    model = model.to(device).eval()
    chosen = "eager"
    if path != "eager":
        prepared = prepare_inference_model(model, path, device)
        chosen = prepared.path
        model = prepared
    return LoadedModel(
        model=model,
        num_classes=int(recipe.model.num_classes),
        checkpoint=checkpoint,
        report=report.summary(),
        path=chosen,
    )
