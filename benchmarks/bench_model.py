"""Model benchmark: inference forward per path, the machine's matmul rate, one training step.

Run from the repository root::

    .venv/bin/python benchmarks/bench_model.py            # full: several minutes
    .venv/bin/python benchmarks/bench_model.py --quick    # smoke run: well under a minute
    .venv/bin/python benchmarks/bench_model.py --out benchmarks/results/bench_model.json

What it measures, in one process and one run (so the figures are comparable):

- ``matmul``: fp32 ``torch.mm`` of two 2048 x 2048 matrices; GFLOP/s = 2 n^3 / seconds, the
  machine's practical compute ceiling. It is timed between the forwards (3 times per repeat),
  and each forward row's ``fraction_of_matmul`` uses the probes taken alongside it.
- ``forward``: batch-1 inference of W48+OCR, W48 (FCN) and W18-Small-v2+OCR at 512x1024 and
  1024x2048 (full run) for several ``hrseg.evaluation.inference_paths`` paths. The paths are timed *interleaved*
  (eager, then each fast path, repeated), so load from other processes hits all of them alike.
  Achieved GFLOP/s uses the true FLOPs of ``hrseg.models.complexity`` (2 per multiply-add,
  convolutions + matmuls); ``fraction_of_matmul`` = achieved / measured matmul rate;
  ``ms_per_gmac`` is the cost model: seconds ~= GMACs x ms_per_gmac / 1000.
- ``train_step``: W18-Small-v2+OCR, 256x512, batch 2, forward + loss (main + 0.4 aux) +
  backward + SGD step; images/s and the peak resident memory (``VmHWM``) of a fresh process
  that does only this, together with its resident memory just before the first step.

Every figure is the median over repeats after warm-up. Models are randomly initialised with
He-normal convolutions and BatchNorm statistics calibrated on a random batch, so activations
have realistic magnitudes (tiny official-init weights would produce denormal floats, which
are far slower on CPU and would make the timings meaningless).
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hrseg.evaluation.inference_paths import onnx_path_available

log = logging.getLogger("bench_model")

FULL_COMMAND = ".venv/bin/python benchmarks/bench_model.py"
QUICK_COMMAND = ".venv/bin/python benchmarks/bench_model.py --quick"


@dataclass(frozen=True)
class ForwardCase:
    backbone: str
    head: str
    height: int
    width: int
    paths: tuple[str, ...]
    repeats: int

    @property
    def name(self) -> str:
        return f"{self.backbone}_{self.head}"


FAST_PATHS = ("channels_last", "folded", "folded_cl", "winograd")


def forward_cases(quick: bool) -> list[ForwardCase]:
    """What to time. The full run adds ONNX Runtime (if installed) and runs 1024x2048 for the
    eager reference, ``folded_cl``, ``winograd`` and ``onnx`` only (4x the pixels; about 17 s per W48+OCR
    eager forward here)."""
    models = (("hrnetv2_w48", "ocr"), ("hrnetv2_w48", "fcn"), ("hrnetv2_w18_small_v2", "ocr"))
    if quick:
        return [ForwardCase(b, h, 128, 256, ("eager", "channels_last", "folded_cl"), 2) for b, h in models]
    onnx = ("onnx",) if onnx_path_available() else ()
    cases = [ForwardCase(b, h, 512, 1024, ("eager", *FAST_PATHS, *onnx), 3) for b, h in models]
    cases += [ForwardCase(b, h, 1024, 2048, ("eager", "folded_cl", "winograd", *onnx), 2) for b, h in models]
    return cases


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def _median_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def median_interleaved(runners: dict[str, Callable[[], object]], rounds: int, *, warmup: int = 1, between: Callable[[], object] | None = None) -> dict[str, float]:
    """Median seconds per runner over ``rounds`` rounds, each round running every runner once
    in turn (so that a change of background load hits all of them), after ``warmup`` calls of
    each; ``between`` (for example a matmul probe) runs at the start of every round, untimed."""
    for _ in range(warmup):
        for fn in runners.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        if between is not None:
            between()
        for name, fn in runners.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def status_mib(field: str) -> float | None:
    """``VmRSS`` / ``VmHWM`` (peak) of this process from /proc, in MiB; None off Linux."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def _reset_peak_rss() -> None:
    """Linux: writing 5 to clear_refs resets VmHWM to the current RSS. (``ru_maxrss`` cannot be
    used: a spawned child inherits its parent's peak through fork.)"""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def peak_rss_mib() -> float:
    peak = status_mib("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    return status_mib("VmRSS") or peak_rss_mib()


def realistic_model(
    backbone: str,
    head: str,
    num_classes: int = 19,
    seed: int = 0,
    *,
    device: torch.device | str = "cpu",
    calibration_size: tuple[int, int] = (128, 256),
    **model_kwargs,
) -> nn.Module:
    """He-normal convolutions, unit BN affine, BN running statistics from one random batch of
    2 x ``calibration_size`` (cumulative average), returned in eval mode on ``device``."""
    from hrseg.models import build_model

    torch.manual_seed(seed)
    model = build_model(backbone, head, num_classes, **model_kwargs)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average: one batch sets the statistics
    model = model.to(device).train()
    with torch.no_grad():
        model(torch.randn(2, 3, *calibration_size, device=device))
    return model.eval()


class MatmulProbe:
    """fp32 ``torch.mm`` of two n x n matrices; ``time_once`` is called between forwards so
    the rate is measured under the same background load as the model."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.a, self.b = torch.randn(n, n), torch.randn(n, n)
        self.times: list[float] = []
        torch.mm(self.a, self.b)  # warm-up

    def time_once(self) -> float:
        start = time.perf_counter()
        torch.mm(self.a, self.b)
        elapsed = time.perf_counter() - start
        self.times.append(elapsed)
        return elapsed

    def gflops(self, times: list[float] | None = None) -> float:
        return 2 * self.n**3 / statistics.median(times or self.times) / 1e9

    def row(self) -> dict:
        return {
            "benchmark": "matmul",
            "size": f"{self.n}x{self.n}x{self.n}",
            "seconds": statistics.median(self.times),
            "gflops_per_s": self.gflops(),
            "repeats": len(self.times),
        }


def measure_forward(case: ForwardCase, probe: MatmulProbe) -> list[dict]:
    from hrseg.evaluation.inference_paths import prepare_inference_model
    from hrseg.models.complexity import count

    cost = count(case.backbone, case.head, 19, case.height, case.width)
    model = realistic_model(case.backbone, case.head)
    x = torch.randn(1, 3, case.height, case.width)
    prepared, prepare_s, outputs = {}, {}, {}
    for path in case.paths:
        start = time.perf_counter()
        prepared[path] = prepare_inference_model(model, path)
        prepare_s[path] = time.perf_counter() - start
        outputs[path] = prepared[path](x)["out"]  # warm-up
    times: dict[str, list[float]] = {path: [] for path in case.paths}
    matmul_times = []
    for _ in range(case.repeats):  # interleaved: every path sees the same background load
        for _ in range(3):
            matmul_times.append(probe.time_once())
        for path in case.paths:
            start = time.perf_counter()
            prepared[path](x)
            times[path].append(time.perf_counter() - start)
    matmul_gflops = probe.gflops(matmul_times)
    eager = statistics.median(times["eager"]) if "eager" in times else None
    rows = []
    for path in case.paths:
        seconds = statistics.median(times[path])
        achieved = cost.gflops / seconds
        rows.append(
            {
                "benchmark": "forward",
                "model": case.name,
                "input": f"{case.height}x{case.width}",
                "batch": 1,
                "path": path,
                "resolved_path": prepared[path].path,
                "seconds": seconds,
                "times": times[path],
                "repeats": case.repeats,
                "prepare_seconds": prepare_s[path],
                "gmacs": cost.gmacs,
                "gflop": cost.gflops,
                "gflops_per_s": achieved,
                "matmul_gflops_per_s": matmul_gflops,
                "fraction_of_matmul": achieved / matmul_gflops,
                "ms_per_gmac": 1000 * seconds / cost.gmacs,
                "speedup_vs_eager": (eager / seconds) if eager else None,
                **_agreement_with_eager(outputs[path], outputs.get("eager")),
            }
        )
        log.info("forward %s %dx%d %-13s %.3f s  %.1f GFLOP/s (matmul %.1f)  x%.2f", case.name, case.height, case.width, path, seconds, achieved, matmul_gflops, rows[-1]["speedup_vs_eager"] or 0)
    return rows


def _train_step_worker(height: int, width: int, batch: int, steps: int, threads: int, queue: multiprocessing.Queue) -> None:
    """Runs in a fresh process so that its peak RSS is the training step's alone."""
    torch.set_num_threads(threads)
    model = realistic_model("hrnetv2_w18_small_v2", "ocr").train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    images = torch.randn(batch, 3, height, width)
    labels = torch.randint(0, 19, (batch, height, width))
    _reset_peak_rss()
    baseline = current_rss_mib()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        outputs = model(images)
        loss = sum(
            weight * F.cross_entropy(F.interpolate(outputs[key], size=(height, width), mode="bilinear", align_corners=True), labels, ignore_index=255)
            for key, weight in (("out", 1.0), ("aux", 0.4))
        )
        loss.backward()
        optimizer.step()

    seconds, times = _median_time(step, steps, warmup=1)
    queue.put(
        {
            "benchmark": "train_step",
            "model": "hrnetv2_w18_small_v2_ocr",
            "input": f"{height}x{width}",
            "batch": batch,
            "seconds": seconds,
            "times": times,
            "repeats": steps,
            "images_per_s": batch / seconds,
            "peak_rss_mib": peak_rss_mib(),
            "rss_before_steps_mib": baseline,
        }
    )


def measure_train_step(height: int, width: int, batch: int, steps: int) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_train_step_worker, args=(height, width, batch, steps, torch.get_num_threads(), queue))
    process.start()
    result = queue.get()
    process.join()
    log.info("train step %s batch %d: %.2f s, %.2f images/s, peak RSS %.0f MiB", result["input"], batch, result["seconds"], result["images_per_s"], result["peak_rss_mib"])
    return result


# --------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "benchmark": "machine",
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        # other processes' load makes every figure slower; it is recorded to judge a run by
        "load_average_1min_at_start": os.getloadavg()[0],
    }


def _agreement_with_eager(out: torch.Tensor, eager: torch.Tensor | None) -> dict:
    """max |out - eager| / max |eager| and the fraction of pixels with eager's argmax."""
    if eager is None:
        return {}
    return {
        "scaled_diff_vs_eager": float((out - eager).abs().max() / eager.abs().max()),
        "argmax_agreement": float((out.argmax(1) == eager.argmax(1)).float().mean()),
    }


def run(quick: bool = False) -> list[dict]:
    """Run the benchmark; returns one dict per measurement (``benchmark`` says which kind).
    ``quick=True`` uses small inputs and few repeats (a smoke run, under a minute)."""
    command = QUICK_COMMAND if quick else FULL_COMMAND
    rows = [machine()]
    probe = MatmulProbe(2048)
    for _ in range(5):
        probe.time_once()
    log.info("matmul 2048^3: %.1f GFLOP/s", probe.gflops())
    forward_rows = []
    for case in forward_cases(quick):
        forward_rows += measure_forward(case, probe)
    rows.append(probe.row())  # the median over every probe of the run
    rows += forward_rows
    if quick:
        rows.append(measure_train_step(128, 256, 2, 2))
    else:
        rows.append(measure_train_step(256, 512, 2, 5))
    rows[0]["load_average_1min_at_end"] = os.getloadavg()[0]
    for row in rows:
        row["command"] = command
    return rows


def format_table(rows: list[dict]) -> str:
    """A Markdown summary of the rows."""
    lines = []
    for row in rows:
        if row["benchmark"] == "machine":
            lines.append(
                f"Machine: {row['cpu']}, {row['cores']} cores, {row['threads']} threads, torch {row['torch']}; "
                f"1-min load average {row['load_average_1min_at_start']:.1f} at start, {row['load_average_1min_at_end']:.1f} at end."
            )
        elif row["benchmark"] == "matmul":
            lines.append(f"fp32 matmul {row['size']}: {row['gflops_per_s']:.1f} GFLOP/s (median of {row['repeats']} probes over the run).")
    lines += [
        "",
        "| model | input | path | s/image | speed-up | GMACs | GFLOP/s | matmul GFLOP/s | of matmul | ms/GMAC | prepare s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["benchmark"] == "forward":
            speed = f"{r['speedup_vs_eager']:.2f}x" if r["speedup_vs_eager"] else "-"
            path = r["path"] if r["path"] == r["resolved_path"] else f"{r['path']} ({r['resolved_path']})"
            lines.append(
                f"| {r['model']} | {r['input']} | {path} | {r['seconds']:.3f} | {speed} | {r['gmacs']:.1f} | "
                f"{r['gflops_per_s']:.1f} | {r['matmul_gflops_per_s']:.1f} | {100 * r['fraction_of_matmul']:.0f}% | {r['ms_per_gmac']:.2f} | {r['prepare_seconds']:.2f} |"
            )
    for r in rows:
        if r["benchmark"] == "train_step":
            lines.append("")
            lines.append(
                f"Training step {r['model']} {r['input']} batch {r['batch']}: {r['seconds']:.2f} s/step, "
                f"{r['images_per_s']:.2f} images/s, peak RSS {r['peak_rss_mib']:.0f} MiB "
                f"({r['rss_before_steps_mib']:.0f} MiB before the first step)."
            )
    lines.append("")
    lines.append(f"Command: `{rows[-1]['command']}`; medians over repeats after one warm-up.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, few repeats (smoke run)")
    parser.add_argument("--out", help="also write the rows as JSON to this path")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    rows = run(quick=args.quick)
    if args.out:
        from hrseg.io import write_json

        write_json(args.out, rows)
    print(format_table(rows))


if __name__ == "__main__":
    main()
