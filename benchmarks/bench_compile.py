"""torch.compile (inductor) against today's eager paths on the CPU (issue 16), in one process.

    .venv/bin/python benchmarks/bench_compile.py                # training step + W48+OCR inference
    .venv/bin/python benchmarks/bench_compile.py --infer-variants eager,folded_cl,folded_cl+compile --warm-cache train \\
        --json benchmarks/results/compile.json --md benchmarks/results/compile.md

Training step (``--train-size``, default W18-Small-v2+OCR 256x512 batch 2, as
``benchmarks/bench_train.py``): forward, the training loss (``hrseg.engine.losses.SegmentationLoss``:
main + 0.4 aux), backward and SGD (momentum 0.9), eager against ``torch.compile(model)``
(inductor; ``--train-modes`` adds e.g. ``max-autotune-no-cudagraphs``). The loss stays eager.
Every variant starts from the same weights (``bench_model.realistic_model``, BatchNorm momentum
put back to the models' 0.1, train mode) and trains on the same batch: the first
``--parity-steps`` steps of each, from the same RNG seed, give the loss trajectory and the
parameters compared against eager (compiled variants use ``fallback_random``, so that the OCR
head's Dropout2d draws the same mask as eager). For scale, an eager channels_last copy (which
differs from eager by float32 rounding only) runs the same steps, untimed. The first compiled
step includes the compile.

Inference (``--infer-size``, default W48+OCR 512x1024 batch 1, eval mode, no grad): the
``eager`` and ``folded_cl`` paths of ``hrseg.evaluation.inference_paths.prepare_inference_model``
against ``torch.compile`` of the ``folded_cl``-prepared module (channels_last input) and of the
eager module, both with ``torch._inductor.config.freezing = True``. Logits (``out``) are
compared with eager's: max abs / max relative difference and argmax agreement.

Timing: after the parity steps / first calls, ``--rounds`` interleaved rounds (every variant
in turn, so background load hits all alike) of ``--steps`` steps or ``--images`` images; each
figure is the median over rounds of the per-round mean. The inductor cache
(``TORCHINDUCTOR_CACHE_DIR``) is a fresh empty folder, set before torch is imported, so the
first compiled call is a cold compile; ``--warm-cache`` then times the first calls again in a
second process that reuses that cache. Also printed: threads, torch, CPU capability, CPU model.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path


def _inductor_cache_dir(argv: list[str]) -> str:
    """``--cache-dir DIR`` (the warm-cache child reuses its parent's cache) or a fresh empty one."""
    if "--cache-dir" in argv:
        return argv[argv.index("--cache-dir") + 1]
    return tempfile.mkdtemp(prefix="hrseg-inductor-")


if __name__ == "__main__":  # must precede the import of torch
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = _inductor_cache_dir(sys.argv)

import torch  # noqa: E402
import torch._inductor.config as inductor_config  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_model import machine, realistic_model  # noqa: E402

from hrseg.engine.losses import SegmentationLoss  # noqa: E402
from hrseg.evaluation.inference_paths import InferenceModel, prepare_inference_model  # noqa: E402
from hrseg.recipe import LossConfig  # noqa: E402

TRAIN_MODEL = "hrnetv2_w18_small_v2_ocr"
INFER_MODEL = "hrnetv2_w48_ocr"
INFER_VARIANTS = ("eager", "folded_cl", "folded_cl+compile", "eager+compile")
#: per-tensor tolerance for "the parameters agree" after the parity steps
PARAM_RTOL, PARAM_ATOL = 1e-4, 1e-5
#: a parity-only training variant: eager in channels_last, which differs from eager by float32 rounding only
BASELINE = "eager_channels_last (rounding baseline)"


def _size(text: str) -> tuple[int, int]:
    height, width = text.lower().split("x")
    return int(height), int(width)


def _error(exc: BaseException) -> str:
    lines = traceback.format_exception_only(type(exc), exc)
    return "".join(lines).strip()[-2000:]


def _graph_breaks() -> int | None:
    try:
        from torch._dynamo.utils import counters

        return sum(counters["graph_break"].values())
    except Exception:  # a diagnostic only
        return None


def _delta(after: int | None, before: int | None) -> int | None:
    return None if after is None or before is None else after - before


def _compile(module: torch.nn.Module, mode: str) -> torch.nn.Module:
    return torch.compile(module, mode=None if mode == "default" else mode)


# --------------------------------------------------------------------------------------
# Training step
# --------------------------------------------------------------------------------------


def _split(name: str) -> tuple[str, str]:
    backbone, _, head = name.rpartition("_")
    return backbone, head


def train_model(name: str) -> torch.nn.Module:
    model = realistic_model(*_split(name), calibration_size=(64, 128)).train()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = 0.1  # realistic_model calibrates with None (cumulative average)
    return model


def make_step(module: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, align_corners: bool, ocr: bool = True):
    loss = SegmentationLoss(LossConfig(balance_weights=[0.4, 1.0] if ocr else [1.0]), num_classes=19, ignore_label=255, align_corners=align_corners)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        value = loss(module(images), labels)
        value.backward()
        optimizer.step()
        return float(value.detach())

    return step


def _max_diff(a: torch.nn.Module, b: torch.nn.Module) -> tuple[float, float, bool]:
    """Max abs difference over parameters, over BN buffers, and whether every parameter agrees."""
    params_b = dict(b.named_parameters())
    param_diff, agree = 0.0, True
    for name, p in a.named_parameters():
        q = params_b[name].detach()
        param_diff = max(param_diff, float((p.detach() - q).abs().max()))
        agree = agree and torch.allclose(p.detach(), q, rtol=PARAM_RTOL, atol=PARAM_ATOL)
    buffers_b = dict(b.named_buffers())
    buffer_diff = max((float((t.double() - buffers_b[n].double()).abs().max()) for n, t in a.named_buffers()), default=0.0)
    return param_diff, buffer_diff, agree


def run_training(
    name: str, size: tuple[int, int], batch: int, modes: list[str], rounds: int, steps: int, parity_steps: int, rounding_baseline: bool = True
) -> dict:
    inductor_config.fallback_random = True  # Dropout2d draws from the eager RNG, as eager does
    base = train_model(name)
    torch.manual_seed(1)
    images = torch.randn(batch, 3, *size)
    labels = torch.randint(0, 19, (batch, *size))
    models = {"eager": base, **{f"compile:{mode}": copy.deepcopy(base) for mode in modes}}  # same weights
    if rounding_baseline:  # parity only: how far two eager runs that differ only by float32 rounding drift apart
        models[BASELINE] = copy.deepcopy(base).to(memory_format=torch.channels_last)
    rows: dict[str, dict] = {}
    step_fns = {}
    for variant, model in models.items():
        module = _compile(model, variant.split(":", 1)[1]) if variant.startswith("compile:") else model
        inputs = images.contiguous(memory_format=torch.channels_last) if variant == BASELINE else images
        step_fns[variant] = make_step(module, inputs, labels, base.align_corners, name.endswith("_ocr"))
        torch.manual_seed(1234)
        losses, times = [], []
        row: dict = {"variant": variant}
        breaks = _graph_breaks()
        try:
            for _ in range(parity_steps):
                start = time.perf_counter()
                losses.append(step_fns[variant]())
                times.append(time.perf_counter() - start)
        except Exception as exc:  # recorded in the results
            row["error"] = _error(exc)
            del step_fns[variant]
            print(f"train {variant}: FAILED after {len(losses)} steps: {row['error']}", flush=True)
        row.update({"losses": losses, "first_step_times": times, "graph_breaks": _delta(_graph_breaks(), breaks) if variant.startswith("compile:") else None})
        rows[variant] = row
        print(f"train {variant}: first steps {', '.join(f'{t:.1f}' for t in times)} s; losses {', '.join(f'{v:.6f}' for v in losses)}", flush=True)
    eager_losses = rows["eager"]["losses"]
    for variant, row in rows.items():
        if variant == "eager" or "error" in row:
            continue
        param_diff, buffer_diff, agree = _max_diff(base, models[variant])
        row.update(
            {
                "max_abs_loss_diff": max(abs(a - b) for a, b in zip(row["losses"], eager_losses)),
                "loss_diff_per_step": [a - b for a, b in zip(row["losses"], eager_losses)],
                "max_abs_param_diff": param_diff,
                "max_abs_buffer_diff": buffer_diff,
                "params_agree": agree,
            }
        )
    step_fns.pop(BASELINE, None)
    times: dict[str, list[float]] = {v: [] for v in step_fns}
    for _ in range(rounds):
        for variant, step in step_fns.items():
            start = time.perf_counter()
            for _ in range(steps):
                step()
            times[variant].append((time.perf_counter() - start) / steps)
    eager_s = statistics.median(times["eager"])
    for variant, t in times.items():
        seconds = statistics.median(t)
        row = rows[variant]
        row.update({"seconds_per_step": seconds, "images_per_s": batch / seconds, "speedup": eager_s / seconds, "rounds": t})
        if variant != "eager":
            row["compile_seconds"] = row["first_step_times"][0]  # the first compiled step, compile included
            row["compile_overhead_seconds"] = row["first_step_times"][0] - seconds
    return {
        "model": name,
        "size": list(size),
        "batch": batch,
        "parity_steps": parity_steps,
        "rounds": rounds,
        "steps": steps,
        "variants": rows,
    }


# --------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------


def compiled_inference(prepared: InferenceModel, channels_last: bool, name: str) -> InferenceModel:
    """``torch.compile`` of a prepared path's module, called like that path (same input layout)."""
    compiled = torch.compile(prepared.module)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def run(x: torch.Tensor) -> dict[str, torch.Tensor]:
        return compiled(x.contiguous(memory_format=memory_format))

    return InferenceModel(run, path=name, align_corners=prepared.align_corners, num_classes=prepared.num_classes, device=prepared.device, module=compiled)


def build_inference(variant: str, model: torch.nn.Module) -> InferenceModel:
    if variant in ("eager", "folded_cl"):
        return prepare_inference_model(model, variant)
    inductor_config.freezing = True
    base = variant.split("+", 1)[0]
    return compiled_inference(prepare_inference_model(model, base), channels_last=base == "folded_cl", name=variant)


def compare(out: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> dict:
    a, b = out["out"].double(), ref["out"].double()
    diff = (a - b).abs()
    return {
        "max_abs_logit_diff": float(diff.max()),
        "max_rel_logit_diff": float((diff / b.abs().clamp(min=1e-30)).max()),
        "max_abs_diff_over_max_logit": float(diff.max() / b.abs().max()),
        "argmax_agreement": float((a.argmax(1) == b.argmax(1)).double().mean()),
        "max_abs_aux_diff": float((out["aux"].double() - ref["aux"].double()).abs().max()) if "aux" in out else None,
    }


def run_inference(name: str, size: tuple[int, int], variants: list[str], rounds: int, images: int) -> dict:
    model = realistic_model(*_split(name))
    torch.manual_seed(2)
    x = torch.randn(1, 3, *size)
    rows: dict[str, dict] = {}
    paths: dict[str, InferenceModel] = {}
    reference = None
    for variant in variants:
        row: dict = {"variant": variant}
        breaks = _graph_breaks()
        try:
            start = time.perf_counter()
            path = build_inference(variant, model)
            row["prepare_seconds"] = time.perf_counter() - start
            start = time.perf_counter()
            out = path(x)
            row["first_call_seconds"] = time.perf_counter() - start
            paths[variant] = path
            if variant == "eager":
                reference = out
            elif reference is not None:
                row.update(compare(out, reference))
            if "compile" in variant:
                row["graph_breaks"] = _delta(_graph_breaks(), breaks)
            del out
        except Exception as exc:  # recorded in the results
            row["error"] = _error(exc)
            print(f"infer {variant}: FAILED: {row['error']}", flush=True)
        rows[variant] = row
        if "first_call_seconds" in row:
            print(f"infer {variant}: prepare {row['prepare_seconds']:.1f} s, first call {row['first_call_seconds']:.1f} s", flush=True)
    times: dict[str, list[float]] = {v: [] for v in paths}
    for _ in range(rounds):
        for variant, path in paths.items():
            start = time.perf_counter()
            for _ in range(images):
                path(x)
            times[variant].append((time.perf_counter() - start) / images)
    eager_s = statistics.median(times["eager"]) if "eager" in times else None
    for variant, t in times.items():
        seconds = statistics.median(t)
        row = rows[variant]
        row.update({"seconds_per_image": seconds, "images_per_s": 1 / seconds, "speedup_vs_eager": eager_s / seconds if eager_s else None, "rounds": t})
        if "compile" in variant:
            row["compile_seconds"] = row["first_call_seconds"]
            row["compile_overhead_seconds"] = row["first_call_seconds"] - seconds
    return {"model": name, "size": list(size), "batch": 1, "rounds": rounds, "images": images, "variants": rows}


# --------------------------------------------------------------------------------------
# Warm cache: the first compiled calls again, in a fresh process on the parent's cache
# --------------------------------------------------------------------------------------


def warm_child(args: argparse.Namespace) -> dict:
    """First compiled step / call with the inductor cache the parent filled (run as the child)."""
    out: dict = {"train": {}, "infer": {}}
    if args.train_size != "none":
        inductor_config.fallback_random = True
        size = _size(args.train_size)
        base = train_model(args.train_model)
        torch.manual_seed(1)
        images, labels = torch.randn(args.batch, 3, *size), torch.randint(0, 19, (args.batch, *size))
        for mode in args.train_modes.split(","):
            step = make_step(_compile(copy.deepcopy(base), mode), images, labels, base.align_corners, args.train_model.endswith("_ocr"))
            torch.manual_seed(1234)
            start = time.perf_counter()
            try:
                step()
                out["train"][f"compile:{mode}"] = time.perf_counter() - start
            except Exception as exc:  # recorded in the results
                out["train"][f"compile:{mode}"] = _error(exc)
    if args.infer_size != "none":
        size = _size(args.infer_size)
        model = realistic_model(*_split(args.infer_model))
        torch.manual_seed(2)
        x = torch.randn(1, 3, *size)
        for variant in args.infer_variants.split(","):
            if "compile" not in variant:
                continue
            try:
                path = build_inference(variant, model)
                start = time.perf_counter()
                path(x)
                out["infer"][variant] = time.perf_counter() - start
            except Exception as exc:  # recorded in the results
                out["infer"][variant] = _error(exc)
    return out


def run_warm_child(args: argparse.Namespace, cache_dir: str) -> dict:
    argv = [sys.executable, str(Path(__file__).resolve()), "--warm-child", "--cache-dir", cache_dir, "--threads", str(args.threads)]
    argv += ["--train-model", args.train_model, "--infer-model", args.infer_model]
    train_size = args.train_size if args.warm_cache in ("all", "train") else "none"
    infer_size = args.infer_size if args.warm_cache in ("all", "infer") else "none"
    argv += ["--train-size", train_size, "--batch", str(args.batch), "--train-modes", args.train_modes]
    argv += ["--infer-size", infer_size, "--infer-variants", args.infer_variants]
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - start
    for line in proc.stdout.splitlines():
        if line.startswith("WARM "):
            return {**json.loads(line[5:]), "process_wall_seconds": wall}
    return {"error": f"exit {proc.returncode}: {(proc.stderr or proc.stdout)[-2000:]}", "process_wall_seconds": wall}


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def _f(value, spec: str, missing: str = "-") -> str:
    return missing if value is None or isinstance(value, str) else format(value, spec)


def markdown(data: dict, note: str = "") -> str:
    m = data["machine"]
    lines = [
        "# torch.compile on the CPU (issue 16)",
        "",
        f"Measured {m['date']} (wall time of the whole run {data['wall_seconds'] / 60:.1f} min) on {m['cpu']}, {m['cores']} cores, "
        f"{m['threads']} threads, {m['cpu_capability']} kernels, torch {m['torch']}, Python {m['python']}; "
        f"1-min load average {m['load_average_1min_at_start']:.2f} before, {m['load_average_1min_at_end']:.2f} after; with",
        "",
        f"    {data['command']}",
        "",
        "The inductor cache was a fresh empty folder, so the compile figures are cold compiles (the first compiled step or call, "
        "which includes running it once); 'warm cache' is the same first call in a second process reusing that cache.",
    ]
    t = data.get("train")
    if t:
        lines += [
            "",
            f"**Training step**, {t['model']} {t['size'][0]}x{t['size'][1]} batch {t['batch']}, SGD momentum 0.9, loss eager: "
            f"median of {t['rounds']} interleaved rounds x {t['steps']} steps; parity over the first {t['parity_steps']} steps "
            f"from the same weights, batch and RNG seed (parameters agree: every tensor within rtol {PARAM_RTOL:g}, atol {PARAM_ATOL:g}).",
            "",
            "| variant | compile s (cold, 1st step) | warm cache s | s/step | images/s | speed-up | max abs loss diff | max abs param diff | params agree | graph breaks |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
        ]
        warm = data.get("warm_cache", {}).get("train", {})
        for name, r in t["variants"].items():
            if "error" in r and "seconds_per_step" not in r:
                lines.append(f"| {name} | failed: `{r['error'][:300]}` | | | | | | | | |")
                continue
            if name == BASELINE:
                lines.append(
                    f"| {name} | - | - | not timed | | | {_f(r.get('max_abs_loss_diff'), '.2e')} | {_f(r.get('max_abs_param_diff'), '.2e')} | {r.get('params_agree', '-')} | - |"
                )
                continue
            second = (r["first_step_times"] + [None, None])[1]
            compile_s = "-" if name == "eager" else f"{_f(r.get('compile_seconds'), '.1f')} (2nd step {_f(second, '.2f')})"
            lines.append(
                f"| {name} | {compile_s} | {_f(warm.get(name), '.1f')} | {r['seconds_per_step']:.3f} | "
                f"{r['images_per_s']:.2f} | {r['speedup']:.2f}x | {_f(r.get('max_abs_loss_diff'), '.2e')} | "
                f"{_f(r.get('max_abs_param_diff'), '.2e')} | {r.get('params_agree', '-')} | {_f(r.get('graph_breaks'), 'd')} |"
            )
    i = data.get("infer")
    if i:
        lines += [
            "",
            f"**Inference**, {i['model']} {i['size'][0]}x{i['size'][1]} batch 1, eval, no grad: median of {i['rounds']} interleaved rounds "
            f"x {i['images']} images. Compiled variants use inductor freezing. Logit differences are of `out` against eager "
            "(relative: elementwise |a-b|/|b|; scaled: max |a-b| / max |b|).",
            "",
            "| path | compile s (cold, 1st call) | warm cache s | s/image | speed-up vs eager | max abs diff | max rel diff | scaled diff | argmax agreement |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        warm = data.get("warm_cache", {}).get("infer", {})
        for name, r in i["variants"].items():
            if "error" in r:
                lines.append(f"| {name} | failed: `{r['error'][:300]}` | | | | | | | |")
                continue
            lines.append(
                f"| {name} | {_f(r.get('compile_seconds'), '.1f')} | {_f(warm.get(name), '.1f')} | {r['seconds_per_image']:.3f} | "
                f"{_f(r.get('speedup_vs_eager'), '.2f')}x | {_f(r.get('max_abs_logit_diff'), '.2e')} | {_f(r.get('max_rel_logit_diff'), '.2e')} | "
                f"{_f(r.get('max_abs_diff_over_max_logit'), '.2e')} | {_f(r.get('argmax_agreement'), '.6f')} |"
            )
    warm_all = data.get("warm_cache", {})
    errors = [f"warm cache, {k} {n}: `{v[:300]}`" for k in ("train", "infer") for n, v in warm_all.get(k, {}).items() if isinstance(v, str)]
    if "error" in warm_all:
        errors.append(f"warm-cache process: `{warm_all['error'][:500]}`")
    if errors:
        lines += ["", "Errors: " + "; ".join(errors)]
    lines += ["", goals(data)]
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def goals(data: dict) -> str:
    parts = []
    t = data.get("train")
    if t:
        best = max(((r["speedup"], n) for n, r in t["variants"].items() if n.startswith("compile:") and "speedup" in r), default=None)
        parts.append(
            "Goal, training >= 1.3x images/s over today's eager step: "
            + (f"best compiled variant {best[1]} {best[0]:.2f}x, {'met' if best[0] >= 1.3 else 'not met'}." if best else "no compiled variant ran.")
        )
    i = data.get("infer")
    if i:
        best = max(((r["speedup_vs_eager"], n) for n, r in i["variants"].items() if n != "eager" and r.get("speedup_vs_eager")), default=None)
        full = i["model"] == "hrnetv2_w48_ocr" and i["size"] == [512, 1024]
        parts.append(
            "Goal, inference >= 2.0x over eager fp32 for W48+OCR 512x1024: "
            + (f"best path {best[1]} {best[0]:.2f}x, {'met' if best[0] >= 2.0 else 'not met'}" if best else "nothing ran")
            + ("." if full else f" (measured at {i['size'][0]}x{i['size'][1]}, not the goal's size).")
        )
    return " ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-model", default=TRAIN_MODEL, help="<backbone>_<head>")
    parser.add_argument("--infer-model", default=INFER_MODEL, help="<backbone>_<head>")
    parser.add_argument("--train-size", default="256x512", help="HxW, or 'none' to skip the training step")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--train-modes", default="default", help="comma-separated torch.compile modes, e.g. default,max-autotune-no-cudagraphs")
    parser.add_argument("--parity-steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (training and inference)")
    parser.add_argument("--steps", type=int, default=3, help="training steps per variant per round")
    parser.add_argument("--infer-size", default="512x1024", help="HxW, or 'none' to skip inference")
    parser.add_argument("--infer-variants", default=",".join(INFER_VARIANTS))
    parser.add_argument("--images", type=int, default=2, help="images per variant per round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--warm-cache",
        nargs="?",
        const="all",
        choices=("all", "train", "infer"),
        help="time the first compiled calls again in a second process on the same cache",
    )
    parser.add_argument("--cache-dir", help="inductor cache to use (default: a fresh temporary folder, removed at the end)")
    parser.add_argument("--warm-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--md", type=Path)
    parser.add_argument("--note", default="", help="a paragraph for --md, after the tables")
    parser.add_argument("--render", type=Path, help="measure nothing: write --md from this --json output (with --note)")
    args = parser.parse_args()
    if args.render:
        if not args.cache_dir:
            shutil.rmtree(os.environ["TORCHINDUCTOR_CACHE_DIR"], ignore_errors=True)  # the unused fresh one
        args.md.write_text(markdown(json.loads(args.render.read_text()), args.note))
        return
    torch.set_num_threads(args.threads)
    if args.warm_child:
        print("WARM " + json.dumps(warm_child(args)), flush=True)
        return
    started = time.perf_counter()
    info = machine()
    info.update(
        {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "inductor_compile_threads": inductor_config.compile_threads,
            "cxx": shutil.which("g++") or shutil.which("c++"),
        }
    )
    info.pop("benchmark", None)
    print(
        f"{info['cpu']}, {info['cores']} cores, threads {info['threads']}, {info['cpu_capability']}, torch {info['torch']}, load {info['load_average_1min_at_start']:.2f}"
    )
    cache_dir = os.environ["TORCHINDUCTOR_CACHE_DIR"]
    data: dict = {"command": shlex.join([".venv/bin/python", "benchmarks/bench_compile.py", *sys.argv[1:]]), "machine": info, "inductor_cache_dir": cache_dir}
    if args.train_size != "none":
        data["train"] = run_training(
            args.train_model, _size(args.train_size), args.batch, args.train_modes.split(","), args.rounds, args.steps, args.parity_steps
        )
    if args.infer_size != "none":
        data["infer"] = run_inference(args.infer_model, _size(args.infer_size), args.infer_variants.split(","), args.rounds, args.images)
    if args.warm_cache:
        data["warm_cache"] = run_warm_child(args, cache_dir)
        print(f"warm cache: {data['warm_cache']}", flush=True)
    info["load_average_1min_at_end"] = os.getloadavg()[0]
    data["wall_seconds"] = time.perf_counter() - started
    if not args.cache_dir:
        shutil.rmtree(cache_dir, ignore_errors=True)
    for section in ("train", "infer"):
        for name, r in data.get(section, {}).get("variants", {}).items():
            s = r.get("seconds_per_step", r.get("seconds_per_image"))
            if s is not None:
                speed = r.get("speedup", r.get("speedup_vs_eager"))
                print(f"{section} {name:24s} {s:8.3f} s  {r['images_per_s']:6.2f} images/s  x{speed:.2f}  compile {_f(r.get('compile_seconds'), '.1f')} s")
    print(goals(data))
    if args.json:
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    if args.md:
        args.md.write_text(markdown(data, args.note))


if __name__ == "__main__":
    main()
