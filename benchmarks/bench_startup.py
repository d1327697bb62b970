"""Fixed start-up of every ``hrseg`` command and every DVC stage script, and what it imports.

    .venv/bin/python benchmarks/bench_startup.py              # everything, a few minutes on 2 cores
    .venv/bin/python benchmarks/bench_startup.py --only info  # cases whose name contains "info"
    .venv/bin/python benchmarks/bench_startup.py --repeats 5 --json benchmarks/results/startup.json \\
        --md benchmarks/results/startup.md --baseline benchmarks/results/startup-before.json
    .venv/bin/python benchmarks/bench_startup.py --root /tmp/old-checkout --json before.json  # another checkout

Public tools only: each case runs as a fresh subprocess (``--repeats`` times, median reported),
from the measured checkout's root with that checkout first on ``PYTHONPATH``. Two clocks:
**wall** seconds and **CPU** seconds (user + system of the child, from ``getrusage``). CPU time
barely moves when other processes share the machine, wall time does; on an idle machine they
are close (start-up is single-threaded). One extra ``python -X importtime`` run per case names
the third-party packages that cost the most (cumulative seconds, so a package's own imports count).

Cases:
- ``hrseg --help`` and ``hrseg COMMAND --help`` for every command ``hrseg --help`` lists: what
  typing a command costs before it works;
- cheap real calls, start to finish: ``hrseg info`` for every model and for all of them,
  ``hrseg recipe show``, ``hrseg recipe list``, ``hrseg fetch list``, ``hrseg runs`` (on a store
  holding one run);
- ``stages/<name>.py --help``: a stage script's imports (argparse exits right after them), and
  the set-up a stage runs before its work (params.yaml read and checked; for train and
  evaluate also CPU numerics pinned, which imports torch). train and evaluate twice: through
  a warm-start server that is already up (``hrseg.runtime.warm``; in a ``dvc repro`` every torch
  stage but the first finds it up) and cold (``HRSEG_WARM_START=0``: the script imports torch);
- a whole eval stage (``stages/evaluate.py cityscapes_hrnet``: 8 images, tracked), warm and cold
  (needs ``dvc repro eval_cityscapes_hrnet`` first);
- set-up that every tracked stage pays in its work: ``import torch``, ``import mlflow`` and
  opening an MLflow run on a fresh and on an existing SQLite store.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from hrseg import io as hio  # noqa: E402
from hrseg.models import MODELS  # noqa: E402  (what `hrseg info` lists with no argument)

PY = sys.executable
THIRD_PARTY = ("torch", "mlflow", "pandas", "matplotlib", "numpy", "cv2", "typer", "rich", "yaml", "PIL", "onnx", "onnxruntime", "dvc", "sqlalchemy")

OPEN_RUN = """
import sys, mlflow
from mlflow import MlflowClient
client = MlflowClient(tracking_uri=sys.argv[1])
found = client.get_experiment_by_name("bench")
experiment = found.experiment_id if found else client.create_experiment("bench")
run = client.create_run(experiment)
client.set_terminated(run.info.run_id)
"""

#: what a tracked stage pays to log: open a run, log a metric, end it (hrseg's own tracker);
#: argv[1] the store, argv[2] "service" (the tracking service, warmed up by an unmeasured run
#: first) or "in-process" (HRSEG_TRACKING_SERVICE=0: mlflow imported by the caller)
TRACKED_RUN = """
import os, sys
if sys.argv[2] == "in-process":
    os.environ["HRSEG_TRACKING_SERVICE"] = "0"
from hrseg.tracking.tracker import start_tracking
run = start_tracking("bench", "startup", tags={}, params={"a": 1}, uri=sys.argv[1])
run.log_metrics({"loss": 1.0}, step=1)
run.close()
assert run.run_id
"""

#: a tensor stage's set-up before its work (``stages/common.py``'s ``stage_main`` for train and
#: evaluate): params.yaml, CPU pinning (and with it torch)
STAGE_SETUP = """
import sys
sys.path.insert(0, "stages")
import common
from hrseg.runtime import pin_cpu_numerics
params = common.read_params()
pin_cpu_numerics(params.cpu_threads, params.cpu_isa)
"""

#: the set-up of the other stages (synth, prepare, fetch_pretrained, results_table): params.yaml only, no torch
LIGHT_STAGE_SETUP = """
import sys
sys.path.insert(0, "stages")
import common
common.read_params()
"""


#: the stage scripts that start through a warm-start server: measured warm (the server already
#: up, as for every stage of a `dvc repro` but the first) and cold (HRSEG_WARM_START=0)
WARM_STAGES = ("train.py", "evaluate.py")


@dataclass
class Result:
    name: str
    command: list[str]
    wall_s: float
    cpu_s: float
    walls: list[float] = field(default_factory=list)
    top_imports: list[tuple[str, float]] = field(default_factory=list)
    torch_via: str = ""
    returncode: int = 0


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("COLUMNS", "80")
    return env


def run_once(command: list[str], root: Path) -> tuple[float, float, int]:
    """(wall s, child CPU s, return code) of one run, output discarded."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=root, env=_env(root), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.returncode


def import_profile(command: list[str], root: Path, limit: int = 3) -> tuple[list[tuple[str, float]], str]:
    """From one ``python -X importtime`` run of ``command``: the ``limit`` costliest top-level
    third-party imports (seconds, cumulative), and the chain of imports that first pulled in
    torch (``fetch_pretrained > common > hrseg.recipe > ... > torch``; empty without torch)."""
    if command[0] != PY:
        return [], ""
    proc = subprocess.run([PY, "-X", "importtime", *command[1:]], cwd=root, env=_env(root), capture_output=True, text=True)
    entries = []  # (depth, module, cumulative s), children before their parent
    for line in proc.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( +)(\S+)$", line)
        if match:
            entries.append(((len(match.group(2)) - 1) // 2, match.group(3), int(match.group(1)) / 1e6))
    costs: dict[str, float] = {}
    for _, module, cumulative in entries:
        package = module.split(".")[0]
        if package in THIRD_PARTY:
            costs[package] = max(costs.get(package, 0.0), cumulative)
    chain: list[str] = []
    first = next((i for i, (_, module, _) in enumerate(entries) if module == "torch"), None)
    if first is not None:
        depth, chain = entries[first][0], ["torch"]
        for parent_depth, module, _ in entries[first + 1 :]:
            if parent_depth < depth:
                chain.insert(0, module)
                depth = parent_depth
    return sorted(costs.items(), key=lambda kv: -kv[1])[:limit], " > ".join(m for m in chain if not m.startswith("torch."))


def listed_commands(root: Path) -> list[str]:
    """The command names ``hrseg --help`` lists (so the benchmark needs no import of the checkout)."""
    text = subprocess.run([PY, "-m", "hrseg.cli", "--help"], cwd=root, env=_env(root), capture_output=True, text=True, check=True).stdout
    section = text.split("Commands:", 1)[1]
    return re.findall(r"^  (\S+)  ", section, flags=re.MULTILINE)


def cases(root: Path, store_dir: Path) -> list[tuple[str, list[str]]]:
    hrseg = [PY, "-m", "hrseg.cli"]
    db = f"sqlite:///{(store_dir / 'mlflow.db').as_posix()}"
    out = [("hrseg --help", [*hrseg, "--help"])]
    out += [(f"hrseg {command} --help", [*hrseg, command, "--help"]) for command in listed_commands(root)]
    out += [
        ("hrseg fetch get --help", [*hrseg, "fetch", "get", "--help"]),
        ("hrseg fetch list", [*hrseg, "fetch", "list"]),
        ("hrseg recipe list", [*hrseg, "recipe", "list"]),
        ("hrseg recipe show cityscapes_ocr", [*hrseg, "recipe", "show", "cityscapes_ocr", "--profile", "embedded"]),
        ("hrseg runs", [*hrseg, "runs", "--uri", db]),
        ("hrseg info (all models)", [*hrseg, "info"]),
    ]
    out += [(f"hrseg info {name}", [*hrseg, "info", name]) for name in sorted(MODELS)]
    stages = sorted(p.name for p in (root / "stages").glob("*.py") if p.name not in ("common.py", "dvc_yaml.py"))
    for name in stages:
        if name in WARM_STAGES:  # these hand their run to the warm-start server (hrseg.runtime.warm)
            out.append((f"stages/{name} --help, warm start", [PY, f"stages/{name}", "--help"]))
            out.append((f"stages/{name} --help, cold", ["env", "HRSEG_WARM_START=0", PY, f"stages/{name}", "--help"]))
        else:
            out.append((f"stages/{name} --help", [PY, f"stages/{name}", "--help"]))
    evaluate = ["stages/evaluate.py", "cityscapes_hrnet", "--model", "models/cityscapes_hrnet/model.pth", "--out", str(store_dir / "eval-cs")]
    out += [  # a whole eval stage (8 images), tracked into the temporary store; needs dvc repro eval_cityscapes_hrnet
        ("stages/evaluate.py cityscapes_hrnet (whole stage), warm start", ["env", f"MLFLOW_TRACKING_URI={db}", PY, *evaluate]),
        ("stages/evaluate.py cityscapes_hrnet (whole stage), cold", ["env", f"MLFLOW_TRACKING_URI={db}", "HRSEG_WARM_START=0", PY, *evaluate]),
    ]
    out += [
        ("stage set-up (params, CPU pinning)", [PY, "-c", STAGE_SETUP]),
        ("light stage set-up (params)", [PY, "-c", LIGHT_STAGE_SETUP]),
        ("import torch", [PY, "-c", "import torch"]),
        ("import mlflow", [PY, "-c", "import mlflow"]),
        ("mlflow run, new store", [PY, "-c", OPEN_RUN, f"sqlite:///{(store_dir / 'fresh-{n}.db').as_posix()}"]),
        ("mlflow run, existing store", [PY, "-c", OPEN_RUN, db]),
        ("hrseg run, in-process mlflow", [PY, "-c", TRACKED_RUN, db, "in-process"]),
        ("hrseg run, tracking service", [PY, "-c", TRACKED_RUN, db, "service"]),
        # a whole light stage, tracked (into the temporary store); needs data/synth (dvc repro synth)
        ("stages/prepare.py lip (whole stage)", ["env", f"MLFLOW_TRACKING_URI={db}", PY, "stages/prepare.py", "lip", "--root", "data/synth/lip", "--out", str(store_dir / "lists-lip")]),
    ]
    return out


def measure(name: str, command: list[str], repeats: int, root: Path) -> Result:
    walls, cpus, code = [], [], 0
    if "service" in command or "stages/prepare.py" in command or name.endswith("warm start") or "whole stage" in name:
        run_once(command, root)  # unmeasured: starts the tracking service / warm-start server (and creates the store)
    for i in range(repeats):
        argv = [a.replace("{n}", str(i)) for a in command]  # a fresh store per repeat
        wall, cpu, code = run_once(argv, root)
        walls.append(wall)
        cpus.append(cpu)
    result = Result(name, command, statistics.median(walls), statistics.median(cpus), walls, returncode=code)
    if "{n}" not in " ".join(command):
        result.top_imports, result.torch_via = import_profile(command, root)
    return result


def _imports(r: dict) -> str:
    return ", ".join(f"{p} {s:.2f}" for p, s in r["top_imports"])


def markdown(data: dict, baseline: dict | None, note: str = "") -> str:
    """The results as a Markdown file: machine and load, then one row per case."""
    m = data["machine"]
    lines = [
        "# Start-up of `hrseg` commands and DVC stages",
        "",
        f"Measured {m['date']} with `{m['command']}` on {m['cpus']} CPUs, Python {m['python']}: "
        f"median of {m['repeats']} runs per case, each a fresh process; 1-min load average {m['load_start']:.1f} at the start, "
        f"{m['load_end']:.1f} at the end (other sessions share the machine: wall time moves with the load, CPU time much less).",
    ]
    base = {r["name"]: r for r in baseline["results"]} if baseline else {}
    if baseline:
        b = baseline["machine"]
        lines.append(
            f"Before: {b['date']}, `{b['command']}`, median of {b['repeats']}, load average {b['load_start']:.1f} -> {b['load_end']:.1f}."
        )
    if note:
        lines += ["", note]
    head = ["case", *(["before wall s", "before CPU s"] if baseline else []), "wall s", "CPU s", "costliest imports (cumulative s)", "torch imported through"]
    lines += ["", "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 3) + "---|---|"]
    for r in data["results"]:
        failed = "" if r["returncode"] == 0 else f" (exit {r['returncode']})"
        old = base.get(r["name"])
        before = ([f"{old['wall_s']:.2f}", f"{old['cpu_s']:.2f}"] if old else ["-", "-"]) if baseline else []
        cells = [f"{r['name']}{failed}", *before, f"{r['wall_s']:.2f}", f"{r['cpu_s']:.2f}", _imports(r), r.get("torch_via", "") or "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="runs per case (median reported)")
    parser.add_argument("--only", default="", help="only the cases whose name contains this text")
    parser.add_argument("--root", type=Path, default=HERE.parent, help="checkout to measure (default: this one)")
    parser.add_argument("--json", type=Path, help="also write every result to this JSON file")
    parser.add_argument("--md", type=Path, help="also write the table as Markdown (e.g. benchmarks/results/startup.md)")
    parser.add_argument("--baseline", type=Path, help="a JSON file of an earlier run: its numbers become the 'before' columns of --md")
    parser.add_argument("--note", default="", help="a paragraph for --md, under the header")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    load, started = os.getloadavg()[0], datetime.datetime.now(datetime.timezone.utc)
    with tempfile.TemporaryDirectory(prefix="hrseg-startup-") as tmp:
        store_dir = Path(tmp)
        subprocess.run([PY, "-c", OPEN_RUN, f"sqlite:///{(store_dir / 'mlflow.db').as_posix()}"], cwd=root, env=_env(root), capture_output=True)
        chosen = [(n, c) for n, c in cases(root, store_dir) if args.only in n]
        results = []
        print(f"{'case':36} {'wall s':>7} {'CPU s':>6}  costliest imports (cumulative s)")
        for name, command in chosen:
            r = measure(name, command, args.repeats, root)
            results.append(r)
            failed = "" if r.returncode == 0 else f"  (exit {r.returncode})"
            via = f"  [torch via {r.torch_via}]" if r.torch_via else ""
            print(f"{name:36} {r.wall_s:7.2f} {r.cpu_s:6.2f}  {_imports(asdict(r))}{via}{failed}", flush=True)
    machine = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(["python", "benchmarks/bench_startup.py", *(argv if argv is not None else sys.argv[1:])]),
        "root": str(root),
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_start": load,
        "load_end": os.getloadavg()[0],
    }
    print(f"\n{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"1-min load average {load:.1f} at start, {machine['load_end']:.1f} at end")  # fmt: skip
    data = {"machine": machine, "results": [asdict(r) for r in results]}
    if args.json:
        hio.write_json(args.json, data)
    if args.md:
        baseline = json.loads(args.baseline.read_text()) if args.baseline else None
        hio.write_text(args.md, markdown(data, baseline, args.note))


if __name__ == "__main__":
    main()
