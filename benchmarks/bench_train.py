"""Training-step variants side by side (issue 16, training throughput): the plain loop against
channels_last, foreach SGD, both, and ``train.winograd`` (the default), interleaved in one process so that background load hits
every variant alike.

    .venv/bin/python benchmarks/bench_train.py                  # W18-Small-v2+OCR 256x512 b2, and the embedded model
    .venv/bin/python benchmarks/bench_train.py --rounds 7 --json benchmarks/results/train_variants.json

Each variant has its own copy of the same weights (``bench_model.realistic_model``, put back
in train mode) and optimizer. A round runs ``--steps`` steps of every variant in turn; the
figure per variant is the median over rounds of the mean step time (warm-up steps first).
The loss is the training loss's arithmetic (``hrseg.engine.losses.SegmentationLoss``: main +
0.4 aux for OCR). Also printed: what the numbers depend on (threads, CPU capability, torch).
Adopting a variant as the default also needs a loss-trajectory test against today's loop.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_model import realistic_model  # noqa: E402

from hrseg.engine.losses import SegmentationLoss  # noqa: E402
from hrseg.models.winograd import use_winograd_training  # noqa: E402
from hrseg.recipe import LossConfig  # noqa: E402

VARIANTS = {
    "eager": (False, False, False), "channels_last": (True, False, False), "foreach_sgd": (False, True, False),
    "channels_last+foreach": (True, True, False), "winograd": (False, False, True),
}  # fmt: skip
CASES = {
    "w18s2_ocr_256x512_b2": ("hrnetv2_w18_small_v2", "ocr", (256, 512), 2, {}),
    "embedded_cityscapes_ocr_64x128_b4": ("hrnetv2_w18_small_v1", "ocr", (64, 128), 4, {"ocr_mid_channels": 32, "ocr_key_channels": 16}),
}


def build(backbone: str, head: str, size: tuple[int, int], batch: int, kwargs: dict, channels_last: bool, foreach: bool, winograd: bool = False):
    model = realistic_model(backbone, head, calibration_size=(64, 128), **kwargs).train()
    if winograd:  # what train.winograd does (hrseg.engine.train): OCR's 3x3 layer by NNPACK
        use_winograd_training(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss = SegmentationLoss(LossConfig(balance_weights=[0.4, 1.0] if head == "ocr" else [1.0]), num_classes=19, ignore_label=255, align_corners=model.align_corners)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, foreach=foreach)
    torch.manual_seed(1)
    images = torch.randn(batch, 3, *size)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 19, (batch, *size))

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        value = loss(model(images), labels)
        value.backward()
        optimizer.step()
        return float(value.detach())

    return step


def gradient_errors(name: str, seeds: int) -> dict:
    """How far one step's gradients are from float64's, eager fp32 against channels_last fp32
    (relative L2 norm over all parameters), for ``seeds`` random initialisations of the case's
    model in training mode (batch statistics): the accuracy cost of a variant, beside its speed."""
    import copy

    from hrseg.models import build_model

    backbone, head, size, batch, kwargs = CASES[name]
    loss = SegmentationLoss(LossConfig(balance_weights=[0.4, 1.0] if head == "ocr" else [1.0]), num_classes=19, ignore_label=255, align_corners=False)
    rows = []
    for seed in range(seeds):
        torch.manual_seed(seed)
        base = build_model(backbone, head, 19, **kwargs).train()
        images, labels = torch.randn(batch, 3, *size), torch.randint(0, 19, (batch, *size))
        grads = {}
        for variant, dtype, channels_last in (("float64", torch.float64, False), ("eager", torch.float32, False), ("channels_last", torch.float32, True)):
            model, x = copy.deepcopy(base).to(dtype), images.to(dtype)
            if channels_last:
                model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
            torch.manual_seed(100 + seed)  # the same dropout masks
            loss(model(x), labels).backward()
            grads[variant] = torch.cat([p.grad.double().flatten() for p in model.parameters()])
        ref = grads["float64"]
        rows.append({v: float((grads[v] - ref).norm() / ref.norm()) for v in ("eager", "channels_last")})
    return {"case": name, "seeds": rows}


def run_case(name: str, rounds: int, steps: int) -> dict:
    backbone, head, size, batch, kwargs = CASES[name]
    steps_by = {v: build(backbone, head, size, batch, kwargs, *flags) for v, flags in VARIANTS.items()}
    for step in steps_by.values():
        step()  # warm-up
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(rounds):
        for variant, step in steps_by.items():
            start = time.perf_counter()
            for _ in range(steps):
                step()
            times[variant].append((time.perf_counter() - start) / steps)
    base = statistics.median(times["eager"])
    rows = {
        v: {"seconds_per_step": statistics.median(t), "images_per_s": batch / statistics.median(t), "speedup": base / statistics.median(t), "rounds": t}
        for v, t in times.items()
    }
    return {"case": name, "batch": batch, "size": list(size), "variants": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default="")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--gradients", type=int, default=0, metavar="SEEDS", help="also: gradient error vs float64 over SEEDS inits")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    machine = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__, "processor": platform.processor() or platform.machine(),
        "load_start": os.getloadavg()[0],
    }  # fmt: skip
    results = [run_case(name, args.rounds, args.steps) for name in CASES if args.only in name and args.rounds > 0]
    gradients = [gradient_errors(name, args.gradients) for name in CASES if args.only in name and args.gradients > 0]
    machine["load_end"] = os.getloadavg()[0]
    print(f"threads {machine['threads']}, {machine['cpu_capability']}, torch {machine['torch']}, load {machine['load_start']:.1f} -> {machine['load_end']:.1f}")
    for result in results:
        for variant, row in result["variants"].items():
            print(f"{result['case']:36s} {variant:22s} {row['seconds_per_step'] * 1000:8.1f} ms/step {row['images_per_s']:7.2f} images/s  x{row['speedup']:.2f}")
    for result in gradients:
        for variant in ("eager", "channels_last"):
            errors = ", ".join(f"{row[variant]:.1e}" for row in result["seeds"])
            print(f"{result['case']:36s} {variant:22s} gradient error vs float64: {errors}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "results": results, "gradients": gradients}, indent=2) + "\n")


if __name__ == "__main__":
    main()
