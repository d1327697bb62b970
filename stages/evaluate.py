"""DVC stage `eval_<recipe>`: the official test protocol on the trained model; metrics for DVC."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from common import device, read_params, relaunch_under_torchrun, resolve_recipe, run_name, stage_tags

from hrseg.evaluation.evaluate import evaluate


def train_run_id(name: str) -> str | None:
    """The MLflow run of the training stage that produced the model (written by stages/train.py)."""
    path = Path("runs") / name / "latest.json"
    return json.loads(path.read_text()).get("mlflow_run_id") if path.is_file() else None


def eval_stage(name: str, model: Path, out: Path, params: dict) -> dict:
    recipe = resolve_recipe(name, params)
    return evaluate(
        recipe,
        model,
        out,
        device=device(params),
        tags=stage_tags(params, "eval"),
        train_run_id=train_run_id(name),
        profile=params["profile"],
        run_name=run_name("eval", name, params),
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("recipe")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    params = read_params()
    relaunch_under_torchrun(params)
    eval_stage(args.recipe, args.model, args.out, params)
