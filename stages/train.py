"""DVC stage `train_<recipe>`: train one recipe (under torchrun), export its final weights.

Resumable state lives in runs/<recipe>/<key>/ (not a DVC output, so DVC does not delete it
when a killed stage is re-run); <key> hashes the resolved settings, so a run with other
settings starts afresh instead of resuming the wrong one.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from common import device, recipe_key, resolve_recipe, run_name, stage_main, stage_tags

from hrseg import io
from hrseg.engine.train import train
from hrseg.tracking import recorded_run_id

TRAINING_KEYS = ("model", "data", "train")  # eval settings do not change the weights


def run_dir(recipe, params: dict) -> Path:
    settings = {k: v for k, v in recipe.to_dict().items() if k in TRAINING_KEYS}
    return Path("runs") / recipe.name / recipe_key(settings, params["nproc_per_node"])


def train_stage(name: str, model_dir: Path, results_dir: Path, params: dict) -> dict:
    recipe = resolve_recipe(name, params)
    work = run_dir(recipe, params)
    metrics = train(
        recipe, work, device=device(params), profile=params["profile"], tags=stage_tags(params, "train"), run_name=run_name("train", name, params)
    )
    if int(os.environ.get("RANK", "0")) != 0:
        return metrics
    # what ran, so that `dvc exp show` tells the truth about every knob
    cfg = recipe.train
    height, width = recipe.data.crop_size
    resolved = {"lr": cfg.lr, "epochs": cfg.epochs, "batch_size": cfg.batch_size, "crop_height": height, "crop_width": width, "seed": cfg.seed}
    io.write_json(results_dir / "metrics.json", {**metrics, **resolved})
    io.copy_file(work / "log.csv", results_dir / "log.csv")
    io.copy_file(work / "final.pth", model_dir / "model.pth")
    io.write_json(Path("runs") / name / "latest.json", {"run_dir": str(work), "mlflow_run_id": recorded_run_id(work)})
    return metrics


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("recipe")
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--results", type=Path, required=True)
    stage_main(parser, lambda args, params: train_stage(args.recipe, args.model_dir, args.results, params), torchrun=True)
