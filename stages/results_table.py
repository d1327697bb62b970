"""DVC stage `results_table`: the README results table from the rows' eval metrics.

Writes results/results_table.md and the same table between the markers in README.md (both
declared outputs; README.md is `persist` so DVC never deletes it before the stage runs), so
`dvc repro results_table` keeps both byte-identical to the metrics."""

from __future__ import annotations

import argparse
from pathlib import Path

from common import PipelineParams, pipeline_rows, stage_main

from hrseg import io as hio
from hrseg.tracking.results_table import build_table, describe_row, replace_between_markers
from hrseg.tracking.tracker import start_tracking


def table_rows(params: PipelineParams) -> list:
    rows = []
    for name in pipeline_rows():
        recipe = params.resolve(name).recipe
        model = f"{recipe.model.backbone} + {recipe.model.head.upper()}"
        rows.append(describe_row(name, recipe.data.dataset, model, f"{recipe.data.train_split} -> {recipe.eval.split}"))
    return rows


def results_table(results: Path, out: Path, readme: Path, params: PipelineParams) -> str:
    rows = table_rows(params)
    table = build_table({row.name: results / row.name / "metrics.json" for row in rows}, params.profile, rows)
    hio.write_text(out, table)
    hio.write_text(readme, replace_between_markers(readme.read_text(encoding="utf-8"), table, source=str(readme)))
    with start_tracking("hrseg/pipeline", "results_table", tags=params.tags("results_table"), params={"profile": params.profile}) as run:
        run.log_artifact(out)
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path, required=True, help="results/eval (one folder per row)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    stage_main(parser, lambda args, params: results_table(args.results, args.out, args.readme, params))
