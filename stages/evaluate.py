"""DVC stage `eval_<recipe>`: the official test protocol on the trained model; metrics for DVC."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import device, resolve_recipe, run_name, stage_main, stage_tags

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
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("recipe")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    stage_main(parser, lambda args, params: eval_stage(args.recipe, args.model, args.out, params), torchrun=True)
