"""Host memory policy ``keep`` against glibc's default (``release``): training step, forward
and 6-scale evaluation, each in fresh processes, alternating.

Run from the repository root::

    .venv/bin/python benchmarks/bench_host_memory.py                 # about 12 minutes on 2 CPU cores
    .venv/bin/python benchmarks/bench_host_memory.py --quick         # smoke run: about a minute
    .venv/bin/python benchmarks/bench_host_memory.py --json benchmarks/results/host_memory.json --md benchmarks/results/host_memory.md

The policy belongs to a process (``hrseg.runtime.host_memory``), so every measurement is a
fresh worker process (``--worker CASE --policy P``) that sets its policy first thing, builds
its model, warms up once and times ``repeats`` runs. A round runs every case under both
policies (the order alternates between rounds, so that a drift in background load does not
favour one); each figure is the median over rounds of a worker's median. A worker also records,
per timed run, the minor page faults and the system time (``getrusage``), and its peak
resident size (``VmHWM``).

Cases: the W18-Small-v2+OCR training step of ``bench_train.py`` (256x512, batch 2, SGD), plain
and with ``train.winograd`` (the default: OCR's 3x3 layer by NNPACK, forward and input gradient), the
W48+OCR 512x1024 forward on ``eager`` and on the ``auto`` path, and the Cityscapes 6-scale +
flip protocol of ``bench_winograd.py`` (W18-Small-v2+OCR with the official OCR widths at
256x512), the official loop against ``multi_scale_predict`` on ``auto``. The headline ratios
compare what a user of plain PyTorch gets (the plain training loop, eager, the official loop;
glibc's default) with hrseg's defaults (``train.winograd``, the ``auto`` path; ``keep``), and
also with the same policy on both sides.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from report import write_report  # noqa: E402

log = logging.getLogger("bench_host_memory")
POLICIES = ("release", "keep")


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # train | forward | eval
    what: str
    repeats: int


CASES = (
    Case("train_w18s2_ocr", "train", "W18-Small-v2+OCR training step, 256x512, batch 2, plain loop", 3),
    Case("train_w18s2_ocr_winograd", "train", "W18-Small-v2+OCR training step, 256x512, batch 2, train.winograd", 3),
    Case("forward_w48_ocr_eager", "forward", "W48+OCR forward 512x1024, eager", 3),
    Case("forward_w48_ocr_auto", "forward", "W48+OCR forward 512x1024, auto path", 3),
    Case("eval6_official_loop", "eval", "6-scale + flip, W18-Small-v2+OCR 256x512, official loop", 2),
    Case("eval6_auto", "eval", "6-scale + flip, W18-Small-v2+OCR 256x512, multi_scale_predict on auto", 2),
)
#: Issue 16's goals for the headline ratios (hrseg's defaults against plain PyTorch).
GOALS = {"train": 1.3, "forward": 2.0, "eval6": 1.5}
QUICK_SIZES = {"train": (64, 128), "forward": (128, 256), "eval": (64, 128)}


# --------------------------------------------------------------------------------------
# Worker: one case under one policy, in this process
# --------------------------------------------------------------------------------------


def _runner(case: Case, quick: bool) -> tuple[Callable[[], object], str]:
    """The function to time and the inference path it runs (or ``-``)."""
    import torch

    if case.kind == "train":
        from bench_train import build

        size = QUICK_SIZES["train"] if quick else (256, 512)
        winograd = case.name.endswith("_winograd")
        return build("hrnetv2_w18_small_v2", "ocr", size, 2, {}, False, False, winograd), "winograd" if winograd else "-"
    if case.kind == "forward":
        from bench_model import realistic_model

        from hrseg.evaluation.inference_paths import prepare_inference_model

        backbone = "hrnetv2_w18_small_v2" if quick else "hrnetv2_w48"
        model = realistic_model(backbone, "ocr", calibration_size=(64, 128))
        prepared = prepare_inference_model(model, case.name.rsplit("_", 1)[1])
        image = torch.randn(1, 3, *(QUICK_SIZES["forward"] if quick else (512, 1024)))

        def forward() -> object:
            with torch.inference_mode():
                return prepared(image)

        return forward, prepared.path
    from bench_eval import CITYSCAPES_MS, calibrated_ocr_model

    from hrseg.evaluation.inference import multi_scale_predict
    from hrseg.evaluation.inference_paths import prepare_inference_model
    from hrseg.evaluation.reference import reference_predict

    height, width = QUICK_SIZES["eval"] if quick else (256, 512)
    model = calibrated_ocr_model("hrnetv2_w18_small_v1" if quick else "hrnetv2_w18_small_v2", height, width)
    image = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(1))
    kw = dict(scales=CITYSCAPES_MS, flip=True, crop_size=(height, width), base_size=width, mode="cityscapes", num_classes=19)
    if case.name == "eval6_official_loop":
        return (lambda: reference_predict(model, image, align_corners=True, **kw)), "-"
    prepared = prepare_inference_model(model, "auto")
    return (lambda: multi_scale_predict(prepared, image, max_batch=1, **kw)), prepared.path


def worker(case: Case, policy: str, quick: bool, threads: int) -> dict:
    from hrseg.runtime.host_memory import set_host_memory

    changed = set_host_memory(policy)  # first thing, before any tensor is allocated
    import torch
    from bench_model import peak_rss_mib

    torch.set_num_threads(threads)
    fn, path = _runner(case, quick)
    fn()  # warm-up: first-call set-up, and under ``keep`` the heap's first growth
    seconds, faults, system = [], [], []
    for _ in range(1 if quick else case.repeats):
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_SELF)
        faults.append(after.ru_minflt - before.ru_minflt)
        system.append(after.ru_stime - before.ru_stime)
    return {
        "case": case.name, "policy": policy, "allocator_changed": changed, "path": path,
        "seconds": statistics.median(seconds), "runs": seconds, "minor_faults": statistics.median(faults),
        "system_seconds": statistics.median(system), "peak_rss_mib": peak_rss_mib(),
    }  # fmt: skip


# --------------------------------------------------------------------------------------
# Driver: rounds of fresh workers
# --------------------------------------------------------------------------------------


def _spawn(case: Case, policy: str, quick: bool, threads: int) -> dict:
    command = [sys.executable, __file__, "--worker", case.name, "--policy", policy, "--threads", str(threads)] + (["--quick"] if quick else [])
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"worker {case.name} / {policy} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    row = json.loads(done.stdout.strip().splitlines()[-1])
    log.info("%-22s %-7s %7.3f s  faults %8d  sys %5.2f s  peak %6.0f MiB", case.name, policy, row["seconds"], row["minor_faults"], row["system_seconds"], row["peak_rss_mib"] or 0)
    return row


def _machine(threads: int) -> dict:
    import platform

    import torch
    from bench_model import machine

    return {**machine(), "threads": threads, "libc": " ".join(platform.libc_ver()), "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def run(quick: bool, rounds: int, threads: int, cases: tuple[Case, ...] = CASES) -> dict:
    facts = _machine(threads)
    rows = []
    for index in range(rounds):
        order = POLICIES if index % 2 == 0 else POLICIES[::-1]
        for case in cases:
            for policy in order:
                rows.append({**_spawn(case, policy, quick, threads), "round": index})
    facts["load_average_1min_at_end"] = os.getloadavg()[0]
    return {"machine": facts, "quick": quick, "rows": rows, "summary": summarize(rows)}


def summarize(rows: list[dict]) -> dict:
    """Medians over rounds per (case, policy), ``keep`` against ``release`` per case, and the
    headline ratios against plain PyTorch (eager / the official loop under ``release``)."""
    median: dict[str, dict[str, dict]] = {}
    for case in {row["case"] for row in rows}:
        for policy in POLICIES:
            mine = [row for row in rows if row["case"] == case and row["policy"] == policy]
            if mine:
                median.setdefault(case, {})[policy] = {
                    "seconds": statistics.median(r["seconds"] for r in mine),
                    "minor_faults": statistics.median(r["minor_faults"] for r in mine),
                    "system_seconds": statistics.median(r["system_seconds"] for r in mine),
                    "peak_rss_mib": max((r["peak_rss_mib"] or 0) for r in mine),
                    "path": mine[0]["path"],
                    "rounds": [r["seconds"] for r in mine],
                }
    out = {"cases": median, "keep_speedup": {c: m["release"]["seconds"] / m["keep"]["seconds"] for c, m in median.items() if len(m) == 2}}
    headline = {}
    pairs = (("train", "train_w18s2_ocr", "train_w18s2_ocr_winograd"), ("forward", "forward_w48_ocr_eager", "forward_w48_ocr_auto"), ("eval6", "eval6_official_loop", "eval6_auto"))
    for name, base, fast in pairs:
        if base in median and fast in median:
            headline[name] = {
                "goal": GOALS[name],
                "defaults_vs_plain": median[base]["release"]["seconds"] / median[fast]["keep"]["seconds"],
                "both_keep": median[base]["keep"]["seconds"] / median[fast]["keep"]["seconds"],
                "both_release": median[base]["release"]["seconds"] / median[fast]["release"]["seconds"],
            }
    out["headline"] = headline
    return out


def format_markdown(result: dict, command: str) -> str:
    m, s = result["machine"], result["summary"]
    lines = [
        "# Host memory policy: `keep` against glibc's default (`release`)",
        "",
        f"Finished {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {m['cpu']} ({m['cores']} cores, {m['threads']} threads, "
        f"{m['cpu_capability']} kernels, torch {m['torch']}, {m['libc']}), 1-min load average "
        f"{m['load_average_1min_at_start']:.1f} -> {m['load_average_1min_at_end']:.1f}, with",
        "",
        f"    {command}",
        "",
        "Fresh process per measurement, policies alternating; medians over rounds (the rounds column lists each round's time).",
        *(["", "**Quick run**: smaller inputs than the case names say (%s), one timed run; a smoke test, not a measurement." % QUICK_SIZES] if result["quick"] else []),
        "",
        "| case | path | policy | seconds | rounds | minor page faults / run | system s / run | peak RSS MiB | keep speed-up |",
        "|---|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for case in CASES:
        by_policy = s["cases"].get(case.name, {})
        for policy in POLICIES:
            if policy in by_policy:
                row = by_policy[policy]
                speedup = f"{s['keep_speedup'][case.name]:.2f}x" if policy == "keep" and case.name in s["keep_speedup"] else ""
                rounds = ", ".join(f"{t:.2f}" for t in row["rounds"])
                lines.append(
                    f"| {case.what} | {row['path']} | {policy} | {row['seconds']:.3f} | {rounds} | {row['minor_faults']:.0f} | "
                    f"{row['system_seconds']:.2f} | {row['peak_rss_mib']:.0f} | {speedup} |"
                )
    names = {"train": "W18-Small-v2+OCR training step: `train.winograd` vs the plain loop", "forward": "W48+OCR 512x1024: `auto` vs eager", "eval6": "6-scale + flip: `multi_scale_predict` on `auto` vs the official loop"}
    lines += ["", "| headline | hrseg defaults (`keep`) vs plain PyTorch (`release`) | goal | both `keep` | both `release` |", "|---|---:|---:|---:|---:|"]
    for key, h in s["headline"].items():
        verdict = "met" if h["defaults_vs_plain"] >= h["goal"] else "not met"
        lines.append(f"| {names[key]} | {h['defaults_vs_plain']:.2f}x | {h['goal']:.1f}x ({verdict}) | {h['both_keep']:.2f}x | {h['both_release']:.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, one round, one timed run: a smoke run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--kinds", default="train,forward,eval", help="comma-separated case kinds to run (train, forward, eval); default all")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--md", type=Path)
    parser.add_argument("--worker", choices=[case.name for case in CASES], help=argparse.SUPPRESS)
    parser.add_argument("--policy", choices=POLICIES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(next(c for c in CASES if c.name == args.worker), args.policy, args.quick, args.threads)))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    kinds = {k.strip() for k in args.kinds.split(",") if k.strip()}
    unknown = kinds - {case.kind for case in CASES}
    if unknown:
        parser.error(f"unknown case kinds {sorted(unknown)}; valid: train, forward, eval")
    result = run(args.quick, 1 if args.quick else args.rounds, args.threads, tuple(c for c in CASES if c.kind in kinds))
    write_report('bench_host_memory.py', argv, result, format_markdown, args.json, args.md)


if __name__ == "__main__":
    main()
