"""Peak memory of the official Cityscapes 6-scale + flip evaluation against one forward pass.

Run from the repository root::

    .venv/bin/python benchmarks/bench_memory.py                                   # W18-Small-v2+OCR, 256x512
    .venv/bin/python benchmarks/bench_memory.py --backbone hrnetv2_w48 --size 1024x2048 --paths eager
    .venv/bin/python benchmarks/bench_memory.py --out benchmarks/results/memory.json

For every inference path, in a fresh spawned process (so that nothing else is in its memory):

1. build the model (He-normal weights, BatchNorm statistics from a random batch), prepare
   the path and run one warm-up forward pass; ``ready_mib`` = the resident size then (model,
   runtime, prepared copy, one-time allocations);
2. reset the high-water mark (``/proc/self/clear_refs``), run **one forward pass** of a
   ``1 x 3 x H x W`` image; ``single_peak_mib`` = the peak resident size (``VmHWM``);
3. reset again, run ``multi_scale_predict`` with scales 0.5 ... 1.75 + flip on the same image
   (Cityscapes rule: whole image at scales <= 1, crop-sized windows shifted inside the image
   above 1, crop = the image size), ``max_batch=1`` (the default); ``tta_peak_mib``.

``ratio`` = ``tta_peak_mib / single_peak_mib`` (the goal: <= 1.5); ``extra_ratio`` is the same
for the memory *added* above ``ready_mib``, which does not depend on the model's weights or the
runtime and so carries over between image sizes.

Allocator: glibc serves allocations below its mmap threshold from the heap, and that
threshold grows up to 32 MiB after the first large free, so at small image sizes freed maps
stay resident (fragmentation) and the peak resident size overstates the memory in use. At
1024x2048 every score map (19 x 1024 x 2048 floats, 152 MiB) is above any threshold and is
returned to the system when freed. To measure small sizes the way large ones behave, the
measuring processes run with ``MALLOC_MMAP_THRESHOLD_=1048576`` (``--mmap-threshold``). CPU only (resident memory); the GPU check
(benchmarks/gpu_check.py) measures ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import multiprocessing
import os
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_eval import calibrated_ocr_model  # noqa: E402
from bench_model import _reset_peak_rss, current_rss_mib, peak_rss_mib  # noqa: E402

log = logging.getLogger("bench_memory")

CITYSCAPES_MS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def _model(backbone: str, height: int, width: int):
    """bench_eval's calibrated model, calibrated at most at 256x512 (logits of standard
    deviation 1, so exp() stays finite)."""
    return calibrated_ocr_model(backbone, min(height, 256), min(width, 512))


def measure(backbone: str, height: int, width: int, path: str, threads: int) -> dict:
    from hrseg.evaluation.inference import multi_scale_predict
    from hrseg.evaluation.inference_paths import prepare_inference_model

    torch.set_num_threads(threads)
    model = _model(backbone, height, width)
    fast = prepare_inference_model(model, path, sample_size=(min(height, 256), min(width, 512)))
    del model
    gc.collect()
    image = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(1))
    fast(image)  # warm-up: one-time allocations (weight packing, thread pools) count as "ready"
    gc.collect()
    ready = current_rss_mib()

    _reset_peak_rss()
    start = time.perf_counter()
    out = fast(image)
    single_s = time.perf_counter() - start
    single_peak = peak_rss_mib()
    del out
    gc.collect()

    _reset_peak_rss()
    start = time.perf_counter()
    scores = multi_scale_predict(fast, image, scales=CITYSCAPES_MS, flip=True, crop_size=(height, width), base_size=width, mode="cityscapes")
    tta_s = time.perf_counter() - start
    tta_peak = peak_rss_mib()
    return {
        "model": f"{backbone}_ocr",
        "image": f"{height}x{width}",
        "path": fast.path,
        "threads": threads,
        "malloc_mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_"),
        "ready_mib": round(ready, 1),
        "single_peak_mib": round(single_peak, 1),
        "tta_peak_mib": round(tta_peak, 1),
        "ratio": round(tta_peak / single_peak, 3),
        "extra_ratio": round((tta_peak - ready) / max(single_peak - ready, 1e-9), 3),
        "single_s": round(single_s, 2),
        "tta_s": round(tta_s, 2),
        "non_finite_scores": int((~torch.isfinite(scores)).sum()),  # exp() overflow of the random model, if any
    }


def _spawned(args: tuple) -> dict:
    return measure(*args)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="hrnetv2_w18_small_v2")
    parser.add_argument("--size", default="256x512", help="HxW of the image (= the crop)")
    parser.add_argument("--paths", default="eager,folded_cl,onnx", help="comma-separated hrseg.evaluation.inference_paths paths")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=None, help="append the rows to this JSON list")
    parser.add_argument(
        "--mmap-threshold", type=int, default=1 << 20, help="glibc MALLOC_MMAP_THRESHOLD_ for the measuring processes (0: leave glibc's default)"
    )
    args = parser.parse_args(argv)
    if args.mmap_threshold:  # read by glibc when the spawned process starts
        os.environ["MALLOC_MMAP_THRESHOLD_"] = str(args.mmap_threshold)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    height, width = (int(v) for v in args.size.lower().split("x"))
    ctx = multiprocessing.get_context("spawn")
    rows = []
    for path in args.paths.split(","):
        with ctx.Pool(1) as pool:
            row = pool.apply(_spawned, ((args.backbone, height, width, path, args.threads),))
        log.info("%s", row)
        rows.append(row)
    if args.out is not None:
        from hrseg import io

        previous = json.loads(args.out.read_text()) if args.out.exists() else []
        io.write_json(args.out, previous + rows)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
