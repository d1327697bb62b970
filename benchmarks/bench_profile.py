"""Where one forward pass spends its time: a profile of one inference path, by kind of work.

Run from the repository root::

    .venv/bin/python benchmarks/bench_profile.py                      # W48+OCR 512x1024 on auto; about 2 minutes
    .venv/bin/python benchmarks/bench_profile.py --path eager --quick # a small model, seconds
    .venv/bin/python benchmarks/bench_profile.py --fused-blocks --json benchmarks/results/profile.json --md benchmarks/results/profile.md

Sets the host memory policy ``keep`` first (hrseg's default), builds the model with realistic
BatchNorm statistics (``bench_model.realistic_model``), prepares the path, runs two warm-up
forwards and times a third, with forward hooks on every convolution module: their wall time
and multiply-adds (from the output shape), by kind (3x3 stride-1 convolutions by channels,
HRNet's branches; NNPACK's Winograd layer; 1x1 convolutions; other convolutions). The rest of
the forward is everything else (element-wise work, resizing, copies, OCR's matrix products).
Beside the rates the script prints the CPU's nominal FMA peak (threads x FMA lanes x 2 units x
2 flop x the clock ``/proc/cpuinfo`` reports; turbo clocks can exceed it): convolutions near
that peak can only get faster by doing fewer multiplications. Paths that run outside PyTorch
(``onnx``) cannot be profiled this way. ``--fused-blocks`` also times one BasicBlock at W48's
branch shapes as PyTorch modules and as oneDNN's fused operators (conv+ReLU, conv+add+ReLU),
the fusion inductor's CPU freezing does.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from report import write_report  # noqa: E402


def nominal_fma_peak_gflops(cores: int) -> tuple[float | None, str]:
    """cores x (2 FMA units x lanes x 2 flop) x clock, from /proc/cpuinfo; ``None`` where unknown."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None, "no /proc/cpuinfo"
    mhz = next((float(line.split(":")[1]) for line in text.splitlines() if line.startswith("cpu MHz")), None)
    flags = next((line.split(":")[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    lanes = 16 if "avx512f" in flags else 8 if "fma" in flags else None
    if mhz is None or lanes is None:
        return None, "clock or FMA width unknown"
    per_cycle = 2 * lanes * 2
    return cores * per_cycle * mhz / 1000, f"{cores} cores x {per_cycle} flop/cycle x {mhz / 1000:.2f} GHz"


def conv_bucket(conv, wrapper: str | None = None) -> str:
    """The kind of work a convolution module does (``wrapper``: "nnpack" or "tiles" for a
    layer that a Winograd module wraps)."""
    if wrapper == "nnpack":
        return "NNPACK Winograd (OCR's 3x3 layer)"
    if conv.kernel_size == (1, 1):
        return "1x1 convolutions"
    if conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.in_channels == conv.out_channels:
        how = ", F(4x4, 3x3) tiles" if wrapper == "tiles" else ""
        return f"3x3 stride-1 convolutions, {conv.in_channels} channels (branches{how})"
    return "other convolutions (stem, transitions, fusion)"


class ConvTimer:
    """Wall time and multiply-adds of every convolution module's calls (forward hooks; a
    ``WinogradConv2d`` or ``TiledWinogradConv2d`` is timed as a whole and its wrapped
    fall-back convolution not again)."""

    def __init__(self, model) -> None:
        from torch import nn

        from hrseg.models.winograd import WinogradConv2d
        from hrseg.models.winograd_tiles import TiledWinogradConv2d

        self.seconds: dict[str, float] = defaultdict(float)
        self.flop: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.handles = []
        wrappers = {WinogradConv2d: "nnpack", TiledWinogradConv2d: "tiles"}
        inner = {id(m.conv) for m in model.modules() if type(m) in wrappers}
        for module in model.modules():
            if type(module) in wrappers:
                self._watch(module, conv_bucket(module.conv, wrappers[type(module)]), module.conv)
            elif isinstance(module, nn.Conv2d) and id(module) not in inner:
                self._watch(module, conv_bucket(module), module)

    def _watch(self, module, key: str, conv) -> None:
        started: list[float] = []

        def before(_module, _args) -> None:
            started.append(time.perf_counter())

        def after(_module, _args, output) -> None:
            self.seconds[key] += time.perf_counter() - started.pop()
            self.calls[key] += 1
            n, cout, h, w = output.shape
            self.flop[key] += 2.0 * n * h * w * cout * (conv.in_channels // conv.groups) * conv.kernel_size[0] * conv.kernel_size[1]

        self.handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]


def profile(backbone: str, head: str, size: tuple[int, int], path: str, threads: int) -> dict:
    from hrseg.runtime.host_memory import set_host_memory

    set_host_memory("keep")
    import torch
    from bench_model import realistic_model

    from hrseg.evaluation.inference_paths import prepare_inference_model

    torch.set_num_threads(threads)
    model = realistic_model(backbone, head, calibration_size=(64, 128))
    prepared = prepare_inference_model(model, path)
    if prepared.module is None:
        raise SystemExit(f"path {prepared.path!r} runs outside PyTorch; nothing to profile by module")
    image = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    timer = ConvTimer(prepared.module)
    with torch.inference_mode():
        for _ in range(2):
            prepared(image)
        for table in (timer.seconds, timer.flop, timer.calls):
            table.clear()
        start = time.perf_counter()
        prepared(image)
        total = time.perf_counter() - start
    peak, peak_how = nominal_fma_peak_gflops(threads)
    rows = [
        {"bucket": key, "seconds": s, "share": s / total, "calls": timer.calls[key], "gflop_per_s": timer.flop[key] / s / 1e9}
        for key, s in sorted(timer.seconds.items(), key=lambda item: -item[1])
    ]
    rest = total - sum(timer.seconds.values())
    rows.append({"bucket": "everything else (element-wise, resizing, copies, matrix products)", "seconds": rest, "share": rest / total, "calls": None, "gflop_per_s": None})
    return {
        "model": f"{backbone}_{head}", "size": list(size), "path": prepared.path, "threads": threads, "torch": torch.__version__,
        "forward_seconds": total, "nominal_fma_peak_gflops": peak, "peak_from": peak_how,
        "load_average_1min": os.getloadavg()[0], "rows": rows,
    }  # fmt: skip


#: HRNet-W48's branch shapes at a 512x1024 input: (channels, height, width).
W48_BRANCHES = ((48, 128, 256), (96, 64, 128), (192, 32, 64), (384, 16, 32))


def _fused_block_row(channels: int, height: int, width: int, repeats: int) -> dict:
    import torch
    from bench_model import median_interleaved
    from torch import nn

    pointwise = torch.ops.mkldnn._convolution_pointwise
    torch.manual_seed(0)
    x = torch.randn(1, channels, height, width).contiguous(memory_format=torch.channels_last)
    conv1, conv2 = (nn.Conv2d(channels, channels, 3, padding=1).to(memory_format=torch.channels_last).eval() for _ in range(2))
    w1, w2 = (c.weight.detach() for c in (conv1, conv2))
    b1, b2 = (c.bias.detach() for c in (conv1, conv2))
    same = ([1, 1], [1, 1], [1, 1], 1)

    def modules() -> torch.Tensor:
        y = conv2(conv1(x).relu_())
        y += x
        return y.relu_()

    def fused() -> torch.Tensor:
        y = pointwise(x, w1, b1, *same, "relu", [None], "")
        return pointwise.binary(y, x, w2, b2, *same, "add", 1.0, "relu", [None], "")

    with torch.inference_mode():
        seconds = median_interleaved({"modules": modules, "fused": fused}, repeats, warmup=2)
        modules_s, fused_s = seconds["modules"], seconds["fused"]
        identical = bool(torch.equal(modules(), fused()))
    return {"channels": channels, "size": [height, width], "modules_ms": modules_s * 1e3, "fused_ms": fused_s * 1e3, "speedup": modules_s / fused_s, "identical": identical}


def measure_fused_blocks(threads: int, repeats: int = 7) -> list[dict]:
    """A folded BasicBlock (3x3 conv, ReLU, 3x3 conv, + input, ReLU) at W48's branch shapes,
    channels_last: as PyTorch modules, and as oneDNN's fused operators
    (``torch.ops.mkldnn._convolution_pointwise``: conv+ReLU, then conv+add+ReLU in one call,
    what inductor's CPU freezing emits). Median ms of ``repeats`` interleaved runs after two warm-ups, and
    whether the outputs are the same bits."""
    from hrseg.runtime.host_memory import set_host_memory

    set_host_memory("keep")
    import torch

    torch.set_num_threads(threads)
    return [_fused_block_row(channels, height, width, repeats) for channels, height, width in W48_BRANCHES]


def format_markdown(result: dict, command: str) -> str:
    peak = result["nominal_fma_peak_gflops"]
    lines = [
        f"# Profile of one forward: {result['model']} {result['size'][0]}x{result['size'][1]} on `{result['path']}`",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {result['threads']} threads, torch {result['torch']}, "
        f"1-min load average {result['load_average_1min']:.1f}, host memory `keep`, with",
        "",
        f"    {command}",
        "",
        f"Timed forward {result['forward_seconds']:.2f} s (the third, after two warm-ups). "
        + (f"Nominal FMA peak {peak:.0f} GFLOP/s ({result['peak_from']}); turbo clocks can exceed it." if peak else f"FMA peak unknown ({result['peak_from']})."),
        "Rates count a direct convolution's multiply-adds (2 flop each) from the output shape; for NNPACK's Winograd layer that is about 5x what it computes, for the F(4x4, 3x3) tiles 4x.",
        "",
        "| work | seconds | share | calls | GFLOP/s | of nominal peak |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        rate = row["gflop_per_s"]
        of_peak = f"{rate / peak:.0%}" if rate and peak else ""
        calls = "" if row["calls"] is None else row["calls"]
        lines.append(f"| {row['bucket']} | {row['seconds']:.3f} | {row['share']:.0%} | {calls} | {f'{rate:.0f}' if rate else ''} | {of_peak} |")
    if result.get("fused_blocks"):
        lines += [
            "",
            "**One BasicBlock, modules against oneDNN's fused operators** (conv+ReLU, conv+add+ReLU; channels_last, median of 7 interleaved runs):",
            "",
            "| channels | size | modules ms | fused ms | speed-up | same bits |",
            "|---:|---|---:|---:|---:|---|",
        ]
        for row in result["fused_blocks"]:
            lines.append(f"| {row['channels']} | {row['size'][0]}x{row['size'][1]} | {row['modules_ms']:.1f} | {row['fused_ms']:.1f} | {row['speedup']:.2f}x | {row['identical']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", default="auto", help="inference path to profile (default auto)")
    parser.add_argument("--quick", action="store_true", help="W18-Small-v1+OCR at 128x256: a smoke run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fused-blocks", action="store_true", help="also time one BasicBlock at W48's branch shapes as modules and as oneDNN's fused operators")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--md", type=Path)
    args = parser.parse_args(argv)
    backbone, size = ("hrnetv2_w18_small_v1", (128, 256)) if args.quick else ("hrnetv2_w48", (512, 1024))
    result = profile(backbone, "ocr", size, args.path, args.threads)
    if args.fused_blocks:
        result["fused_blocks"] = measure_fused_blocks(args.threads)
    write_report('bench_profile.py', argv, result, format_markdown, args.json, args.md)


if __name__ == "__main__":
    main()
