"""Fixed start-up of every ``hrseg`` command and every DVC stage script, and what it imports.

    .venv/bin/python benchmarks/bench_startup.py              # everything, about a minute on 2 cores
    .venv/bin/python benchmarks/bench_startup.py --only info  # cases whose name contains "info"
    .venv/bin/python benchmarks/bench_startup.py --json benchmarks/results/startup.json

Each case runs as a fresh subprocess (``--repeats`` times, median reported), from the
repository root with this checkout on ``PYTHONPATH``. Two clocks: **wall** seconds and **CPU**
seconds (user + system of the child, from ``getrusage``). CPU time barely moves when other
processes share the machine, wall time does; on an idle machine they are close (start-up is
single-threaded). One extra ``python -X importtime`` run per case names the third-party
packages that cost the most (cumulative microseconds, so a package's own imports count).

Cases:
- ``hrseg --help`` and ``hrseg COMMAND --help``: what typing a command costs before it works;
- ``hrseg fetch list`` and ``hrseg info MODEL`` for every model (the whole command);
- ``stages/<name>.py --help``: a stage script's imports (argparse exits after them);
- set-up that every tracked stage pays after its imports: ``import torch``, ``import mlflow``
  and opening an MLflow run on a fresh and on an existing SQLite store.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
THIRD_PARTY = ("torch", "mlflow", "pandas", "matplotlib", "numpy", "cv2", "typer", "rich", "yaml", "PIL", "onnx", "onnxruntime", "dvc")

OPEN_RUN = """
import sys, mlflow
from mlflow import MlflowClient
client = MlflowClient(tracking_uri=sys.argv[1])
found = client.get_experiment_by_name("bench")
experiment = found.experiment_id if found else client.create_experiment("bench")
run = client.create_run(experiment)
client.set_terminated(run.info.run_id)
"""


@dataclass
class Result:
    name: str
    command: list[str]
    wall_s: float
    cpu_s: float
    walls: list[float] = field(default_factory=list)
    top_imports: list[tuple[str, float]] = field(default_factory=list)
    returncode: int = 0


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("COLUMNS", "80")
    return env


def run_once(command: list[str]) -> tuple[float, float, int]:
    """(wall s, child CPU s, return code) of one run, output discarded."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.returncode


def top_imports(command: list[str], limit: int = 3) -> list[tuple[str, float]]:
    """The ``limit`` costliest top-level third-party imports of ``command`` (seconds, cumulative)."""
    if command[0] != PY:
        return []
    proc = subprocess.run([PY, "-X", "importtime", *command[1:]], cwd=ROOT, env=_env(), capture_output=True, text=True)
    costs: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)$", line)
        if match and match.group(3).split(".")[0] in THIRD_PARTY:
            package = match.group(3).split(".")[0]
            costs[package] = max(costs.get(package, 0.0), int(match.group(1)) / 1e6)
    return sorted(costs.items(), key=lambda kv: -kv[1])[:limit]


def cases(store_dir: Path) -> list[tuple[str, list[str]]]:
    sys.path.insert(0, str(ROOT))
    from hrseg.models import MODELS

    hrseg = [PY, "-m", "hrseg.cli"]
    out = [("hrseg --help", [*hrseg, "--help"])]
    for command in ("train", "evaluate", "predict", "prepare", "synth", "export", "info", "runs", "ui", "fetch get"):
        out.append((f"hrseg {command} --help", [*hrseg, *command.split(), "--help"]))
    out.append(("hrseg fetch list", [*hrseg, "fetch", "list"]))
    out += [(f"hrseg info {name}", [*hrseg, "info", name]) for name in sorted(MODELS)]
    out += [(f"stages/{p.name} --help", [PY, str(p.relative_to(ROOT)), "--help"]) for p in sorted((ROOT / "stages").glob("*.py")) if p.name not in ("common.py", "dvc_yaml.py")]
    db = f"sqlite:///{(store_dir / 'mlflow.db').as_posix()}"
    out += [
        ("import torch", [PY, "-c", "import torch"]),
        ("import mlflow", [PY, "-c", "import mlflow"]),
        ("mlflow run, new store", [PY, "-c", OPEN_RUN, f"sqlite:///{(store_dir / 'fresh-{n}.db').as_posix()}"]),
        ("mlflow run, existing store", [PY, "-c", OPEN_RUN, db]),
    ]
    return out


def measure(name: str, command: list[str], repeats: int, store_dir: Path) -> Result:
    walls, cpus, code = [], [], 0
    for i in range(repeats):
        argv = [a.replace("{n}", str(i)) for a in command]  # a fresh store per repeat
        wall, cpu, code = run_once(argv)
        walls.append(wall)
        cpus.append(cpu)
    result = Result(name, command, statistics.median(walls), statistics.median(cpus), walls, returncode=code)
    if "{n}" not in " ".join(command):
        result.top_imports = top_imports(command)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="runs per case (median reported)")
    parser.add_argument("--only", default="", help="only the cases whose name contains this text")
    parser.add_argument("--json", type=Path, help="also write every result to this JSON file")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="hrseg-startup-") as tmp:
        store_dir = Path(tmp)
        subprocess.run([PY, "-c", OPEN_RUN, f"sqlite:///{(store_dir / 'mlflow.db').as_posix()}"], cwd=ROOT, env=_env(), capture_output=True)
        chosen = [(n, c) for n, c in cases(store_dir) if args.only in n]
        results = []
        print(f"{'case':34} {'wall s':>7} {'CPU s':>6}  costliest imports (cumulative s)")
        for name, command in chosen:
            r = measure(name, command, args.repeats, store_dir)
            results.append(r)
            imports = ", ".join(f"{p} {s:.2f}" for p, s in r.top_imports)
            failed = "" if r.returncode == 0 else f"  (exit {r.returncode})"
            print(f"{name:34} {r.wall_s:7.2f} {r.cpu_s:6.2f}  {imports}{failed}", flush=True)
    print(f"\n{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"1-min load average {load:.1f} at start, {os.getloadavg()[0]:.1f} at end")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "load_start": load, "load_end": os.getloadavg()[0]}
        args.json.write_text(json.dumps({"machine": machine, "results": [asdict(r) for r in results]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
