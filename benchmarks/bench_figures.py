"""What the pictures of a pipeline stage cost (issue 17): prediction overlays, confusion matrix,
training curve.

    .venv/bin/python benchmarks/bench_figures.py                       # this checkout, ~1 min on 2 cores
    .venv/bin/python benchmarks/bench_figures.py --root /tmp/old-checkout --json before.json
    .venv/bin/python benchmarks/bench_figures.py --stage --baseline /tmp/old-checkout  # + the whole eval stage, both

Run it from (or point ``--data`` at) a checkout whose ``data/synth`` and ``data/lists`` exist
(``dvc repro synth prepare``): the overlays are drawn from real validation images. ``--root``
is the checkout whose ``hrseg`` is measured (first on ``sys.path``); public functions only, so
an older checkout can be measured the same way.

Two kinds of numbers:

* **per stage, cold**: what one stage's figure work costs, each repeat in a fresh process that
  has already imported numpy, torch, PIL and the hrseg modules (as a stage has by then), so the
  lazy imports (matplotlib), font loading and first draws count, as they do in the pipeline:
  - eval: 2 x (``prediction_panel`` + ``save_png``) + ``confusion_matrix_figure`` + ``save_figure``
    (``hrseg.evaluation.evaluate``);
  - train: ``write_training_curve`` + the MLflow render of the figure it returns (exactly what
    ``MlflowTracker.log_figure`` does: ``savefig(buffer, format="png", dpi=100,
    bbox_inches="tight")``) + 2 x (``prediction_panel`` + ``save_png``) (``hrseg.engine.train``).
* **per call, warm**: median seconds of one call after a warm-up call, in this process.

``--stage`` also times ``<root>/stages/evaluate.py cityscapes_hrnet`` end to end, run in
``--data`` (its params.yaml, data and models; fresh processes, ``--stage-repeats``), with
``--root`` first on ``PYTHONPATH``, and with ``--baseline`` too,
alternately (inference time moves a lot with the load of a shared machine); it writes under a
temporary ``--out`` and into the MLflow store of ``--data``.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROWS = {"cityscapes": ("cityscapes_hrnet", 19), "ade20k": ("ade20k_hrnet", 150)}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _root_first(root: Path) -> None:
    sys.path.insert(0, str(root))


def load_inputs(data: Path, dataset: str, count: int = 2) -> dict:
    """Validation images (RGB), labels and a plausible prediction (the label shifted, with a
    wrong block) of ``dataset``, its palette and class names; a confusion matrix and a history."""
    import numpy as np

    from hrseg.data.dataset import build_dataset
    from hrseg.recipe import resolve_recipe

    row, k = ROWS[dataset]
    cwd = os.getcwd()
    os.chdir(data)
    try:
        recipe = resolve_recipe(row, data_root="data/synth").recipe
        ds = build_dataset(recipe.data, recipe.data.val_split, train=False, eval_cfg=recipe.eval)
        samples = []
        for i in range(count):
            bgr, label = ds.load(i)
            pred = np.roll(label, 3, axis=1).copy()
            pred[pred == ds.spec.ignore_label] = 0
            h, w = pred.shape
            pred[h // 3 : h // 2, w // 4 : w // 2] = (int(np.bincount(label[label < k].ravel()).argmax()) + 1) % k
            samples.append((np.ascontiguousarray(bgr[:, :, ::-1]), label, pred))
        spec = ds.spec
    finally:
        os.chdir(cwd)
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 50, (k, k)) * (rng.random((k, k)) < 0.15) + np.diag(rng.integers(100, 1000, k))
    history = [{"epoch": e, "lr": 0.05 * (1 - e / 13) ** 0.9, "train_loss": 4.5 / e**0.7, "val_miou": 0.3 * (1 - 0.8**e)} for e in range(1, 13)]
    return {
        "samples": samples,
        "palette": spec.palette,
        "names": spec.class_names,
        "ignore": spec.ignore_label,
        "matrix": matrix,
        "history": history,
        "title": f"{row} {dataset}/val",
    }


def eval_figures(inputs: dict, out: Path) -> None:
    """The figure work of ``hrseg.evaluation.evaluate`` (2 overlays, the confusion matrix)."""
    from hrseg.visualize import confusion_matrix_figure, prediction_panel, save_figure, save_png

    for i, (rgb, label, pred) in enumerate(inputs["samples"]):
        picture = prediction_panel(rgb, pred, inputs["palette"], label, ignore_label=inputs["ignore"], class_names=inputs["names"])
        save_png(out / f"overlay_{i}.png", picture)
    fig = confusion_matrix_figure(inputs["matrix"], inputs["names"], title=inputs["title"])
    save_figure(out / "confusion_matrix.png", fig)


def mlflow_render(fig) -> bytes:
    """What ``MlflowTracker.log_figure`` does with a figure (hrseg/tracking/tracker.py)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def train_figures(inputs: dict, out: Path) -> None:
    """The figure work of ``hrseg.engine.train`` (curve, its MLflow render, 2 overlays)."""
    from hrseg.engine.training_log import write_training_curve
    from hrseg.visualize import prediction_panel, save_png

    fig = write_training_curve(out / "curve.png", inputs["history"])
    (out / "curve_mlflow.png").write_bytes(mlflow_render(fig))
    for i, (rgb, label, pred) in enumerate(inputs["samples"]):
        picture = prediction_panel(rgb, pred, inputs["palette"], label, ignore_label=inputs["ignore"], class_names=inputs["names"])
        save_png(out / f"train_overlay_{i}.png", picture)


def child(kind: str, dataset: str, data: Path, out: Path) -> None:
    """One cold measurement: print the seconds of ``kind``'s figure work as JSON."""
    import numpy  # noqa: F401  (a stage has these by the time it draws)
    import PIL.Image  # noqa: F401
    import torch  # noqa: F401

    import hrseg.engine.training_log  # noqa: F401
    import hrseg.visualize  # noqa: F401

    inputs = load_inputs(data, dataset)
    heavy = "matplotlib" in sys.modules
    start, cpu = time.perf_counter(), time.process_time()
    (eval_figures if kind == "eval" else train_figures)(inputs, out)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(
        json.dumps(
            {
                "hrseg": hrseg.visualize.__file__,
                "seconds": seconds,
                "cpu_s": cpu,
                "matplotlib_imported": "matplotlib" in sys.modules,
                "matplotlib_before": heavy,
            }
        )
    )


def cold(kind: str, dataset: str, args, out: Path) -> dict:
    runs = []
    env = {**os.environ, "PYTHONPATH": str(args.root)}
    for _ in range(args.repeats):
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            kind,
            "--dataset",
            dataset,
            "--root",
            str(args.root),
            "--data",
            str(args.data),
            "--out",
            str(out),
        ]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    times = [r["seconds"] for r in runs]
    return {
        "case": f"{kind} stage figures, cold ({dataset})", "median_s": statistics.median(times), "runs_s": times,
        "median_cpu_s": statistics.median(r["cpu_s"] for r in runs),
        "matplotlib_imported": runs[-1]["matplotlib_imported"], "hrseg": runs[-1]["hrseg"],
    }  # fmt: skip


def warm(name: str, fn, repeats: int) -> dict:
    fn()  # warm-up: imports, font caches
    times, cpu = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
    return {"case": name, "median_s": statistics.median(times), "median_cpu_s": statistics.median(cpu), "runs_s": times}


def warm_cases(args, out: Path) -> list[dict]:
    from hrseg.engine.training_log import write_training_curve
    from hrseg.visualize import confusion_matrix_figure, prediction_panel, save_figure

    rows = []
    for dataset in ("cityscapes", "ade20k"):
        inputs = load_inputs(args.data, dataset, count=1)
        rgb, label, pred = inputs["samples"][0]
        k = len(inputs["matrix"])

        def panel(rgb=rgb, label=label, pred=pred, inputs=inputs):
            return prediction_panel(rgb, pred, inputs["palette"], label, ignore_label=inputs["ignore"], class_names=inputs["names"])

        def matrix(inputs=inputs, k=k):
            save_figure(out / f"cm{k}.png", confusion_matrix_figure(inputs["matrix"], inputs["names"], title=inputs["title"]))

        rows.append(warm(f"prediction_panel ({dataset}, {rgb.shape[1]}x{rgb.shape[0]})", panel, args.repeats))
        rows.append(warm(f"confusion_matrix_figure + save_figure ({k} classes)", matrix, args.repeats))
    history = inputs["history"]
    rows.append(warm("write_training_curve (12 epochs)", lambda: write_training_curve(out / "curve.png", history), args.repeats))
    rows.append(warm("write_training_curve + MLflow render", lambda: mlflow_render(write_training_curve(out / "curve.png", history)), args.repeats))
    return rows


def stage(args) -> list[dict]:
    """The whole eval stage, ``--stage-repeats`` times; with ``--baseline``, alternately with
    that checkout (the order swapped every round), so both see the same load."""
    roots = [args.root] + ([args.baseline] if args.baseline else [])
    times: dict[Path, list[float]] = {r: [] for r in roots}
    cpu: dict[Path, list[float]] = {r: [] for r in roots}
    with tempfile.TemporaryDirectory(prefix="bench-figures-eval-") as tmp:
        for round_ in range(args.stage_repeats):
            for root in roots if round_ % 2 == 0 else roots[::-1]:
                # the checkout's own stage script (and stages/common.py), run in --data
                cmd = [sys.executable, str(root / "stages" / "evaluate.py"), "cityscapes_hrnet", "--model", "models/cityscapes_hrnet/model.pth", "--out", tmp]
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                subprocess.run(cmd, cwd=args.data, env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, check=True)
                times[root].append(time.perf_counter() - start)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu[root].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return [
        {
            "case": f"stages/evaluate.py cityscapes_hrnet, whole stage ({root})",
            "median_s": statistics.median(times[root]),
            "median_cpu_s": statistics.median(cpu[root]),
            "runs_s": times[root],
        }
        for root in roots
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=HERE.parent, help="the checkout whose hrseg is measured")
    parser.add_argument("--data", type=Path, default=Path.cwd(), help="a checkout with data/synth, data/lists (and models/ for --stage)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--stage", action="store_true", help="also time the whole eval_cityscapes_hrnet stage")
    parser.add_argument("--stage-repeats", type=int, default=3)
    parser.add_argument("--baseline", type=Path, default=None, help="with --stage: a checkout whose stage runs alternately with --root's")
    parser.add_argument("--out", type=Path, default=None, help="keep the pictures here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", choices=("eval", "train"), help=argparse.SUPPRESS)
    parser.add_argument("--dataset", default="cityscapes", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.root, args.data = args.root.resolve(), args.data.resolve()
    args.baseline = args.baseline.resolve() if args.baseline else None
    _root_first(args.root)
    if args.child:
        child(args.child, args.dataset, args.data, args.out)
        return

    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-figures-") as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        rows = [cold(kind, dataset, args, out / f"{kind}_{dataset}") for kind in ("eval", "train") for dataset in ("cityscapes", "ade20k")]
        rows += warm_cases(args, out)
    if args.stage:
        rows += stage(args)
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "root": str(args.root),
        "machine": f"{cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "load_average": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "repeats": args.repeats,
    }
    print(f"# {meta['date']}  {meta['machine']}  load {meta['load_average'][0]} -> {meta['load_average'][1]}  root {meta['root']}")
    print("| case | median wall s | median CPU s | wall s of each run |\n|---|---:|---:|---|")
    for r in rows:
        extra = "" if "matplotlib_imported" not in r else f" (matplotlib {'imported' if r['matplotlib_imported'] else 'not imported'})"
        print(f"| {r['case']}{extra} | {r['median_s']:.3f} | {r['median_cpu_s']:.3f} | {', '.join(f'{t:.3f}' for t in r['runs_s'])} |")
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
