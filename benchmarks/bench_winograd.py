"""Winograd (NNPACK) for the large 3x3 convolutions: layers, whole models, 6-scale evaluation.

Run from the repository root::

    .venv/bin/python benchmarks/bench_winograd.py                 # about 6 minutes on 2 CPU cores
    .venv/bin/python benchmarks/bench_winograd.py --quick         # smoke run: under a minute
    .venv/bin/python benchmarks/bench_winograd.py --json benchmarks/results/winograd.json --md benchmarks/results/winograd.md
    .venv/bin/python benchmarks/bench_winograd.py --parts tiles,forward                 # only some parts

One process, one run, so that every ratio compares figures taken under the same load:

1. ``machine``: what the figures depend on: the CPU and its vector units, cores and torch
   threads, the OpenMP runtime, whether NNPACK runs, ONNX Runtime's version, and the fp32
   matrix-multiply rate probed between the timings (on the same kind of machine it has
   measured from 87 to 172 GFLOP/s on different days; every absolute time scales with it).
2. ``layers``: single 3x3 convolutions, oneDNN's direct kernel (channels_last, as in the
   ``folded_cl`` path) against ``hrseg.models.winograd.WinogradConv2d`` (NCHW copies
   included), interleaved; error against float64 as a fraction of the largest output. These
   rows set ``WinogradRule``'s thresholds.
2b. ``tiles``: HRNet's branch convolutions, the direct kernel against
   ``hrseg.models.winograd_tiles.TiledWinogradConv2d`` (F(4x4, 3x3) by batched matrix
   products); these rows set ``TileRule``'s thresholds.
3. ``forward``: whole models, one 512x1024 image, paths side by side (eager, folded_cl,
   winograd, onnx), as in ``bench_model.py``; logit difference and argmax agreement with eager.
4. ``eval``: the official Cityscapes 6-scale + flip protocol on W18-Small-v2+OCR at 256x512
   (``bench_eval.py``'s case, but with OCR's official 512 / 256 channels, where ``bench_eval.py``
   uses 256 / 128 to save time; 256 outputs are fewer than the rule takes): the literal official loop (``hrseg.evaluation.reference``)
   against ``multi_scale_predict`` on ``folded_cl`` and on ``winograd`` (the ``auto`` default
   where NNPACK runs).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from bench_eval import CITYSCAPES_MS, calibrated_ocr_model
from bench_model import ForwardCase, MatmulProbe, machine, measure_forward, median_interleaved
from torch import nn

from hrseg.evaluation.inference_paths import onnx_path_available
from hrseg.models.winograd import WinogradConv2d, WinogradRule, winograd_available
from hrseg.models.winograd_tiles import TiledWinogradConv2d, TileRule

log = logging.getLogger("bench_winograd")

#: (in, out, height, width): OCR's conv3x3_ocr for W48 (720) and W18-Small-v2 (270) at the
#: 1/4-resolution sizes that 6-scale Cityscapes evaluation and 512x1024 / 1024x2048 inputs give,
#: and the backbone's branch convolutions around the thresholds.
LAYERS = (
    (720, 512, 256, 512), (720, 512, 128, 256), (720, 512, 64, 128), (720, 512, 32, 64), (720, 512, 16, 32),
    (270, 512, 128, 256), (270, 512, 64, 128), (270, 512, 32, 64), (270, 512, 16, 32),
    (384, 384, 64, 128), (384, 384, 32, 64), (256, 256, 64, 128), (256, 256, 32, 64),
    (192, 192, 64, 128), (128, 128, 128, 256), (48, 48, 128, 256),
)  # fmt: skip
QUICK_LAYERS = ((270, 512, 64, 128), (270, 512, 16, 32), (48, 48, 64, 128))
#: (channels, height, width): HRNet's branch convolutions (W48: 48-384 channels, W18: 18-144)
#: at the sizes 512x1024 and 1024x2048 inputs give them, and around ``TileRule``'s thresholds.
TILE_LAYERS = (
    (48, 128, 256), (64, 64, 128), (72, 64, 128), (96, 128, 256), (96, 64, 128), (96, 32, 64), (96, 16, 32),
    (128, 32, 64), (144, 32, 64), (144, 16, 32), (144, 8, 16), (192, 64, 128), (192, 32, 64), (192, 16, 32),
    (192, 8, 16), (384, 32, 64), (384, 16, 32), (384, 8, 16), (384, 4, 8),
)  # fmt: skip
QUICK_TILE_LAYERS = ((192, 16, 32), (48, 32, 64))


def machine_facts(probe: MatmulProbe) -> dict:
    facts = machine()
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as handle:
            flags = set(next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), []))
    except OSError:
        pass
    facts.update(
        vector_units=" ".join(f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags) or "unknown",
        openmp=_openmp_library(),
        omp_env={k: v for k, v in os.environ.items() if k.startswith(("OMP_", "KMP_", "GOMP_"))},
        nnpack=winograd_available(),
        onnxruntime=_onnxruntime_version(),
        matmul_gflops_at_start=probe.gflops(),
    )
    return facts


def _openmp_library() -> str:
    """The OpenMP runtime loaded into this process (libgomp, libiomp5 or libomp)."""
    try:
        with open("/proc/self/maps") as handle:
            names = {Path(line.split()[-1]).name for line in handle if "omp" in line.rsplit("/", 1)[-1]}
    except OSError:
        return "unknown"
    return ", ".join(sorted(names)) or "none loaded"


def _onnxruntime_version() -> str | None:
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime.__version__


def _scaled_error(got: torch.Tensor, truth: torch.Tensor) -> float:
    return float((got.double() - truth).abs().max() / truth.abs().max())


def _against_direct(cin: int, cout: int, height: int, width: int, wrap, rounds: int, probe: MatmulProbe):
    """One He-initialised 3x3 layer and a channels_last input: oneDNN's direct kernel and
    ``wrap(conv)`` timed interleaved, with their errors against float64. Returns the layer, the
    input, ``{"direct", "other"}`` errors and median seconds."""
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, cout, 3, padding=1).eval()
    nn.init.kaiming_normal_(conv.weight)
    x = torch.randn(1, cin, height, width).contiguous(memory_format=torch.channels_last)
    direct = conv.to(memory_format=torch.channels_last)
    other = wrap(conv)
    with torch.no_grad():
        truth = F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=1)
        errors = {"direct": _scaled_error(direct(x), truth), "other": _scaled_error(other(x), truth)}
        seconds = median_interleaved({"direct": lambda: direct(x), "other": lambda: other(x)}, rounds, between=probe.time_once)
    return conv, x, errors, seconds


def measure_layers(shapes, rounds: int, probe: MatmulProbe) -> list[dict]:
    rows = []
    every_input = WinogradRule(min_out_channels=0, min_channel_product=0, min_pixels=0)
    default = WinogradRule()
    for cin, cout, height, width in shapes:
        conv, x, errors, seconds = _against_direct(cin, cout, height, width, lambda c: WinogradConv2d(c, every_input), rounds, probe)
        rows.append(
            {
                "benchmark": "layer", "in_channels": cin, "out_channels": cout, "input": f"{height}x{width}",
                "pixels": height * width, "channel_product": cin * cout,
                "direct_ms": 1000 * seconds["direct"], "winograd_ms": 1000 * seconds["other"],
                "speedup": seconds["direct"] / seconds["other"],
                "taken_by_default_rule": default.takes_layer(conv) and default.takes_input(x),
                "direct_error": errors["direct"], "winograd_error": errors["other"],
            }
        )  # fmt: skip
        r = rows[-1]
        log.info("layer %d->%d %s: direct %.1f ms, winograd %.1f ms (x%.2f), errors %.1e / %.1e", cin, cout, r["input"], r["direct_ms"], r["winograd_ms"], r["speedup"], r["direct_error"], r["winograd_error"])
    return rows


def measure_tiles(shapes, rounds: int, probe: MatmulProbe) -> list[dict]:
    """Branch-sized 3x3 layers (channels -> channels): oneDNN's direct kernel against
    ``TiledWinogradConv2d`` (F(4x4, 3x3) by matrix products), interleaved."""
    rows = []
    every_input, default = TileRule(min_channels=1, min_channel_pixels=1), TileRule()
    for channels, height, width in shapes:
        conv, x, errors, seconds = _against_direct(channels, channels, height, width, lambda c: TiledWinogradConv2d(c, every_input), rounds, probe)
        rows.append(
            {
                "benchmark": "tiles", "channels": channels, "input": f"{height}x{width}", "pixels": height * width,
                "direct_ms": 1000 * seconds["direct"], "tiled_ms": 1000 * seconds["other"],
                "speedup": seconds["direct"] / seconds["other"],
                "taken_by_default_rule": default.takes_layer(conv) and default.takes_input(x),
                "direct_error": errors["direct"], "tiled_error": errors["other"],
            }
        )  # fmt: skip
        r = rows[-1]
        log.info("tiles %d %s: direct %.2f ms, tiled %.2f ms (x%.2f), errors %.1e / %.1e", channels, r["input"], r["direct_ms"], r["tiled_ms"], r["speedup"], r["direct_error"], r["tiled_error"])
    return rows


def measure_models(quick: bool, probe: MatmulProbe) -> list[dict]:
    """``bench_model.measure_forward`` per model (which also records each path's logit
    difference and argmax agreement with eager)."""
    onnx = ("onnx",) if onnx_path_available() else ()
    size = (128, 256) if quick else (512, 1024)
    models = (("hrnetv2_w18_small_v2", "ocr"),) if quick else (("hrnetv2_w48", "ocr"), ("hrnetv2_w18_small_v2", "ocr"))
    rows = []
    for backbone, head in models:
        rows += measure_forward(ForwardCase(backbone, head, *size, ("eager", "folded_cl", "winograd", *onnx), 1 if quick else 3), probe)
    return rows


def measure_eval(quick: bool, probe: MatmulProbe) -> list[dict]:
    from hrseg.evaluation.inference import multi_scale_predict
    from hrseg.evaluation.inference_paths import prepare_inference_model
    from hrseg.evaluation.reference import reference_predict

    backbone, height, width, rounds = ("hrnetv2_w18_small_v1", 128, 256, 1) if quick else ("hrnetv2_w18_small_v2", 256, 512, 3)
    model = calibrated_ocr_model(backbone, height, width)  # the official OCR widths: 512 / 256
    torch.manual_seed(1)
    image = torch.randn(1, 3, height, width)
    kw = dict(scales=CITYSCAPES_MS, flip=True, crop_size=(height, width), base_size=width, mode="cityscapes", num_classes=19)
    prepared = {path: prepare_inference_model(model, path) for path in ("folded_cl", "winograd")}
    runners = {
        "plain_loop": lambda: reference_predict(model, image, align_corners=True, **kw),
        "folded_cl": lambda: multi_scale_predict(prepared["folded_cl"], image, max_batch=1, **kw),
        "winograd": lambda: multi_scale_predict(prepared["winograd"], image, max_batch=1, **kw),
    }
    scores = {name: fn() for name, fn in runners.items()}
    seconds = median_interleaved(runners, rounds, between=probe.time_once)
    reference = scores["plain_loop"]
    rows = []
    for name in runners:
        rows.append(
            {
                "benchmark": "eval", "method": name, "model": f"{backbone}_ocr", "image": f"{height}x{width}",
                "scales": list(CITYSCAPES_MS), "flip": True, "seconds": seconds[name],
                "speedup_vs_plain_loop": seconds["plain_loop"] / seconds[name],
                "same_prediction": float((scores[name].argmax(1) == reference.argmax(1)).float().mean()),
                "max_rel_diff": float(((scores[name] - reference).abs() / reference.abs().clamp(min=1e-30)).max()),
            }
        )  # fmt: skip
        log.info("eval %s: %.2f s (x%.2f vs the official loop)", name, seconds[name], rows[-1]["speedup_vs_plain_loop"])
    return rows


PARTS = ("layers", "tiles", "forward", "eval")


def run(quick: bool = False, parts: tuple[str, ...] = PARTS) -> list[dict]:
    probe = MatmulProbe(2048)
    for _ in range(5):
        probe.time_once()
    rows = [machine_facts(probe)]
    log.info("machine: %s", rows[0])
    if "layers" in parts:
        rows += measure_layers(QUICK_LAYERS if quick else LAYERS, 1 if quick else 3, probe)
    if "tiles" in parts:
        rows += measure_tiles(QUICK_TILE_LAYERS if quick else TILE_LAYERS, 1 if quick else 5, probe)
    if "forward" in parts:
        rows += measure_models(quick, probe)
    if "eval" in parts:
        rows += measure_eval(quick, probe)
    rows.append(probe.row())
    rows[0]["load_average_1min_at_end"] = os.getloadavg()[0]
    return rows


#: Each table of the report: (row kind, title, header cells, how one row reads).
TABLES = (
    ("layer", "**Layers** (one 3x3 convolution, batch 1; error = max |y - y64| / max |y64|):",
     ("in -> out", "input", "direct ms", "Winograd ms", "speed-up", "default rule takes it", "direct error", "Winograd error"),
     lambda r: (f"{r['in_channels']} -> {r['out_channels']}", r["input"], f"{r['direct_ms']:.1f}", f"{r['winograd_ms']:.1f}",
                f"{r['speedup']:.2f}x", "yes" if r["taken_by_default_rule"] else "no", f"{r['direct_error']:.1e}", f"{r['winograd_error']:.1e}")),
    ("tiles", "**Branch layers, F(4x4, 3x3) by matrix products** (channels -> channels, batch 1, median of interleaved runs):",
     ("channels", "input", "direct ms", "tiled ms", "speed-up", "default rule takes it", "direct error", "tiled error"),
     lambda r: (str(r["channels"]), r["input"], f"{r['direct_ms']:.2f}", f"{r['tiled_ms']:.2f}", f"{r['speedup']:.2f}x",
                "yes" if r["taken_by_default_rule"] else "no", f"{r['direct_error']:.1e}", f"{r['tiled_error']:.1e}")),
    ("forward", "**Whole models** (batch 1, median of interleaved rounds; scaled diff = max |out - eager| / max |eager|):",
     ("model", "input", "path", "s/image", "speed-up vs eager", "GFLOP/s", "of matmul", "scaled diff", "argmax agreement", "prepare s"),
     lambda r: (r["model"], r["input"], r["path"], f"{r['seconds']:.3f}", f"{r['speedup_vs_eager']:.2f}x", f"{r['gflops_per_s']:.1f}",
                f"{100 * r['fraction_of_matmul']:.0f}%", f"{r['scaled_diff_vs_eager']:.1e}", f"{r['argmax_agreement']:.6f}", f"{r['prepare_seconds']:.2f}")),
    ("eval", "**6-scale + flip evaluation** (Cityscapes rule, one image, median of interleaved rounds):",
     ("model", "image", "method", "s/image", "speed-up vs the official loop", "same argmax", "max rel. diff"),
     lambda r: (r["model"], r["image"], r["method"], f"{r['seconds']:.2f}", f"{r['speedup_vs_plain_loop']:.2f}x",
                f"{r['same_prediction']:.6f}", f"{r['max_rel_diff']:.1e}")),
)  # fmt: skip


def format_markdown(rows: list[dict], command: str) -> str:
    facts = next(r for r in rows if r["benchmark"] == "machine")
    matmul = next(r for r in rows if r["benchmark"] == "matmul")
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with `{command}`.",
        "",
        f"Machine: {facts['cpu']} ({facts['vector_units']}), {facts['cores']} cores, {facts['threads']} torch threads, "
        f"torch {facts['torch']}, OpenMP {facts['openmp']}, NNPACK {'runs' if facts['nnpack'] else 'does not run'}, onnxruntime {facts['onnxruntime']}, "
        f"OpenMP environment {facts['omp_env'] or 'unset'}; fp32 matmul 2048^3 {matmul['gflops_per_s']:.1f} GFLOP/s "
        f"(median of {matmul['repeats']} probes over the run); 1-min load average {facts['load_average_1min_at_start']:.1f} "
        f"at start, {facts['load_average_1min_at_end']:.1f} at end.",
    ]
    for kind, title, header, cells in TABLES:
        if not any(r["benchmark"] == kind for r in rows):
            continue
        lines += ["", title, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cells(r)) + " |" for r in rows if r["benchmark"] == kind]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small layers, one small model, one round (a smoke run)")
    parser.add_argument("--json", type=Path, default=None, help="write the rows as JSON")
    parser.add_argument("--md", type=Path, default=None, help="write the tables as Markdown")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated parts to run (default all: {','.join(PARTS)})")
    args = parser.parse_args(argv)
    parts = tuple(p for p in args.parts.split(",") if p)
    if unknown := set(parts) - set(PARTS):
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}; expected some of {', '.join(PARTS)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    command = ".venv/bin/python benchmarks/bench_winograd.py " + " ".join(argv if argv is not None else sys.argv[1:])
    rows = run(args.quick, parts)
    text = format_markdown(rows, command.strip())
    print(text)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    if args.md:
        args.md.write_text("# Winograd convolutions on the CPU (issue 16)\n\n" + text)


if __name__ == "__main__":
    main()
