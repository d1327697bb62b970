"""DVC stage `results_table`: the README results table from the committed eval metrics.

Writes results/results_table.md (the DVC output) and the same table between the markers in
README.md, so `dvc repro results_table` keeps both byte-identical to the metrics."""

from __future__ import annotations

import argparse
from pathlib import Path

from common import stage_main, stage_tags

from hrseg import io
from hrseg.results import PUBLISHED, build_table, replace_between_markers
from hrseg.tracking import start_tracking


def results_table(results: Path, out: Path, readme: Path, params: dict) -> str:
    table = build_table({row.name: results / row.name / "metrics.json" for row in PUBLISHED}, params["profile"])
    io.write_text(out, table)
    io.write_text(readme, replace_between_markers(readme.read_text(encoding="utf-8"), table, source=str(readme)))
    with start_tracking("hrseg/pipeline", "results_table", tags=stage_tags(params, "results_table"), params={"profile": params["profile"]}) as run:
        run.log_artifact(out)
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path, required=True, help="results/eval (one folder per recipe)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    stage_main(parser, lambda args, params: results_table(args.results, args.out, args.readme, params))
