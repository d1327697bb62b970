"""DVC stage `eval_<row>`: the official test protocol on the trained model; metrics for DVC.

The evaluation's MLflow run is linked to the training run that produced the model by the
model file's sha256 (a tag of the training run; ``hrseg.runtime.tracker.find_training_run``),
not by a side file."""

from __future__ import annotations

if __name__ == "__main__":  # run in a process forked from a warm interpreter (hrseg.runtime.warm), before torch is imported below
    from hrseg.runtime.warm import run_warm

    run_warm()

import argparse
from pathlib import Path

from common import PipelineParams, stage_main

from hrseg.evaluation.evaluate import evaluate
from hrseg.tracking.tracker import MlflowTracker


def eval_stage(row: str, model: Path, out: Path, params: PipelineParams) -> dict:
    resolved = params.resolve(row)
    tracker = MlflowTracker(tags=params.tags("eval"), run_name=resolved.run_name("eval"))
    return evaluate(resolved.recipe, model, out, device=params.device_arg, tracker=tracker)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("row")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    stage_main(parser, lambda args, params: eval_stage(args.row, args.model, args.out, params), torchrun=True)
