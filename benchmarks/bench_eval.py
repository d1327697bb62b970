"""Evaluation benchmark: our test-time inference against a plain official-style loop.

Run from the repository root::

    .venv/bin/python benchmarks/bench_eval.py            # full: about 15 minutes on 2 CPU cores
    .venv/bin/python benchmarks/bench_eval.py --quick    # smoke run: 1-2 minutes
    .venv/bin/python benchmarks/bench_eval.py --out benchmarks/results/bench_eval.json

Cases (Cityscapes window rule, 19 classes, one image):

- ``single_scale``: scale 1.0, no flip;
- ``ms6_flip``: the official Cityscapes multi-scale protocol, scales 0.5 ... 1.75 + flip
  (scales above 1 run crop-sized windows shifted inside the image).

Methods, all on the same model and the same image:

- ``plain_loop``: ``hrseg.evaluation.reference.reference_predict``, the official loop written
  out (one input per forward pass, the mirrored input in a second pass, ``torch.no_grad``);
- ``hrseg_eager``: ``multi_scale_predict`` on the eager fp32 model, one input per forward pass
  (``hrseg evaluate --path eager``): the same forward passes as ``plain_loop``, bit-identical
  scores, under ``torch.inference_mode``;
- ``hrseg_batch2``: the same with the mirrored copy in the original's forward pass
  (``--path eager --batch 2``; for GPUs: on CPU it is slower);
- ``hrseg_auto``: ``hrseg.evaluation.inference_paths`` path ``auto``, one input per pass; for
  this model ``folded_cl`` (BatchNorm folded into the convolutions + channels_last): its OCR
  layer has 256 outputs to save time, fewer than the Winograd rule takes (``bench_winograd.py``
  measures the official 512): the ``hrseg evaluate`` / ``hrseg predict`` default;
- ``hrseg_onnx``: path ``onnx`` (ONNX Runtime), when onnxruntime is installed.

Timing: all methods of a case run in one process, *interleaved* (plain, eager, batch2, auto,
onnx, plain, ...), so load from other processes hits them alike; ``images_per_s`` is 1 / the median
over the timed repeats after one warm-up run of each. Memory: each (case, method) then runs
once more in a fresh spawned process, so that ``peak_rss_mb`` (that process's
VmHWM high-water mark, model and Python/torch runtime
included) and ``extra_rss_mb`` (the peak minus the resident size after the model was built,
i.e. what inference added) belong to that method alone. On a shared machine pass
``--threads 1``: OpenMP threads spin-wait when the cores are oversubscribed, which makes
2-thread timings meaningless there. ``same_prediction`` is the
fraction of pixels whose argmax equals ``plain_loop``'s; ``max_rel_diff`` the largest relative
difference of the summed exp-logit scores (``non_finite_scores`` counts overflowed entries,
expected 0).

Models are randomly initialised with He-normal convolutions, BatchNorm statistics from a
random image of the case's size and the classifier scaled to logits of standard deviation 1,
so activations have realistic magnitudes (official-init weights give denormal floats, which
are far slower on CPU) and ``exp`` does not overflow.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from bench_model import current_rss_mib, peak_rss_mib

from hrseg.evaluation.inference_paths import onnx_path_available

log = logging.getLogger("bench_eval")

CITYSCAPES_MS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
METHODS = ("plain_loop", "hrseg_eager", "hrseg_batch2", "hrseg_auto") + (("hrseg_onnx",) if onnx_path_available() else ())


@dataclass(frozen=True)
class Case:
    name: str
    backbone: str
    height: int
    width: int
    scales: tuple[float, ...]
    flip: bool
    repeats: int

    @property
    def crop(self) -> tuple[int, int]:
        return (self.height, self.width)  # the network input = the image at scale 1, as for Cityscapes val


def cases(quick: bool) -> list[Case]:
    if quick:
        return [
            Case("single_scale", "hrnetv2_w18_small_v1", 128, 256, (1.0,), False, 2),
            Case("ms6_flip", "hrnetv2_w18_small_v1", 128, 256, CITYSCAPES_MS, True, 1),
        ]
    return [
        Case("single_scale", "hrnetv2_w18_small_v2", 256, 512, (1.0,), False, 5),
        Case("ms6_flip", "hrnetv2_w18_small_v2", 256, 512, CITYSCAPES_MS, True, 3),
    ]


def calibrated_ocr_model(backbone: str, height: int, width: int, **model_kwargs):
    """An OCR model with He-normal convolutions, BatchNorm statistics from one random
    ``height`` x ``width`` batch, and the classifier scaled so that the logits have standard
    deviation 1 at that size (else the test-time exp() overflows); in eval mode."""
    from torch import nn

    from hrseg.models import build_model

    torch.manual_seed(0)
    model = build_model(backbone, "ocr", 19, **model_kwargs)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = 1.0
        model.train()
        calibration = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(2))
        model(calibration)
        model.eval()
        spread = float(model(calibration)["out"].std())
        model.cls_head.weight.div_(spread)
        model.cls_head.bias.div_(spread)
    return model


def _model(case: Case):
    return calibrated_ocr_model(case.backbone, case.height, case.width, ocr_mid_channels=256, ocr_key_channels=128)


def _runners(case: Case) -> dict:
    """``method -> callable`` returning the summed scores for the case's image."""
    from hrseg.evaluation.inference import multi_scale_predict
    from hrseg.evaluation.inference_paths import prepare_inference_model
    from hrseg.evaluation.reference import reference_predict

    model = _model(case)
    torch.manual_seed(1)
    image = torch.randn(1, 3, case.height, case.width)
    kw = dict(scales=case.scales, flip=case.flip, crop_size=case.crop, base_size=case.width, mode="cityscapes")
    fast = prepare_inference_model(model, "auto")
    runners = {
        "plain_loop": lambda: reference_predict(model, image, num_classes=19, align_corners=True, **kw),
        "hrseg_eager": lambda: multi_scale_predict(model, image, max_batch=1, num_classes=19, **kw),
        "hrseg_batch2": lambda: multi_scale_predict(model, image, max_batch=2, num_classes=19, **kw),
        "hrseg_auto": lambda: multi_scale_predict(fast, image, max_batch=1, num_classes=19, **kw),
    }
    if "hrseg_onnx" in METHODS:
        onnx = prepare_inference_model(model, "onnx", sample_size=case.crop)
        runners["hrseg_onnx"] = lambda: multi_scale_predict(onnx, image, max_batch=1, num_classes=19, **kw)
    return runners


def scaling(quick: bool, threads: int) -> list[dict]:
    """How the time of one image grows with its size (single scale) and with the number of
    scales (+ flip), along the default ``auto`` path; Cityscapes rule, crop = image size."""
    from hrseg.evaluation.inference import multi_scale_predict
    from hrseg.evaluation.inference_paths import prepare_inference_model

    torch.set_num_threads(threads)
    sizes = [(64, 128), (128, 256)] if quick else [(128, 256), (256, 512), (512, 1024)]
    counts = [1, 2] if quick else [1, 2, 4, 6]
    backbone = "hrnetv2_w18_small_v1" if quick else "hrnetv2_w18_small_v2"
    rows = []
    scale_sets = {1: (1.0,), 2: (1.0, 1.25), 4: (0.5, 0.75, 1.0, 1.25), 6: CITYSCAPES_MS}
    plan = [(size, (1.0,), False) for size in sizes] + [(sizes[-2] if len(sizes) > 2 else sizes[-1], scale_sets[n], True) for n in counts]
    for (height, width), scales, flip in plan:
        case = Case("scaling", backbone, height, width, tuple(scales), flip, 1 if quick else 3)
        fast = prepare_inference_model(_model(case), "auto")
        image = torch.randn(1, 3, height, width)
        kw = dict(scales=case.scales, flip=flip, crop_size=case.crop, base_size=width, mode="cityscapes", num_classes=19, align_corners=True)
        multi_scale_predict(fast, image, **kw)  # warm-up
        times = []
        for _ in range(case.repeats):
            start = time.perf_counter()
            multi_scale_predict(fast, image, **kw)
            times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        rows.append({"case": "scaling", "method": "hrseg_auto", "model": f"{backbone}_ocr", "image": f"{height}x{width}", "scales": list(scales),
                     "flip": flip, "repeats": case.repeats, "threads": threads, "seconds": round(seconds, 4), "images_per_s": round(1 / seconds, 4)})  # fmt: skip
        log.info("scaling %s %d scale(s)%s: %.3f s", rows[-1]["image"], len(scales), " + flip" if flip else "", seconds)
    return rows


def _time_case(case: Case, threads: int) -> tuple[dict[str, float], dict]:
    """Median seconds per method (interleaved repeats) and each method's scores."""
    torch.set_num_threads(threads)
    runners = _runners(case)
    scores = {name: fn() for name, fn in runners.items()}  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(case.repeats):
        for name, fn in runners.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, {k: v.numpy() for k, v in scores.items()}


def _memory(case: Case, method: str, threads: int) -> dict:
    """In a fresh process: peak RSS of building the model and running ``method`` once."""
    torch.set_num_threads(threads)
    runners = _runners(case)
    rss_model = current_rss_mib()
    runners[method]()
    return {"peak_rss_mb": round(peak_rss_mib(), 1), "extra_rss_mb": round(peak_rss_mib() - rss_model, 1)}


def _spawned(args: tuple) -> object:
    fn, *rest = args
    return {"time": _time_case, "memory": _memory}[fn](*rest)


def run(quick: bool = False, threads: int | None = None) -> list[dict]:
    """One row per (case, method); see the module docstring for the columns."""
    threads = threads or torch.get_num_threads()
    ctx = multiprocessing.get_context("spawn")
    rows = []
    for case in cases(quick):
        log.info("%s: timing %s (%d repeats)", case.name, ", ".join(METHODS), case.repeats)
        with ctx.Pool(1) as pool:
            seconds, scores = pool.apply(_spawned, (("time", case, threads),))
        memory = {}
        for method in METHODS:
            with ctx.Pool(1) as pool:
                memory[method] = pool.apply(_spawned, (("memory", case, method, threads),))
        reference = scores["plain_loop"]
        ref_pred = reference.argmax(1)
        for method in METHODS:
            finite = np.isfinite(reference) & np.isfinite(scores[method])
            rel = abs(scores[method] - reference)[finite] / abs(reference[finite]).clip(min=1e-30)
            rows.append(
                {
                    "case": case.name,
                    "method": method,
                    "model": f"{case.backbone}_ocr",
                    "image": f"{case.height}x{case.width}",
                    "scales": list(case.scales),
                    "flip": case.flip,
                    "repeats": case.repeats,
                    "threads": threads,
                    "seconds": round(seconds[method], 4),
                    "images_per_s": round(1.0 / seconds[method], 4),
                    "speedup_vs_plain_loop": round(seconds["plain_loop"] / seconds[method], 3),
                    **memory[method],
                    "same_prediction": float((scores[method].argmax(1) == ref_pred).mean()),
                    "max_rel_diff": float(rel.max()) if rel.size else float("nan"),
                    "non_finite_scores": int((~finite).sum()),
                }
            )
            r = rows[-1]
            log.info("%s %-14s %.3f images/s, peak RSS %.0f MB, same argmax %.6f", case.name, method, r["images_per_s"], r["peak_rss_mb"], r["same_prediction"])
    with ctx.Pool(1) as pool:
        rows += pool.apply(scaling, (quick, threads))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small model and image, fewer repeats")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process (default: torch's)")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    rows = run(quick=args.quick, threads=args.threads)
    header = f"{'case':<13}{'method':<15}{'images/s':>10}{'speed-up':>10}{'peak RSS MB':>13}{'extra MB':>10}{'same argmax':>13}{'max rel diff':>14}"
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {rows[0]['threads']} threads, {rows[0]['model']} {rows[0]['image']}")
    print(header)
    for r in rows:
        if r["case"] == "scaling":
            print(f"scaling      {r['image']:>9} {len(r['scales'])} scale(s){' + flip' if r['flip'] else ''}: {r['seconds']:.3f} s")
            continue
        print(
            f"{r['case']:<13}{r['method']:<15}{r['images_per_s']:>10.3f}{r['speedup_vs_plain_loop']:>10.2f}{r['peak_rss_mb']:>13.0f}"
            f"{r['extra_rss_mb']:>10.0f}{r['same_prediction']:>13.6f}{r['max_rel_diff']:>14.2e}"
        )
    if args.out:
        from hrseg import io as hio

        hio.write_json(args.out, {"command": " ".join(sys.argv), "rows": rows, "dataclass": [asdict(c) for c in cases(args.quick)]})


if __name__ == "__main__":
    main()
