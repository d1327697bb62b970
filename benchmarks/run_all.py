"""Run every benchmark and write the results file.

    .venv/bin/python benchmarks/run_all.py            # full: about 30-40 minutes on 2 CPU cores
    .venv/bin/python benchmarks/run_all.py --quick    # smoke run: a few minutes

Writes benchmarks/results/results.json (every row, with the machine and the command) and
benchmarks/RESULTS.md (the tables). Run it on an otherwise idle machine: the figures are
medians over repeats after warm-up, but other load still shifts them.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_data  # noqa: E402
import bench_eval  # noqa: E402
import bench_model  # noqa: E402
import gpu_check  # noqa: E402

from hrseg import io  # noqa: E402

#: Sections of RESULTS.md written by gpu_check.py and by hand from bench_memory.py runs.
KEPT_SECTIONS = ((gpu_check.START, gpu_check.END), ("<!-- memory:start -->", "<!-- memory:end -->"), ("<!-- compile:start -->", "<!-- compile:end -->"), ("<!-- winograd:start -->", "<!-- winograd:end -->"), ("<!-- host_memory:start -->", "<!-- host_memory:end -->"), ("<!-- profile:start -->", "<!-- profile:end -->"))


def eval_table(rows: list[dict]) -> str:
    lines = [
        "| case | image | scales | method | images/s | speed-up vs plain loop | peak RSS MB | same argmax | max rel. diff |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["case"] != "scaling":
            scales = f"{len(r['scales'])}{' + flip' if r['flip'] else ''}"
            lines.append(
                f"| {r['case']} | {r['image']} | {scales} | {r['method']} | {r['images_per_s']:.3f} | {r['speedup_vs_plain_loop']:.2f}x | "
                f"{r['peak_rss_mb']:.0f} | {r['same_prediction']:.6f} | {r['max_rel_diff']:.1e} |"
            )
    lines += ["", "How one image's time grows (default `auto` path):", "", "| image | scales | seconds |", "|---|---|---:|"]
    for r in rows:
        if r["case"] == "scaling":
            lines.append(f"| {r['image']} | {', '.join(map(str, r['scales']))}{' + flip' if r['flip'] else ''} | {r['seconds']:.3f} |")
    return "\n".join(lines)


def data_table(rows: list[dict]) -> str:
    lines = ["| pipeline | workers | images/s | settings |", "|---|---:|---:|---|"]
    for r in rows:
        s = r["settings"]
        lines.append(f"| {r['name']} | {r['workers']} | {r['images_per_s']:.1f} | crop {s['crop_size'][0]}x{s['crop_size'][1]}, base {s['base_size']}, batch {s['batch_size']}, {s['images']} images |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--out-dir", type=Path, default=HERE)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    command = "benchmarks/run_all.py" + (" --quick" if args.quick else "")
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load_before = os.getloadavg()[0]
    results = {
        "command": command,
        "started": started,
        "model": bench_model.run(quick=args.quick),
        "evaluation": bench_eval.run(quick=args.quick),
        "data_loading": bench_data.run(quick=args.quick),
    }
    name = "results_quick" if args.quick else "results"
    old_md = args.out_dir / ("RESULTS_quick.md" if args.quick else "RESULTS.md")
    previous = old_md.read_text() if old_md.exists() else ""
    io.write_json(args.out_dir / "results" / f"{name}.json", results)
    text = "\n\n".join(
        [
            f"# Benchmark results{' (quick smoke run)' if args.quick else ''}",
            f"Measured {started} with `.venv/bin/python {command}` (1-min load average {load_before:.1f} before the run). "
            "Every figure is a median over repeats after warm-up; raw rows in "
            f"`benchmarks/results/{name}.json`.",
            "## Model forward and training step",
            bench_model.format_table(results["model"]),
            "## Evaluation: official test-time arithmetic, our loop vs a plain loop",
            eval_table(results["evaluation"]),
            "## Data loading (decode + augment)",
            data_table(results["data_loading"]),
        ]
    )
    results_md = args.out_dir / ("RESULTS_quick.md" if args.quick else "RESULTS.md")
    io.write_text(results_md, text + "\n")
    for start, end in KEPT_SECTIONS:  # written by other scripts: carried over unchanged
        if start in previous and end in previous:
            section = start + previous.split(start, 1)[1].split(end, 1)[0] + end
            gpu_check.replace_section(results_md, section, start, end)
    print(text)


if __name__ == "__main__":
    main()
