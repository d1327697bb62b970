"""The training loop: ``train(recipe, out_dir)``, read top to bottom.

Order of the functions = order in which they run: model and numerics, ``evaluate`` (per-epoch
single-scale validation), ``train_one_epoch``, checkpoint writing, and ``train`` itself, which
is the whole story. Data loading lives in ``hrseg.engine.loaders``, the progress display in
``hrseg.runtime.progress``, ``log.csv`` and the curve in ``hrseg.engine.training_log``, the
overlays in ``hrseg.engine.overlays``, what the run is called and tagged in
``hrseg.runtime.tracker``. State is passed as arguments; there is no trainer object. ``model``
is what we call (possibly DDP-wrapped), ``model_without_ddp`` the module.

Protocol (official.md section 6): SGD + poly LR stepped after every optimizer step, per-epoch
validation on ``data.val_split`` (single scale, no flip), ``best.pth`` by validation mIoU,
``final.pth`` at the end; optional extra (trainval) epochs with a fresh poly decay.

Outputs in ``out_dir``: ``best.pth``, ``final.pth``, ``metrics.json`` (final scalars),
``log.csv`` (one row per epoch), ``recipe.yaml`` (the resolved recipe), ``curve.png`` (loss, LR
and val mIoU per epoch) and ``overlays/*.png`` (titled image / ground truth / prediction with a
legend), also logged through the tracker (``train(..., tracker=...)``; rank 0);
``checkpoint.pth`` (latest, resumable: weights, optimizer, RNG, the tracker's run id; written
every ``train.checkpoint_epochs`` epochs, after the last, and every ``train.checkpoint_every``
iterations) only while the run is unfinished: a successful run deletes it (it is twice the size of ``final.pth``), so
training into the same folder again starts afresh. Everything is written atomically through
``hrseg.io`` by rank 0.

Resuming: ``train(..., resume=True)`` continues from ``checkpoint.pth`` when it exists --
mid-epoch checkpoints included (the sampler skips the batches already seen). With
``train.deterministic`` on CPU a resumed run ends with exactly the weights of an uninterrupted
one (data augmentation is a function of (seed, epoch, index); RNG states of every rank are in
the checkpoint).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from hrseg import io as hio
from hrseg.config import ConfigError
from hrseg.data import get_spec
from hrseg.engine.loaders import build_datasets, steps_in_epoch, train_loader, val_loader
from hrseg.engine.losses import SegmentationLoss
from hrseg.engine.optim import build_optimizer, set_lr
from hrseg.engine.overlays import write_overlays
from hrseg.engine.schedule import Schedule, build_schedule
from hrseg.engine.state import check_resumable, rng_state, seed_everything, set_rng_state
from hrseg.engine.training_log import write_log_csv, write_training_curve
from hrseg.errors import HrsegError
from hrseg.metrics import ConfusionMatrix, scalar_metrics
from hrseg.models.checkpoint import load_checkpoint, make_checkpoint, read_checkpoint
from hrseg.models.segmentation import build_model_from_config, resize_logits
from hrseg.models.winograd import use_winograd_training
from hrseg.recipe import Recipe, load_recipe
from hrseg.runtime.distributed import DistInfo, all_reduce_sum, cleanup, init_distributed, rank_zero_logging, unwrap_model, wrap_model
from hrseg.runtime.progress import TrainingProgress
from hrseg.runtime.tracker import NullRun, Run, Tracker, checkpoint_tags, experiment_name, train_run_name, train_run_params, train_run_tags

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pth"
BEST = "best.pth"
FINAL = "final.pth"


class NonFiniteLossError(HrsegError):
    """The loss became NaN or infinite (``train.nonfinite_loss: stop``)."""


# --------------------------------------------------------------------------------------
# Model, loss, numerics
# --------------------------------------------------------------------------------------


def dataset_spec(recipe: Recipe) -> Any:
    return get_spec(recipe.data.dataset, recipe.data.classes)


def check_recipe(recipe: Recipe, info: DistInfo, num_classes: int) -> None:
    cfg = recipe.train
    if recipe.model.num_classes != num_classes:
        raise ConfigError(
            f"model.num_classes is {recipe.model.num_classes} but dataset {recipe.data.dataset!r} has {num_classes} classes"
        )
    if cfg.batch_size < 1 or cfg.accumulate_steps < 1:
        raise ConfigError(f"train.batch_size ({cfg.batch_size}) and train.accumulate_steps ({cfg.accumulate_steps}) must be >= 1")
    if cfg.amp == "fp16" and info.device.type != "cuda":
        raise ConfigError("train.amp: fp16 needs CUDA (a GradScaler); use bf16 or none on CPU")
    if cfg.amp == "bf16" and info.device.type == "cpu":
        log.warning("train.amp=bf16 on CPU: supported but usually much slower than fp32")


def build_training_model(recipe: Recipe) -> nn.Module:
    """The model of the recipe, initialised with ``train.pretrained`` when given."""
    model = build_model_from_config(recipe.model)
    pretrained = recipe.train.pretrained
    if pretrained is not None:
        if not Path(pretrained).is_file():
            raise ConfigError(
                f"train.pretrained: {pretrained} does not exist; download it (hrseg fetch) or start from random "
                "weights with --set train.pretrained=null"
            )
        report = load_checkpoint(model, pretrained)
        log.info("%s", report.summary())
    return model


@contextlib.contextmanager
def numerics(recipe: Recipe, info: DistInfo) -> Iterator[None]:
    """Deterministic algorithms and cuDNN autotuning for the duration of training."""
    deterministic = recipe.train.deterministic
    previous = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    if deterministic and info.device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # CUDA's bilinear-upsampling backward has no deterministic kernel: warn instead of raising
    torch.use_deterministic_algorithms(deterministic, warn_only=info.device.type == "cuda")
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = previous[1], previous[2]


def autocast(recipe: Recipe, info: DistInfo) -> contextlib.AbstractContextManager:
    amp = recipe.train.amp
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(info.device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def _to_device(batch: dict, info: DistInfo, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    image = batch["image"].to(info.device, non_blocking=True)
    if channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    return image, batch["label"].to(info.device, non_blocking=True).long()


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


@torch.no_grad()
def validate(model: nn.Module, loader: DataLoader, recipe: Recipe, info: DistInfo, ignore_label: int) -> dict[str, Any]:
    """Single-scale validation as in the official loop: main logits bilinearly resized to the
    label size, argmax, confusion matrix summed over ranks. Up to ``eval.batch_size`` images of
    one size share a forward pass (``loaders.same_size_batches``). Validation images padded by the
    dataset (``pad`` = bottom/right pixels) have the padding cropped first, as in testval."""
    model.eval()
    if info.distributed:
        # every rank evaluates with rank 0's BatchNorm statistics (DDP syncs them only at forward)
        import torch.distributed as dist

        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)
    cm = ConfusionMatrix(recipe.model.num_classes, device=info.device)
    align = model.align_corners
    for batch in (same_size for batches in loader for same_size in batches):
        image, label = _to_device(batch, info, recipe.train.channels_last)
        with autocast(recipe, info):
            logits = model(image)["out"].float()
        pads = batch.get("pad")
        if pads is None or not bool(torch.as_tensor(pads).any()):
            logits = resize_logits(logits, label.shape[-2:], align_corners=align)
            cm.update(logits.argmax(1), label, ignore_label)
            continue
        full = resize_logits(logits, image.shape[-2:], align_corners=align)
        for i, pad in enumerate(torch.as_tensor(pads).tolist()):
            one = resize_logits(full[i : i + 1], label.shape[-2:], align_corners=align, pad=pad)
            cm.update(one.argmax(1)[0], label[i], ignore_label)
    cm.all_reduce()
    return cm.compute()


# --------------------------------------------------------------------------------------
# One epoch
# --------------------------------------------------------------------------------------


@dataclass
class Position:
    """Where training stands: the next (epoch, step) to run, total steps done, the running
    epoch's loss sum/count, best validation mIoU, and the per-epoch history."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    best_miou: float = -1.0
    best_epoch: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)


def train_one_epoch(
    model: nn.Module,
    criterion: SegmentationLoss,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    loader: DataLoader,
    schedule: Schedule,
    recipe: Recipe,
    info: DistInfo,
    pos: Position,
    steps: int,
    *,
    progress: TrainingProgress,
    run: Run,
    save: Any,
) -> None:
    """Run the optimizer steps ``pos.step .. steps - 1`` of ``pos.epoch``; updates ``pos``.

    ``save(pos)`` is called every ``train.checkpoint_every`` global steps (mid-epoch checkpoints)."""
    cfg = recipe.train
    accumulate = cfg.accumulate_steps
    model.train()
    batches = iter(loader)
    window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
    images_per_step = cfg.batch_size * accumulate * info.world_size
    for step in range(pos.step, steps):
        loss_sum = torch.zeros((), device=info.device)
        for micro in range(accumulate):
            batch = next(batches)
            image, label = _to_device(batch, info, cfg.channels_last)
            sync = micro == accumulate - 1 or not hasattr(model, "no_sync")
            with contextlib.nullcontext() if sync else model.no_sync():
                with autocast(recipe, info):
                    outputs = model(image)
                loss = criterion(outputs, label)
                scaler.scale(loss / accumulate).backward()
            loss_sum += loss.detach()
        # one small collective per step: mean loss over ranks + "any rank non-finite"
        stats = torch.stack([loss_sum / accumulate, (~torch.isfinite(loss_sum)).float()])
        stats = all_reduce_sum(stats, info).tolist()
        step_loss, nonfinite = stats[0] / info.world_size, stats[1] > 0
        if nonfinite:
            where = f"epoch {pos.epoch + 1}, iteration {step + 1} of the epoch (global iteration {pos.global_step + 1})"
            if cfg.nonfinite_loss == "stop":
                raise NonFiniteLossError(
                    f"the loss is {step_loss} at {where}; lower train.lr, check the data, or set "
                    "train.nonfinite_loss=skip to skip such steps"
                )
            log.warning("non-finite loss (%s) at %s: step skipped", step_loss, where)
            optimizer.zero_grad(set_to_none=True)
        else:
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            pos.loss_sum += step_loss
            pos.loss_count += 1
            window_loss += step_loss
            window_steps += 1
        lr = schedule.lr_after_step(pos.epoch, step)
        set_lr(optimizer, lr, cfg.head_lr_mult)
        pos.step = step + 1
        pos.global_step += 1

        log_now = pos.global_step % max(1, cfg.log_every) == 0 or step == steps - 1
        if log_now or progress.bar is not None:
            elapsed = max(time.perf_counter() - window_start, 1e-9)
            ips = images_per_step * max(window_steps, 1) / elapsed
            mean_loss = window_loss / window_steps if window_steps else float("nan")
            progress.update(pos.epoch, step, steps, mean_loss, lr, ips, log_line=log_now)
            if log_now:
                if window_steps:
                    run.log_metrics({"train/loss": mean_loss, "train/lr": lr, "train/images_per_s": ips}, step=pos.global_step)
                window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
        if cfg.checkpoint_every > 0 and pos.global_step % cfg.checkpoint_every == 0 and pos.step < steps:
            save(pos)


# --------------------------------------------------------------------------------------
# Checkpoints and result files
# --------------------------------------------------------------------------------------


def _gather_rng(info: DistInfo) -> list[dict[str, Any]]:
    state = rng_state(info.device)
    if not info.distributed:
        return [state]
    import torch.distributed as dist

    states: list[Any] = [None] * info.world_size
    dist.all_gather_object(states, state)
    return states


def training_checkpoint(
    model_without_ddp: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    recipe: Recipe,
    info: DistInfo,
    pos: Position,
    rng: list[dict[str, Any]],
    run_id: str | None,
) -> dict[str, Any]:
    return make_checkpoint(
        model_without_ddp,
        recipe.model,
        position={"epoch": pos.epoch, "step": pos.step, "global_step": pos.global_step},
        optimizer=optimizer.state_dict(),
        scaler=scaler.state_dict() if scaler.is_enabled() else None,
        rng=rng,
        sampler_epoch=pos.epoch,
        epoch_loss=[pos.loss_sum, pos.loss_count],
        history=[dict(row) for row in pos.history],
        best={"miou": pos.best_miou, "epoch": pos.best_epoch},
        mlflow_run_id=run_id,
        recipe=recipe.to_dict(),
        world_size=info.world_size,
    )


def restore_position(ckpt: dict[str, Any]) -> Position:
    p = ckpt["position"]
    loss_sum, loss_count = ckpt.get("epoch_loss", [0.0, 0])
    best = ckpt.get("best", {})
    return Position(
        epoch=int(p["epoch"]),
        step=int(p["step"]),
        global_step=int(p["global_step"]),
        loss_sum=float(loss_sum),
        loss_count=int(loss_count),
        best_miou=float(best.get("miou", -1.0)),
        best_epoch=int(best.get("epoch", -1)),
        history=[dict(r) for r in ckpt.get("history", [])],
    )


# --------------------------------------------------------------------------------------
# train()
# --------------------------------------------------------------------------------------


def train(
    recipe: Recipe,
    out_dir: str | os.PathLike,
    *,
    resume: bool = True,
    device: str | None = None,
    tracker: Tracker | None = None,
) -> dict[str, Any]:
    """Train ``recipe``, writing checkpoints and results to ``out_dir``; return the final metrics.

    Runs as a plain process (CPU or one GPU) or under torchrun (one process per GPU; NCCL on
    CUDA, gloo on CPU). ``device``: ``"cpu"``, ``"cuda"`` or None (CUDA when available).
    ``resume``: continue from ``out_dir/checkpoint.pth`` when present (and the tracker's run
    that the checkpoint names). ``tracker``: where the run is recorded (rank 0 only; e.g.
    ``hrseg.tracking.tracker.MlflowTracker``); None records nothing."""
    info = init_distributed(device)
    try:
        with rank_zero_logging(info.rank), numerics(recipe, info):
            return _train(recipe, Path(out_dir), info, resume=resume, tracker=tracker)
    finally:
        cleanup(info)


def start_training_run(tracker: Tracker | None, recipe: Recipe, info: DistInfo, run_id: str | None) -> Run:
    """The run of this training, started by ``tracker`` on rank 0 (``run_id``: the run of the
    checkpoint being resumed); a ``NullRun`` without a tracker and on the other ranks."""
    if tracker is None or not info.is_main:
        return NullRun()
    try:
        recipe_file = load_recipe(recipe.name)
    except HrsegError:  # a recipe without a file of its name: the run is named by the recipe name alone
        recipe_file = None
    return tracker.start_run(
        experiment_name(recipe.data.dataset), train_run_name(recipe, recipe_file), train_run_tags(recipe, info), train_run_params(recipe), run_id=run_id
    )


def _train(recipe: Recipe, out: Path, info: DistInfo, *, resume: bool, tracker: Tracker | None) -> dict[str, Any]:
    cfg = recipe.train
    spec = dataset_spec(recipe)
    check_recipe(recipe, info, spec.num_classes)

    # --- resume point
    ckpt_path = out / CHECKPOINT
    ckpt = None
    if resume and ckpt_path.is_file():
        ckpt = read_checkpoint(
            ckpt_path,
            corrupt_hint="it is this run's resume state (hrseg train --resume) and it is truncated or corrupt; "
            "start afresh with --no-resume (it is then overwritten) or train into another --out",
        )
        check_resumable(ckpt, recipe.to_dict(), info.world_size, str(ckpt_path))
        log.info("resuming from %s (epoch %d, iteration %d of the epoch)", ckpt_path, ckpt["position"]["epoch"] + 1, ckpt["position"]["step"])
    elif not resume and ckpt_path.is_file():
        log.info("--no-resume: ignoring %s and starting afresh", ckpt_path)

    # --- data and schedule
    seed_everything(cfg.seed)
    sets = build_datasets(recipe, cfg.seed)
    schedule = build_schedule(
        epochs=cfg.epochs,
        lr=cfg.lr,
        train_samples=len(sets["train"]),  # type: ignore[arg-type]
        batch_size=cfg.batch_size,
        world_size=info.world_size,
        accumulate=cfg.accumulate_steps,
        power=cfg.poly_power,
        train_split=recipe.data.train_split,
        extra_epochs=cfg.extra_epochs,
        extra_lr=cfg.extra_lr,
        extra_samples=len(sets["extra"]) if "extra" in sets else 0,  # type: ignore[arg-type]
        extra_split=cfg.extra_split,
    )
    for phase in schedule.phases:
        log.info(
            "phase %s: epochs %d-%d on %s, %d iterations/epoch (batch %d x %d process(es) x %d accumulation), base LR %g",
            phase.name, phase.first_epoch + 1, phase.end_epoch, phase.split, phase.iters_per_epoch,
            cfg.batch_size, info.world_size, cfg.accumulate_steps, phase.base_lr,
        )  # fmt: skip

    # --- model, loss, optimizer
    model_without_ddp = build_training_model(recipe) if ckpt is None else build_model_from_config(recipe.model)
    if ckpt is not None:
        model_without_ddp.load_state_dict(ckpt["model"], strict=True)
    model_without_ddp.to(info.device)
    if cfg.winograd and info.device.type == "cpu":
        replaced = use_winograd_training(model_without_ddp)
        if replaced:
            log.info("train.winograd: %s run NNPACK's Winograd kernel (forward and input gradient)", ", ".join(replaced))
    if cfg.channels_last:
        model_without_ddp.to(memory_format=torch.channels_last)
    model = wrap_model(model_without_ddp, info, sync_bn=cfg.sync_bn)
    model_without_ddp = unwrap_model(model)
    criterion = SegmentationLoss(cfg.loss, num_classes=spec.num_classes, ignore_label=spec.ignore_label, align_corners=model_without_ddp.align_corners).to(info.device)
    optimizer = build_optimizer(model_without_ddp, cfg)
    scaler = torch.amp.GradScaler(info.device.type, enabled=cfg.amp == "fp16" and info.device.type == "cuda")
    pos = Position()
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler") and scaler.is_enabled():
            scaler.load_state_dict(ckpt["scaler"])
        pos = restore_position(ckpt)

    # --- tracking (rank 0) and run files
    run = start_training_run(tracker, recipe, info, ckpt.get("mlflow_run_id") if ckpt else None)
    if info.is_main:
        import yaml

        out.mkdir(parents=True, exist_ok=True)
        hio.write_text(out / "recipe.yaml", yaml.safe_dump(recipe.to_dict(), sort_keys=False))
        run.log_dict(recipe.to_dict(), "config/recipe.yaml")

    def save(p: Position) -> None:
        rng = _gather_rng(info)  # a collective: every rank takes part
        if info.is_main:
            hio.torch_save(training_checkpoint(model_without_ddp, optimizer, scaler, recipe, info, p, rng, run.run_id), ckpt_path)
            log.info("checkpoint: epoch %d, iteration %d of the epoch -> %s", p.epoch + 1, p.step, ckpt_path)

    # RNG last: building the model above consumed random numbers
    seed_everything(cfg.seed + info.rank)
    if ckpt is not None:
        states = ckpt.get("rng") or []
        if len(states) == info.world_size:
            set_rng_state(states[info.rank], info.device)
        else:
            log.warning("checkpoint has no RNG state for rank %d; dropout masks will differ from an uninterrupted run", info.rank)

    progress = TrainingProgress(info.is_main, schedule.total_epochs)
    status = "FAILED"
    try:
        val_loader_ = val_loader(sets["val"], recipe, info)
        while pos.epoch < schedule.total_epochs:
            epoch = pos.epoch
            phase = schedule.phase(epoch)
            dataset = sets["train" if phase.name == "train" else "extra"]
            steps = steps_in_epoch(dataset, recipe, info)
            loader = train_loader(dataset, recipe, info, epoch, pos.step)
            progress.start_epoch(epoch, steps, pos.step)
            started = time.perf_counter()
            train_one_epoch(
                model, criterion, optimizer, scaler, loader, schedule, recipe, info, pos, steps,
                progress=progress, run=run, save=save,
            )  # fmt: skip
            row: dict[str, Any] = {
                "epoch": epoch + 1,
                "phase": phase.name,
                "iteration": pos.global_step,
                "lr": optimizer.param_groups[0]["lr"],
                "train_loss": pos.loss_sum / pos.loss_count if pos.loss_count else None,
                "val_miou": None,
                "val_pixel_acc": None,
                "val_mean_acc": None,
            }
            last = epoch + 1 == schedule.total_epochs
            if (epoch + 1) % max(1, cfg.validate_every) == 0 or last:
                metrics = validate(model_without_ddp, val_loader_, recipe, info, spec.ignore_label)
                row.update(val_miou=metrics["miou"], val_pixel_acc=metrics["pixel_acc"], val_mean_acc=metrics["mean_acc"])
                run.log_metrics({"val/miou": metrics["miou"], "val/pixel_acc": metrics["pixel_acc"], "val/mean_acc": metrics["mean_acc"]}, step=epoch + 1)
                if metrics["miou"] > pos.best_miou:
                    pos.best_miou, pos.best_epoch = metrics["miou"], epoch + 1
                    if info.is_main:
                        hio.torch_save(make_checkpoint(model_without_ddp, recipe.model, recipe=recipe.to_dict(), epoch=epoch + 1, metrics=scalar_metrics(metrics)), out / BEST)
                    if info.is_main and metrics.get("iou") is not None:
                        hio.write_json(out / "best_val_iou.json", {"epoch": epoch + 1, "miou": metrics["miou"], "iou": metrics["iou"]})
                log.info("epoch %d/%d: train loss %s, val mIoU %.4f (best %.4f, epoch %d)", epoch + 1, schedule.total_epochs, _fmt(row["train_loss"]), metrics["miou"], pos.best_miou, pos.best_epoch)
            else:
                log.info("epoch %d/%d: train loss %s", epoch + 1, schedule.total_epochs, _fmt(row["train_loss"]))
            row["epoch_time_s"] = round(time.perf_counter() - started, 3)
            epoch_metrics = {"train/epoch_time_s": row["epoch_time_s"]}
            if row["train_loss"] is not None:
                epoch_metrics["train/epoch_loss"] = row["train_loss"]
            run.log_metrics(epoch_metrics, step=epoch + 1)
            pos.history.append(row)
            pos.epoch, pos.step, pos.loss_sum, pos.loss_count = epoch + 1, 0, 0.0, 0
            if info.is_main:
                write_log_csv(out / "log.csv", pos.history)
            if (epoch + 1) % cfg.checkpoint_epochs == 0 or last:
                save(pos)
        progress.close()
        result = finish(model_without_ddp, recipe, info, pos, sets["val"], spec, out, run)
        if info.is_main:  # finished: final.pth holds the weights, nothing is left to resume
            ckpt_path.unlink(missing_ok=True)
        status = "FINISHED"
        return result
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        progress.close()
        run.close(status)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def finish(model: nn.Module, recipe: Recipe, info: DistInfo, pos: Position, val_set: Dataset, spec: Any, out: Path, run: Run) -> dict[str, Any]:
    """final.pth, metrics.json, log.csv, curve and overlays (rank 0); the run's artifacts and
    checkpoint references."""
    last = next((r for r in reversed(pos.history) if r.get("val_miou") is not None), {})
    metrics = {
        "best_miou": pos.best_miou if pos.best_epoch > 0 else None,
        "best_epoch": pos.best_epoch if pos.best_epoch > 0 else None,
        "final_miou": last.get("val_miou"),
        "final_pixel_acc": last.get("val_pixel_acc"),
        "final_mean_acc": last.get("val_mean_acc"),
        "final_train_loss": pos.history[-1].get("train_loss") if pos.history else None,
        "epochs": pos.epoch,
        "iterations": pos.global_step,
        "world_size": info.world_size,
    }
    metrics = {k: v for k, v in metrics.items() if v is not None}
    if not info.is_main:
        return metrics
    hio.torch_save(make_checkpoint(model, recipe.model, recipe=recipe.to_dict(), epoch=pos.epoch, metrics=metrics), out / FINAL)
    hio.write_json(out / "metrics.json", metrics)
    write_log_csv(out / "log.csv", pos.history)
    fig = write_training_curve(out / "curve.png", pos.history)
    overlays = write_overlays(model, val_set, recipe, info, spec, out / "overlays", recipe.eval.num_overlays)

    summary = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and k.startswith(("best_", "final_"))}
    # the same names as evaluation runs (miou, pixel_acc, mean_acc), so one column in the
    # MLflow UI / `hrseg runs` compares both; for training they are the final single-scale val
    summary.update({name: summary[f"final_{name}"] for name in ("miou", "pixel_acc", "mean_acc") if f"final_{name}" in summary})
    run.log_metrics(summary, step=pos.epoch)
    run.log_artifact(out / "metrics.json", "results")
    run.log_artifact(out / "log.csv", "results")
    if (out / "best_val_iou.json").is_file():
        run.log_artifact(out / "best_val_iou.json", "results")
    run.log_figure(fig, "curves/training.png")
    for path in overlays:
        run.log_artifact(path, "overlays")
    refs = checkpoint_tags("checkpoint.final", out / FINAL)
    if (out / BEST).is_file():
        refs.update(checkpoint_tags("checkpoint.best", out / BEST))
    run.set_tags(refs)
    log.info("done: %s", ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items() if v is not None))
    return metrics
