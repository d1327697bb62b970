"""Data loader throughput: decode + official augmentation, images per second.

``run(quick=False)`` generates the synthetic datasets in a temporary directory, writes their
lists, and times a ``DataLoader`` over the training pipeline with 1 and 2 worker processes
(persistent workers, so start-up is excluded; one warm-up pass, then the median of the
timed passes). Rows: ``name``, ``workers``, ``images_per_s``, ``settings``.

    .venv/bin/python benchmarks/bench_data.py [--quick]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

from torch.utils.data import DataLoader

from hrseg.data import build_dataset, prepare_dataset, worker_init_fn
from hrseg.data.synth import generate_synthetic
from hrseg.recipe import DataConfig

# name -> (dataset, crop (h, w), base size, scale factor): the synthetic-data training settings
CASES = {
    "cityscapes_train": ("cityscapes", (128, 256), 256, 16),
    "lip_train": ("lip", (96, 96), 96, 11),
    "ade20k_train": ("ade20k", (96, 96), 128, 11),
}


def _throughput(dataset, workers: int, batch_size: int, epochs: int, repeats: int) -> float:
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=workers, worker_init_fn=worker_init_fn, persistent_workers=True
    )
    for _ in loader:  # warm-up: workers started, files in the page cache
        pass
    rates = []
    for _ in range(repeats):
        start, images = time.perf_counter(), 0
        for _ in range(epochs):
            for batch in loader:
                images += batch["image"].shape[0]
        rates.append(images / (time.perf_counter() - start))
    return statistics.median(rates)


def run(quick: bool = False) -> list[dict]:
    cases = dict(list(CASES.items())[:1]) if quick else CASES
    repeats, epochs, batch_size = (2, 1, 4) if quick else (5, 3, 4)
    rows = []
    with tempfile.TemporaryDirectory(prefix="hrseg-bench-data-") as tmp:
        tmp = Path(tmp)
        datasets = sorted({case[0] for case in cases.values()})
        generate_synthetic(tmp / "synth", seed=0, datasets=datasets)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            for name in datasets:
                prepare_dataset(name, tmp / "synth" / name, tmp / "lists" / name)
        for case, (name, crop, base, factor) in cases.items():
            cfg = DataConfig(dataset=name, root=tmp / "synth" / name, lists=tmp / "lists" / name, crop_size=crop, base_size=base, scale_factor=factor)
            dataset = build_dataset(cfg, "train", train=True, seed=0)
            for workers in (1, 2):
                rows.append({
                    "name": case,
                    "workers": workers,
                    "images_per_s": round(_throughput(dataset, workers, batch_size, epochs, repeats), 1),
                    "settings": {
                        "dataset": name, "images": len(dataset), "crop_size": list(crop), "base_size": base, "scale_factor": factor,
                        "batch_size": batch_size, "epochs_per_repeat": epochs, "repeats": repeats,
                    },
                })  # fmt: skip
    return rows


def main(argv: list[str]) -> None:
    rows = run(quick="--quick" in argv)
    print(f"{'name':<18} {'workers':>7} {'images/s':>9}  settings")
    for row in rows:
        s = row["settings"]
        crop = f"{s['crop_size'][0]}x{s['crop_size'][1]}"
        detail = f"crop {crop}, base {s['base_size']}, batch {s['batch_size']}, {s['images']} images"
        print(f"{row['name']:<18} {row['workers']:>7} {row['images_per_s']:>9.1f}  {detail}")


if __name__ == "__main__":
    main(sys.argv[1:])
