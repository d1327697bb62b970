"""DVC stage `train_<row>`: train the row's recipe (under torchrun), export its final weights.

Resumable state lives in runs/<row>/<key>/ (git- and DVC-ignored private state of this stage,
so DVC does not delete it when a killed stage is re-run); <key> hashes the resolved settings,
so a run with other settings starts afresh instead of resuming the wrong one. Once the model,
metrics, log and curve are copied to the stage's outputs, that folder is removed: a finished
run needs no resume state, and DVC's cache holds the model.
"""

from __future__ import annotations

if __name__ == "__main__":  # run in a process forked from a warm interpreter (hrseg.runtime.warm), before torch is imported below
    from hrseg.runtime.warm import run_warm

    run_warm()

import argparse
import os
import shutil
from pathlib import Path

from common import PipelineParams, recipe_key, stage_main

from hrseg import io as hio
from hrseg.engine.train import train
from hrseg.recipe import Recipe
from hrseg.tracking.tracker import MlflowTracker

TRAINING_KEYS = ("model", "data", "train")  # eval settings do not change the weights


def run_dir(recipe: Recipe, params: PipelineParams) -> Path:
    settings = {k: v for k, v in recipe.to_dict().items() if k in TRAINING_KEYS}
    return Path("runs") / recipe.name / recipe_key(settings, params.nproc_per_node * params.nnodes)


def train_stage(row: str, model_dir: Path, results_dir: Path, params: PipelineParams) -> dict:
    resolved = params.resolve(row)
    work = run_dir(resolved.recipe, params)
    tracker = MlflowTracker(tags=params.tags("train"), run_name=resolved.run_name("train"))
    metrics = train(resolved.recipe, work, device=params.device_arg, tracker=tracker)
    if int(os.environ.get("RANK", "0")) == 0:
        hio.write_json(results_dir / "metrics.json", metrics)
        hio.copy_file(work / "log.csv", results_dir / "log.csv")
        hio.copy_file(work / "curve.png", results_dir / "curve.png")
        hio.copy_file(work / "final.pth", model_dir / "model.pth")
        shutil.rmtree(work, ignore_errors=True)
    return metrics


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("row")
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--results", type=Path, required=True)
    stage_main(parser, lambda args, params: train_stage(args.row, args.model_dir, args.results, params), torchrun=True)
