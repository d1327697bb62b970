"""``evaluate``: the official testval protocol on a dataset split, with its output files.

One function, top to bottom: resolve the protocol (scales, flip, sizing) from the recipe and
the caller's overrides, build and strictly load the model, shard the split over the
``torchrun`` ranks, run ``multi_scale_predict`` + ``finalize_prediction`` on every image,
sum the confusion matrices over ranks, then (rank 0) write

``metrics.json``           summary scalars for DVC: miou, miou_nan, miou_gt, pixel_acc, mean_acc,
                           num_images, scales, flip (unlabelled splits: the last three);
``per_class.csv``          class, iou, acc, gt_pixels, pred_pixels;
``confusion_matrix.png``   row-normalised confusion matrix;
``overlays/<name>.png``    image | ground truth | prediction for the first few images;
``test_results/<name>.png`` for an unlabelled split: Cityscapes labelId PNGs ready for the
                           benchmark server (every rank writes its own images); other
                           datasets: palettised class-index PNGs;

and record the run through the caller's tracker like training (experiment ``hrseg/<dataset>``,
tag ``hrseg.stage=eval``, linked to the training run that wrote the checkpoint: see
``hrseg.runtime.tracker``).

Testval details (official.md section 7): ADE20K's official code does not crop the
multiple-of-8 testval padding before resizing the prediction to the label size;
``recipe.eval.ade20k_pad_quirk=True`` reproduces that, the default (False) crops it like
COCO-Stuff does.
"""

from __future__ import annotations

import csv
import dataclasses
import io as _io
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from hrseg import io as hio
from hrseg.data.catalog import get_spec
from hrseg.data.dataset import build_dataset, worker_init_fn
from hrseg.data.spec import DatasetSpec
from hrseg.evaluation.alignment import decide_align_corners, with_align_corners
from hrseg.evaluation.inference import (
    InferenceMode,
    finalize_prediction,
    multi_scale_predict,
)
from hrseg.evaluation.loading import LoadedModel, load_model
from hrseg.evaluation.options import EvaluationError
from hrseg.evaluation.submission import write_cityscapes_result
from hrseg.io import sha256_file
from hrseg.metrics import ConfusionMatrix, scalar_metrics
from hrseg.recipe import EvalConfig, Recipe
from hrseg.runtime.distributed import cleanup, init_distributed, rank_zero_logging
from hrseg.runtime.progress import progress
from hrseg.runtime.tracker import NullRun, Run, Tracker, eval_run_name, eval_run_params, eval_run_tags, experiment_name, find_training_run
from hrseg.visualize import confusion_matrix_figure, prediction_panel, save_figure, save_label_png, save_png

log = logging.getLogger(__name__)

#: The official README's test scales (official.md section 7 / 10).
CITYSCAPES_MS_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
GENERIC_MS_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)


# --------------------------------------------------------------------------------------
# Protocol
# --------------------------------------------------------------------------------------


def inference_mode_for(dataset: str) -> InferenceMode:
    """Cityscapes has its own window rule; every other dataset uses the generic one."""
    return "cityscapes" if dataset == "cityscapes" else "generic"


def crops_testval_padding(dataset: str, ade20k_pad_quirk: bool) -> bool:
    """Whether the testval padding is cropped from the prediction before resizing it to the
    label size (official: COCO-Stuff yes, ADE20K no; ``ade20k_pad_quirk=False`` crops it for
    ADE20K too). Datasets without testval padding report zero padding either way."""
    return not (dataset == "ade20k" and ade20k_pad_quirk)


def with_protocol(
    recipe: Recipe,
    *,
    scales: Sequence[float] | None = None,
    flip: bool | None = None,
    split: str | None = None,
    batch_size: int | None = None,
) -> Recipe:
    """``recipe`` with its ``eval`` section overridden by the caller's scales/flip/split and
    forward batch size (network inputs per forward pass, mirrored copies included)."""
    changes: dict[str, Any] = {}
    if scales is not None:
        scales = tuple(float(s) for s in scales)
        if not scales or any(not (s > 0) for s in scales):
            raise EvaluationError(f"test scales must be positive numbers, got {list(scales)}")
        changes["scales"] = scales
    if flip is not None:
        changes["flip"] = bool(flip)
    if split is not None:
        changes["split"] = split
    if batch_size is not None:
        if batch_size < 1:
            raise EvaluationError(f"the forward batch size must be at least 1, got {batch_size}")
        changes["batch_size"] = int(batch_size)
    if not changes:
        return recipe
    return dataclasses.replace(recipe, eval=dataclasses.replace(recipe.eval, **changes))


# --------------------------------------------------------------------------------------
# Sharding
# --------------------------------------------------------------------------------------


def shard_indices(num_items: int, rank: int, world_size: int) -> list[int]:
    """Strided shard ``rank, rank + W, ...``: every image exactly once over all ranks (no
    padding duplicates, unlike ``DistributedSampler``)."""
    return list(range(rank, num_items, world_size))


def first_item(batch: list[dict]) -> dict:
    """``collate_fn`` for loaders of one sample per step (images differ in size)."""
    return batch[0]


def protocol_scores(loaded: LoadedModel, image: torch.Tensor, spec: DatasetSpec, ev: EvalConfig, device: torch.device) -> torch.Tensor:
    """One image through the recipe's test protocol (``ev``: scales, flip, crop, base size,
    batch) with the dataset's window rule, flip pairs and normalisation (``spec``): the summed
    exp-logit scores of ``multi_scale_predict``."""
    return multi_scale_predict(
        loaded.model, image, scales=ev.scales, flip=ev.flip, crop_size=tuple(ev.crop_size), base_size=ev.base_size,
        mode=inference_mode_for(spec.name), flip_pairs=spec.flip_pairs, num_classes=spec.num_classes,
        mean=spec.mean, std=spec.std, device=device, max_batch=max(1, ev.batch_size),
    )  # fmt: skip


# --------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------


def per_class_csv(class_names: Sequence[str], result: dict[str, Any]) -> str:
    buffer = _io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["class", "iou", "acc", "gt_pixels", "pred_pixels"])
    for i, name in enumerate(class_names):
        writer.writerow([name, f"{result['iou'][i]:.6f}", f"{result['acc'][i]:.6f}", result["gt_pixels"][i], result["pred_pixels"][i]])
    return buffer.getvalue()


def summary_metrics(result: dict[str, Any] | None, num_images: int, recipe: Recipe, *, digits: int | None = None) -> dict[str, Any]:
    """The ``metrics.json`` content (NaN as None; values rounded to ``digits`` when given)."""
    summary: dict[str, Any] = {}
    if result is not None:
        for key in ("miou", "miou_nan", "miou_gt", "pixel_acc", "mean_acc"):
            value = float(result[key])
            summary[key] = None if math.isnan(value) else (round(value, digits) if digits is not None else value)
    summary.update(num_images=int(num_images), scales=[float(s) for s in recipe.eval.scales], flip=bool(recipe.eval.flip))
    return summary


# --------------------------------------------------------------------------------------
# evaluate()
# --------------------------------------------------------------------------------------


def evaluate(
    recipe: Recipe,
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    scales: Sequence[float] | None = None,
    flip: bool | None = None,
    split: str | None = None,
    batch_size: int | None = None,
    align_corners: bool | None = None,
    device: str | None = None,
    path: str = "auto",
    num_samples: int | None = None,
    num_overlays: int | None = None,
    save_predictions: bool = False,
    tracker: Tracker | None = None,
) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on ``recipe.eval.split`` (or ``split``) and write the outputs
    listed in the module docstring to ``out_dir``. Returns the summary (``metrics.json``) plus
    per-class lists (``iou``, ``acc``, ``gt_pixels``, ``pred_pixels``) on every rank.

    ``scales``/``flip``/``split`` override the recipe; ``batch_size`` (default: the recipe's
    ``eval.batch_size``, 1) is the number of network inputs per forward pass, mirrored copies
    and sliding windows included: 1 runs the official one-input-at-a-time order and gives
    bit-identical scores to it, 2 runs each image with its mirror image (faster on GPUs; on
    CPU the scores then differ by float rounding, ~1e-6 relative); ``path`` picks the inference path
    (``hrseg.evaluation.inference_paths.INFERENCE_PATHS``; the default ``auto`` is the fastest path within float32
    tolerance on this device; ``eager`` reproduces the official numerics bit for bit); ``num_samples`` keeps the first N images;
    ``save_predictions`` also writes ``predictions/<name>.png`` (palettised class indices).
    ``align_corners`` (the user's flag) overrides the value the checkpoint stores or the weight
    catalogue gives, which in turn override the recipe's (``hrseg.evaluation.alignment``).

    ``tracker``: where the run is recorded (rank 0 only; e.g.
    ``hrseg.tracking.tracker.MlflowTracker``; None records nothing); the run's tag
    ``hrseg.train_run_id`` names the training run that wrote ``checkpoint``, found by the tracker
    from the file's sha256 (``hrseg.runtime.tracker.find_training_run``)."""
    recipe = with_protocol(recipe, scales=scales, flip=flip, split=split, batch_size=batch_size)
    info = init_distributed(device)
    try:
        with rank_zero_logging(info.rank):
            recipe = with_align_corners(recipe, decide_align_corners(checkpoint, flag=align_corners, recipe=recipe))
            return _evaluate(
                recipe, Path(checkpoint), Path(out_dir), info, path=path, num_samples=num_samples,
                num_overlays=recipe.eval.num_overlays if num_overlays is None else num_overlays,
                save_predictions=save_predictions, tracker=tracker,
            )  # fmt: skip
    finally:
        cleanup(info)


def _evaluate(
    recipe: Recipe,
    checkpoint: Path,
    out: Path,
    info: Any,
    *,
    path: str,
    num_samples: int | None,
    num_overlays: int,
    save_predictions: bool,
    tracker: Tracker | None,
) -> dict[str, Any]:
    spec = get_spec(recipe.data.dataset, recipe.data.classes)
    if spec.num_classes != recipe.model.num_classes:
        raise EvaluationError(
            f"recipe {recipe.name!r}: model.num_classes={recipe.model.num_classes} but dataset {spec.name!r} has {spec.num_classes} classes"
        )
    ev = recipe.eval
    mode = inference_mode_for(spec.name)
    crop_pad = crops_testval_padding(spec.name, ev.ade20k_pad_quirk)
    dataset = build_dataset(recipe.data, ev.split, train=False, eval_cfg=ev, num_samples=num_samples)
    if len(dataset) == 0:
        raise EvaluationError(f"{dataset.list_file}: the list has no images")
    labelled = all(e.label is not None for e in dataset.entries)
    shard = shard_indices(len(dataset), info.rank, info.world_size)
    loader = DataLoader(
        Subset(dataset, shard), batch_size=1, shuffle=False, collate_fn=first_item, num_workers=recipe.data.num_workers,
        worker_init_fn=worker_init_fn, pin_memory=info.device.type == "cuda",
    )  # fmt: skip

    loaded = load_model(recipe, checkpoint, info.device, path=path)
    run = start_evaluation_run(tracker, recipe, loaded, info, len(dataset))
    status = "FAILED"
    try:
        log.info(
            "evaluating %s on %s/%s (%d images%s): scales %s, flip %s, %s windows, crop %s, base %d, inference path %s",
            checkpoint, spec.name, ev.split, len(dataset), f", {len(shard)} on this rank" if info.distributed else "",
            list(ev.scales), ev.flip, mode, tuple(ev.crop_size), ev.base_size, loaded.path,
        )  # fmt: skip
        cm = ConfusionMatrix(spec.num_classes, device=info.device)
        overlay_dir, written_overlays = out / "overlays", []
        start = time.perf_counter()
        for sample in progress(loader, len(shard), f"eval {spec.name}/{ev.split}", enabled=info.is_main):
            scores = protocol_scores(loaded, sample["image"], spec, ev, info.device)
            pad = tuple(int(v) for v in sample["pad"]) if crop_pad else (0, 0)
            label = sample.get("label")
            size = tuple(label.shape) if label is not None else tuple(int(v) for v in sample["orig_size"])
            pred = finalize_prediction(scores, size, pad=pad, align_corners=loaded.model.align_corners)
            name = sample["name"]
            if label is not None:
                cm.update(pred, label.to(pred.device), spec.ignore_label)
            else:
                target = out / "test_results" / f"{name}.png"
                if spec.name == "cityscapes":
                    write_cityscapes_result(target, pred)
                else:
                    save_label_png(target, pred.cpu().numpy(), spec.palette)
            if save_predictions and label is not None:
                save_label_png(out / "predictions" / f"{name}.png", pred.cpu().numpy(), spec.palette)
            if info.is_main and len(written_overlays) < num_overlays:
                raw, _ = dataset.load(int(sample["index"]))
                rgb = np.ascontiguousarray(raw[:, :, ::-1])
                picture = prediction_panel(
                    rgb, pred.cpu().numpy(), spec.palette, None if label is None else label.numpy(), ignore_label=spec.ignore_label, class_names=spec.class_names
                )
                target = overlay_dir / f"{name}.png"
                save_png(target, picture)
                written_overlays.append(target)
        elapsed = time.perf_counter() - start
        cm.all_reduce()
        result = cm.compute() if labelled else None
        summary = summary_metrics(result, len(dataset), recipe)
        rate = len(shard) / elapsed if elapsed > 0 else 0.0

        if info.is_main:
            hio.write_json(out / "metrics.json", summary_metrics(result, len(dataset), recipe, digits=6))
            files = [out / "metrics.json"]
            if result is not None:
                hio.write_text(out / "per_class.csv", per_class_csv(spec.class_names, result))
                fig = confusion_matrix_figure(cm.mat, spec.class_names, title=f"{recipe.name} {spec.name}/{ev.split}")
                save_figure(out / "confusion_matrix.png", fig)
                files += [out / "per_class.csv", out / "confusion_matrix.png"]
                log.info(
                    "mIoU %.4f (nan-mean %s), pixel acc %.4f, mean acc %.4f over %d images (%.2f images/s%s)",
                    result["miou"], "n/a" if summary["miou_nan"] is None else f"{summary['miou_nan']:.4f}",
                    result["pixel_acc"], result["mean_acc"], len(dataset), rate, " on rank 0" if info.distributed else "",
                )  # fmt: skip
            else:
                log.info("wrote %d test-set predictions to %s", len(dataset), out / "test_results")
            metrics = scalar_metrics(summary)
            run.log_metrics({**metrics, "images_per_s": rate})
            for f in files:
                run.log_artifact(f, "results")
            for f in written_overlays:
                run.log_artifact(f, "overlays")
        status = "FINISHED"
    finally:
        run.close(status)
    full = dict(summary)
    if result is not None:
        full.update({k: result[k] for k in ("iou", "acc", "gt_pixels", "pred_pixels")})
    return full


def start_evaluation_run(tracker: Tracker | None, recipe: Recipe, loaded: LoadedModel, info: Any, num_images: int) -> Run:
    """The run of this evaluation, started by ``tracker`` on rank 0 and linked to the training
    run that wrote the checkpoint (found by its sha256); a ``NullRun`` without a tracker and on
    the other ranks (the checkpoint is then not hashed)."""
    if tracker is None or not info.is_main:
        return NullRun()
    checkpoint_sha = sha256_file(loaded.checkpoint)
    tags = eval_run_tags(recipe, info, loaded.path, find_training_run(tracker, checkpoint_sha))
    params = eval_run_params(recipe, loaded.checkpoint, checkpoint_sha, num_images)
    return tracker.start_run(experiment_name(recipe.data.dataset), eval_run_name(recipe, loaded.checkpoint), tags, params)
