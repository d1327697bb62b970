"""The GPU check: AMP training steps under DDP + SyncBatchNorm, inference per path.

Started by ``benchmarks/gpu_check.sh`` (which runs the CUDA tests first); can run alone::

    python benchmarks/gpu_check.py                       # on a CUDA machine: the real check
    python benchmarks/gpu_check.py --dry --out /tmp/g.json --results-md /tmp/RESULTS.md

Two parts, each in this one process, under a wall-clock budget (``--budget-s``):

``train``
    A 1-process ``DistributedDataParallel`` group (NCCL on CUDA, gloo in the dry run) on
    ``127.0.0.1``; the model converted to ``SyncBatchNorm`` (CUDA only: PyTorch rejects CPU
    tensors in SyncBatchNorm once a process group exists). From the same initial weights
    and the same batches: a few fp32 steps, then fp16 autocast + ``GradScaler`` steps, then
    bf16 autocast steps (SGD, momentum 0.9, main + 0.4 aux cross-entropy). Reports the loss
    per step, seconds per step, peak memory, whether every gradient stayed finite and the
    largest relative difference of the AMP losses to the fp32 ones. With one process
    SyncBatchNorm computes with the ordinary BatchNorm kernels (world size 1), so its
    cross-process reduction is *not* exercised; the conversion, DDP's hooks and NCCL are.

``inference``
    W48+OCR at 1024x2048, batch 1, per ``hrseg.evaluation.inference_paths`` path (eager, channels_last, folded_cl,
    cuda_fp16, cuda_bf16): images/s (median over repeats after warm-up, with
    ``torch.cuda.synchronize``), peak memory of one forward (``torch.cuda.max_memory_allocated``
    after ``reset_peak_memory_stats``; peak RSS in the dry run), the logit difference to a
    true fp32 eager forward (TF32 switched off for that reference only; the timed paths run
    under PyTorch's defaults) and the argmax agreement at full resolution.

The dry run (``--dry``, or automatically when CUDA is missing) does all of it on the CPU at
tiny sizes with a tiny model, skipping what needs CUDA (SyncBatchNorm, fp16 autocast
inference paths), so the script itself is tested without a GPU (tests/test_gpu_check.py).

Writes the JSON report (``--out``) and, with ``--results-md``, replaces the section between
``<!-- gpu-check:start -->`` and ``<!-- gpu-check:end -->`` of that file (appending it if
absent).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import json
import logging
import math
import os
import platform
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_model import _reset_peak_rss, peak_rss_mib, realistic_model  # noqa: E402

from hrseg import io  # noqa: E402
from hrseg.evaluation.inference_paths import prepare_inference_model  # noqa: E402

log = logging.getLogger("gpu_check")

START, END = "<!-- gpu-check:start -->", "<!-- gpu-check:end -->"
INFERENCE_PATHS = ("eager", "channels_last", "folded_cl", "cuda_fp16", "cuda_bf16")

#: Published throughput anchors for HRNet-W48 at 1024x2048 (see docs / RESULTS.md).
ANCHORS = (
    ("MMSegmentation OCR-HR48", "V100, fp32, 1024x2048", "4.22 images/s"),
    ("MMSegmentation FCN-HR48", "V100, fp32, 1024x2048", "6.42 images/s"),
    ("PaddleSeg OCR-W48", "V100, TensorRT fp32", "6.17 images/s"),
    ("official HRNet-W48", "V100", "0.150 s/image (6.7 images/s)"),
)
GOAL_IMAGES_PER_S = 20.0
GOAL_ARGMAX_AGREEMENT = 0.999


@dataclass(frozen=True)
class Sizes:
    """What one mode runs: the real check on a GPU, or the tiny dry run on the CPU."""

    backbone: str
    model_kwargs: dict
    infer_size: tuple[int, int]
    train_size: tuple[int, int]
    train_batch: int
    train_steps: int
    repeats: int
    calibration_size: tuple[int, int] = (128, 256)


GPU_SIZES = Sizes("hrnetv2_w48", {}, (1024, 2048), (512, 1024), 2, 4, 10)
DRY_SIZES = Sizes("hrnetv2_w18_small_v1", {"ocr_mid_channels": 16, "ocr_key_channels": 8}, (32, 64), (32, 64), 2, 2, 1, (32, 64))


class Budget:
    """Seconds left of the wall-clock budget; parts shorten their repeats when it runs low."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        _reset_peak_rss()


def _peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return peak_rss_mib()


@contextlib.contextmanager
def strict_fp32() -> Iterator[None]:
    """TF32 off for convolutions and matmuls inside the block (a true fp32 reference)."""
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def calibrated_model(sizes: Sizes, device: torch.device, num_classes: int = 19) -> nn.Module:
    """``bench_model.realistic_model`` at this check's sizes: He-normal convolutions and
    BatchNorm statistics from one random batch (realistic activation sizes), in eval mode on
    ``device``."""
    return realistic_model(sizes.backbone, "ocr", num_classes, device=device, calibration_size=sizes.calibration_size, **sizes.model_kwargs)


# --------------------------------------------------------------------------------------
# Training steps: AMP under a 1-process DDP group
# --------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def one_process_group(backend: str, device: torch.device) -> Iterator[None]:
    kwargs = {"device_id": device} if backend == "nccl" else {}
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1, **kwargs)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _loss(outputs: dict[str, torch.Tensor], labels: torch.Tensor, align_corners: bool) -> torch.Tensor:
    size = labels.shape[-2:]
    return sum(
        weight * F.cross_entropy(F.interpolate(outputs[key].float(), size=size, mode="bilinear", align_corners=align_corners), labels, ignore_index=255)
        for key, weight in (("out", 1.0), ("aux", 0.4))
    )


def train_check(sizes: Sizes, device: torch.device, budget: Budget) -> dict:
    cuda = device.type == "cuda"
    base = calibrated_model(sizes, device).train()
    initial = {k: v.clone() for k, v in base.state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    h, w = sizes.train_size
    batches = [
        (torch.randn(sizes.train_batch, 3, h, w, generator=gen).to(device), torch.randint(0, 19, (sizes.train_batch, h, w), generator=gen).to(device))
        for _ in range(sizes.train_steps)
    ]
    report: dict = {
        "model": f"{sizes.backbone}_ocr",
        "input": f"{h}x{w}",
        "batch": sizes.train_batch,
        "backend": "nccl" if cuda else "gloo",
        "world_size": 1,
        "sync_bn": cuda,
        "sync_bn_note": (
            "converted to SyncBatchNorm; with one process it computes with the ordinary BatchNorm kernels, the cross-process reduction is not exercised"
            if cuda
            else "not converted: SyncBatchNorm rejects CPU tensors once a process group exists"
        ),
        "runs": [],
    }
    with one_process_group(report["backend"], device):
        for amp in ("fp32", "fp16", "bf16"):
            if budget.left() < 30 and amp != "fp32":
                report["runs"].append({"amp": amp, "skipped": "time budget used up"})
                continue
            base.load_state_dict(initial)
            model = nn.SyncBatchNorm.convert_sync_batchnorm(base) if cuda else base
            ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
            optimizer = torch.optim.SGD(ddp.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
            scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
            dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(amp)
            losses, times, overflowed = [], [], 0
            _reset_peak(device)
            for images, labels in batches:
                start = time.perf_counter()
                optimizer.zero_grad(set_to_none=True)
                context = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
                with context:
                    outputs = ddp(images)
                loss = _loss(outputs, labels, base.align_corners)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                # GradScaler skips a step whose unscaled gradients overflowed (and lowers its scale)
                overflowed += not all(bool(torch.isfinite(p.grad).all()) for p in ddp.parameters() if p.grad is not None)
                scaler.step(optimizer)
                scaler.update()
                losses.append(loss.item())
                _synchronize(device)
                times.append(time.perf_counter() - start)
            run = {
                "amp": amp,
                "losses": losses,
                "seconds_per_step": statistics.median(times[1:] if len(times) > 1 else times),
                "first_step_s": times[0],
                "peak_memory_mib": _peak_mib(device),
                "losses_finite": all(math.isfinite(v) for v in losses),
                "steps_skipped_on_overflow": overflowed,
                "final_grad_scale": scaler.get_scale() if scaler.is_enabled() else None,
            }
            run["images_per_s"] = sizes.train_batch / run["seconds_per_step"]
            report["runs"].append(run)
            log.info("train %s: losses %s, %.3f s/step, peak %.0f MiB", amp, [f"{v:.4f}" for v in losses], run["seconds_per_step"], run["peak_memory_mib"])
            del ddp, optimizer
    fp32 = report["runs"][0]["losses"]
    for run in report["runs"][1:]:
        if "losses" in run:
            run["max_rel_loss_diff_vs_fp32"] = max(abs(a - b) / abs(b) for a, b in zip(run["losses"], fp32))
    return report


# --------------------------------------------------------------------------------------
# Inference per path
# --------------------------------------------------------------------------------------


def _time(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    _synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def inference_check(sizes: Sizes, device: torch.device, budget: Budget) -> dict:
    cuda = device.type == "cuda"
    model = calibrated_model(sizes, device)
    h, w = sizes.infer_size
    x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(1)).to(device)
    with torch.no_grad(), strict_fp32():
        reference = prepare_inference_model(model, "eager")(x)["out"]
    full = F.interpolate(reference, size=(h, w), mode="bilinear", align_corners=model.align_corners)
    ref_argmax = full.argmax(1)
    del full
    rows = []
    for path in INFERENCE_PATHS:
        if path.startswith("cuda_") and not cuda:
            rows.append({"path": path, "skipped": "needs CUDA"})
            continue
        if budget.left() < 20:
            rows.append({"path": path, "skipped": "time budget used up"})
            continue
        prepared = prepare_inference_model(model, path)
        _reset_peak(device)
        before = torch.cuda.memory_allocated(device) / 2**20 if cuda else None
        out = prepared(x)["out"]
        _synchronize(device)
        peak = _peak_mib(device)
        # how many repeats fit: a quarter of what is left, at most sizes.repeats
        forward = functools.partial(prepared, x)
        once = _time(forward, device, 1, warmup=1)[0]
        repeats = max(1, min(sizes.repeats, int(budget.left() / 4 / max(once, 1e-6))))
        times = _time(forward, device, repeats, warmup=0)
        seconds = statistics.median(times)
        diff = (out - reference).abs()
        upsampled = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=model.align_corners)
        row = {
            "path": path,
            "input": f"{h}x{w}",
            "seconds": seconds,
            "images_per_s": 1.0 / seconds,
            "repeats": repeats,
            "peak_memory_mib": peak,
            "memory_before_mib": before,
            "max_abs_logit_diff": diff.max().item(),
            "mean_abs_logit_diff": diff.mean().item(),
            "max_abs_logit": reference.abs().max().item(),
            "argmax_agreement": (upsampled.argmax(1) == ref_argmax).float().mean().item(),
        }
        rows.append(row)
        log.info(
            "infer %s: %.4f s (%.2f images/s), peak %.0f MiB, max |dlogit| %.2e, argmax agreement %.6f",
            path, seconds, row["images_per_s"], peak, row["max_abs_logit_diff"], row["argmax_agreement"],
        )  # fmt: skip
        del prepared, forward, out, upsampled
        if cuda:
            torch.cuda.empty_cache()
    return {"model": f"{sizes.backbone}_ocr", "input": f"{h}x{w}", "batch": 1, "reference": "eager fp32, TF32 off", "rows": rows}


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def environment(device: torch.device) -> dict:
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "cpu_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            cudnn=torch.backends.cudnn.version(),
            tf32_conv_default=torch.backends.cudnn.allow_tf32,
            tf32_matmul_default=torch.backends.cuda.matmul.allow_tf32,
            nccl=".".join(map(str, torch.cuda.nccl.version())),
        )
    return env


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def markdown(report: dict) -> str:
    dry = report["dry_run"]
    env = report["environment"]
    lines = [START, "## GPU check", ""]
    if dry:
        lines += [
            "**Dry run on the CPU (tiny model and sizes, gloo): these are not GPU figures.** "
            "The GPU figures are not yet measured: no GPU was available to this project so far.",
            "",
        ]
    lines += [
        f"Measured {report['started']} with `{report['command']}`; {env.get('gpu', 'CPU')}, torch {env['torch']}, CUDA {env['cuda']}. Raw rows in `{report['json']}`.",
        "",
    ]
    tests = report.get("cuda_tests")
    if tests:
        lines += [f"CUDA tests: {tests}", ""]
    inf = report["inference"]
    lines += [
        f"Inference, {inf['model']} at {inf['input']}, batch 1; logit difference to {inf['reference']}; argmax agreement at full resolution:",
        "",
        "Peak memory: " + ("`torch.cuda.max_memory_allocated` of one forward (weights included)." if not dry else "peak RSS of the whole process (dry run)."),
        "",
        "| path | images/s | s/image | peak memory MiB | max abs logit diff | argmax agreement |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in inf["rows"]:
        if "skipped" in r:
            lines.append(f"| {r['path']} | skipped: {r['skipped']} | | | | |")
        else:
            lines.append(
                f"| {r['path']} | {r['images_per_s']:.2f} | {r['seconds']:.4f} | {r['peak_memory_mib']:.0f} | {r['max_abs_logit_diff']:.1e} | {r['argmax_agreement']:.6f} |"
            )
    half = [r for r in inf["rows"] if r["path"] in ("cuda_fp16", "cuda_bf16") and "skipped" not in r]
    if half and not dry:
        best = max(half, key=lambda r: r["images_per_s"])
        met = best["images_per_s"] >= GOAL_IMAGES_PER_S and best["argmax_agreement"] >= GOAL_ARGMAX_AGREEMENT
        lines += [
            "",
            f"Goal >= {GOAL_IMAGES_PER_S:.0f} images/s in half precision with argmax agreement >= {GOAL_ARGMAX_AGREEMENT:.1%}: {'met' if met else 'not met'} ({best['path']}: {best['images_per_s']:.1f} images/s, {best['argmax_agreement']:.4%}).",
        ]
    lines += ["", "Published anchors (other hardware, not measured here):", "", "| implementation | setting | throughput |", "|---|---|---|"]
    lines += [f"| {name} | {setting} | {value} |" for name, setting, value in ANCHORS]
    tr = report["train"]
    lines += [
        "",
        f"Training steps, {tr['model']} at {tr['input']}, batch {tr['batch']}, DDP world size {tr['world_size']} ({tr['backend']}); SyncBatchNorm: {tr['sync_bn_note']}.",
        "",
        "| amp | s/step | images/s | peak memory MiB | losses finite | steps skipped on overflow | max rel. loss diff vs fp32 | losses |",
        "|---|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in tr["runs"]:
        if "skipped" in r:
            lines.append(f"| {r['amp']} | skipped: {r['skipped']} | | | | | | |")
        else:
            losses = ", ".join(f"{v:.4f}" for v in r["losses"])
            lines.append(
                f"| {r['amp']} | {r['seconds_per_step']:.3f} | {r['images_per_s']:.2f} | {r['peak_memory_mib']:.0f} | {r['losses_finite']} | {r['steps_skipped_on_overflow']} | {_fmt(r.get('max_rel_loss_diff_vs_fp32'), '.1e')} | {losses} |"
            )
    lines += ["", END]
    return "\n".join(lines)


def replace_section(path: Path, section: str, start: str = START, end: str = END) -> None:
    """Put ``section`` (which starts with ``start`` and ends with ``end``) in place of the
    marked section of ``path``, or append it."""
    text = path.read_text() if path.exists() else ""
    if start in text and end in text:
        head, rest = text.split(start, 1)
        tail = rest.split(end, 1)[1]
        text = head + section + tail
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section + "\n"
    io.write_text(path, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry", action="store_true", help="CPU, tiny sizes, gloo (automatic without CUDA)")
    parser.add_argument("--out", type=Path, default=None, help="JSON report (default benchmarks/results/gpu.json, gpu_dry.json in a dry run)")
    parser.add_argument(
        "--results-md", type=Path, default=None, help="file whose gpu-check section is replaced (the GPU run defaults to benchmarks/RESULTS.md)"
    )
    parser.add_argument("--budget-s", type=float, default=330.0, help="wall-clock budget of this script in seconds")
    parser.add_argument("--cuda-tests", default=None, help="the CUDA test summary line, for the report")
    parser.add_argument("--command", default="bash benchmarks/gpu_check.sh", help="the command recorded in the report")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    dry = args.dry or not torch.cuda.is_available()
    if dry and not args.dry:
        log.warning("no CUDA GPU here: running the dry run on the CPU")
    device = torch.device("cpu") if dry else torch.device("cuda", 0)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    sizes = DRY_SIZES if dry else GPU_SIZES
    out = args.out or HERE / "results" / ("gpu_dry.json" if dry else "gpu.json")
    results_md = args.results_md or (None if dry else HERE / "RESULTS.md")
    budget = Budget(args.budget_s)
    report = {
        "command": args.command + (" --dry" if dry and "--dry" not in args.command else ""),
        "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "dry_run": dry,
        "json": os.path.relpath(out, HERE.parent) if out.is_absolute() and HERE.parent in out.parents else str(out),
        "environment": environment(device),
        "cuda_tests": args.cuda_tests,
    }
    report["inference"] = inference_check(sizes, device, budget)
    report["train"] = train_check(sizes, device, budget)
    report["seconds"] = args.budget_s - budget.left()
    io.write_json(out, report)
    if results_md is not None:
        replace_section(results_md, markdown(report))
    print(json.dumps({"json": str(out), "results_md": str(results_md) if results_md else None, "seconds": round(report["seconds"], 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
