"""Re-measure the times the README quotes, from a fresh clone, and print them in its words.

    .venv/bin/python benchmarks/readme_times.py                   # set-up, pipeline and tests
    .venv/bin/python benchmarks/readme_times.py --only setup,row  # a part (setup, row, pipeline, tests)
    .venv/bin/python benchmarks/readme_times.py --json benchmarks/results/readme_times.json
    .venv/bin/python benchmarks/readme_times.py --logs /tmp/times  # keep the stamped logs

What it runs, each in a fresh `git clone` of this checkout's HEAD in a temporary folder (so
uncommitted changes are not measured), exactly as the README's commands do:

- ``setup``: ``python3 -m venv .venv && .venv/bin/pip install -c constraints.txt -e .``;
- ``row``: ``dvc repro eval_cityscapes_ocr`` in that clone (one row and what it needs);
- ``pipeline``: the rest of ``dvc repro`` (every other stage);
- ``tests``: ``scripts/test.sh`` in a second fresh clone (its own venv and install).

Wall-clock seconds of each, plus the machine (CPU model, cores, load average before and after)
and the date, because these numbers move with the machine and its load: run it on a quiet
machine. Needs the network (or the local package sources) for the installs; takes as long as
the README says it does (about half an hour on a 2-core machine).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PARTS = ("setup", "row", "pipeline", "tests")


def run(cmd: str, cwd: Path, log: Path) -> float:
    """Run ``cmd`` through bash in ``cwd``; its output goes to ``log``, each line prefixed with
    the seconds since the start; return wall seconds."""
    start = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(["bash", "-c", cmd], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        for line in process.stdout:
            out.write(f"{time.perf_counter() - start:8.2f} {line}")
        returncode = process.wait()
    seconds = time.perf_counter() - start
    if returncode != 0:
        raise SystemExit(f"`{cmd}` failed in {cwd} (exit {returncode}); see {log}")
    return seconds


def stage_times(log: Path) -> dict[str, dict[str, float]]:
    """Per DVC stage of a ``run`` log: ``work`` from the stage's first to its last own log line
    (``HH:MM:SS LEVEL ...``), and ``fixed``, the rest of its time from DVC's "Running stage"
    to the next one (DVC's checks, process start-up, DVC's lock and cache updates after it)."""
    marks: list[tuple[str, float]] = []
    work: dict[str, list[float]] = {}
    end = 0.0
    for line in log.read_text(errors="replace").splitlines():
        stamp, _, text = line.strip().partition(" ")
        try:
            end = float(stamp)
        except ValueError:
            continue
        started = re.match(r"Running stage '([\w-]+)'", text)
        if started:
            marks.append((started.group(1), end))
        elif marks and re.match(r"\d\d:\d\d:\d\d \w+ ", text):
            work.setdefault(marks[-1][0], []).append(end)
    times = {}
    for i, (name, begin) in enumerate(marks):
        total = (marks[i + 1][1] if i + 1 < len(marks) else end) - begin
        own = work.get(name, [begin])
        times[name] = {"total": round(total, 2), "work": round(own[-1] - own[0], 2), "fixed": round(total - (own[-1] - own[0]), 2)}
    return times


def clone(into: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(REPO), str(into)], check=True)
    return into


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "date": datetime.date.today().isoformat()}


def measure(parts: list[str], work: Path, keep: Path | None) -> dict:
    """``seconds`` per part; for the row and pipeline parts also ``stages`` (their
    ``stage_times``) and ``changed_files`` (committed files the pipeline changed; empty: every
    committed result and dvc.lock reproduced). With ``keep``, the logs are copied there."""
    times: dict[str, float] = {}
    results: dict = {"seconds": times}
    logs = work / "logs"
    logs.mkdir()

    def timed(part: str, cmd: str, repo: Path) -> None:
        log = logs / f"{part}.log"
        times[part] = run(cmd, repo, log)
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(log, keep / log.name)

    env_setup = "python3 -m venv .venv && .venv/bin/pip install -q -c constraints.txt -e ."
    if {"setup", "row", "pipeline"} & set(parts):
        repo = clone(work / "pipeline")
        timed("setup", env_setup, repo)
        if "row" in parts or "pipeline" in parts:
            timed("row", ". .venv/bin/activate && dvc repro eval_cityscapes_ocr", repo)
            results["stages"] = {"row": stage_times(logs / "row.log")}
        if "pipeline" in parts:
            timed("pipeline", ". .venv/bin/activate && dvc repro", repo)
            results["stages"]["pipeline"] = stage_times(logs / "pipeline.log")
            status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, capture_output=True, text=True, check=True)
            results["changed_files"] = [line for line in status.stdout.split("\n") if line]
            print(f"committed files the pipeline changed: {', '.join(results['changed_files']) or 'none'}")
    if "tests" in parts:
        timed("tests", "scripts/test.sh", clone(work / "tests"))
        summary = pytest_summary(logs / "tests.log")
        if summary:
            print(f"scripts/test.sh: {summary}")
    return results


def pytest_summary(log: Path) -> str | None:
    """pytest's last summary line (``610 passed, 4 skipped in 701.2s``), kept because the
    temporary clone and its logs are removed at the end."""
    lines = [re.sub(r"^\s*\d+\.\d+ ", "", line).strip("= \n") for line in log.read_text(errors="replace").splitlines() if re.search(r"\d+ (passed|failed)", line)]
    return lines[-1] if lines else None


def in_words(times: dict[str, float]) -> list[str]:
    minutes = {k: v / 60 for k, v in times.items()}
    lines = []
    if "setup" in minutes:
        lines.append(f"installing (venv + pip install -c constraints.txt -e .): {minutes['setup']:.1f} minutes")
    if "row" in minutes:
        lines.append(f"`dvc repro eval_cityscapes_ocr` from a fresh clone: {minutes['row']:.1f} minutes")
    if "pipeline" in minutes:
        total = minutes["pipeline"] + minutes.get("row", 0.0)
        lines.append(f"the whole embedded `dvc repro`: {total:.1f} minutes ({minutes['pipeline']:.1f} after that row)")
    if "tests" in minutes:
        lines.append(f"the README test command (`scripts/test.sh`, with its install): {minutes['tests']:.1f} minutes")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of {', '.join(PARTS)}")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--logs", type=Path, help="keep the logs (lines stamped with seconds) in this folder")
    args = parser.parse_args()
    parts = [p for p in args.only.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise SystemExit(f"unknown part(s) {', '.join(unknown)}; expected {', '.join(PARTS)}")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="hrseg-readme-times-") as tmp:
        results = measure(parts, Path(tmp), args.logs)
    times = results["seconds"]
    report = {**machine(), "load_before": load_before, "load_after": os.getloadavg(), **results}
    if "stages" in results:
        every = [t for part in results["stages"].values() for t in part.values()]
        print(f"{len(every)} stages: own work {sum(t['work'] for t in every):.0f} s, fixed cost {sum(t['fixed'] for t in every):.0f} s")
    print(f"{report['date']}, {report['cpu']}, {report['cores']} cores, load {load_before[0]:.1f} -> {report['load_after'][0]:.1f}:")
    for line in in_words(times):
        print(f"- {line}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
