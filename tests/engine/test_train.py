"""End-to-end training on the synthetic Cityscapes copy: outputs, kill-and-resume, DDP, NaN."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from PIL import Image

from hrseg.engine.schedule import poly_lr
from hrseg.engine.train import NonFiniteLossError, train
from hrseg.models import build_model_from_config
from hrseg.models.checkpoint import load_checkpoint, model_config_from_file, read_checkpoint


def read_log(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def state(path):
    return read_checkpoint(path)["model"]


def _without_times(rows):
    return [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in rows]


def test_train_writes_results_and_follows_the_schedule(tiny_recipe, tmp_path, monkeypatch):
    import hrseg.engine.train as engine_train

    swapped = []  # train.winograd (default true) on the CPU hands the model to the Winograd swap
    monkeypatch.setattr(engine_train, "use_winograd_training", lambda model: swapped.append(model) or [])
    recipe = tiny_recipe(**{"train.epochs": 1, "train.batch_size": 1})  # batch 1 per process must work with OCR
    metrics = train(recipe, tmp_path)
    assert len(swapped) == 1 and recipe.train.winograd

    names = {p.name for p in tmp_path.iterdir()}
    assert {"best.pth", "final.pth", "metrics.json", "log.csv", "recipe.yaml", "curve.png", "overlays"} <= names
    assert "checkpoint.pth" not in names  # a finished run keeps no resumable state
    overlays = sorted((tmp_path / "overlays").glob("*.png"))
    assert len(overlays) == 2
    with Image.open(overlays[0]) as picture:  # titled image | ground truth | prediction panels
        assert picture.width > 2 * picture.height
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert saved["iterations"] == 24 and saved["epochs"] == 1 and 0.0 <= saved["final_miou"] <= 1.0

    rows = read_log(tmp_path / "log.csv")
    assert [r["epoch"] for r in rows] == ["1"]
    # 24 images, batch 1, 1 process: 24 iterations; the LR set after the last step is poly(23)
    assert float(rows[0]["lr"]) == pytest.approx(poly_lr(recipe.train.lr, 23, 24))
    assert float(rows[0]["val_miou"]) == saved["final_miou"]

    model = build_model_from_config(recipe.model)
    for name in ("best.pth", "final.pth"):
        assert load_checkpoint(model, tmp_path / name).kind == "hrseg"  # strict load


def _sample(height: int, width: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "image": torch.randn(3, height, width, generator=g),
        "label": torch.randint(0, 19, (height, width), generator=g),
        "pad": torch.zeros(2, dtype=torch.int64),
    }


def test_validation_batches_only_images_of_one_size(tiny_recipe):
    """eval.batch_size images per validation forward, but never images of different sizes
    (LIP, PASCAL-Context, COCO-Stuff, ADE20K and custom sets vary): the same metrics as one
    image at a time, up to float32 rounding (which can flip only near-tied pixels)."""
    from hrseg.engine.loaders import same_size_batches, val_loader
    from hrseg.engine.train import validate
    from hrseg.runtime.distributed import DistInfo

    sizes = [(64, 96), (64, 96), (96, 64), (64, 96), (64, 96), (64, 96)]
    samples = [_sample(h, w, i) for i, (h, w) in enumerate(sizes)]
    assert [tuple(b["image"].shape) for b in same_size_batches(samples[:4])] == [(2, 3, 64, 96), (1, 3, 96, 64), (1, 3, 64, 96)]
    torch.manual_seed(0)
    model = build_model_from_config(tiny_recipe().model).eval()
    results = {}
    for batch in (1, 4):
        recipe = tiny_recipe(**{"eval.batch_size": batch})
        results[batch] = validate(model, val_loader(samples, recipe, DistInfo()), recipe, DistInfo(), ignore_label=255)
    assert results[4]["gt_pixels"] == results[1]["gt_pixels"]
    flipped = sum(abs(a - b) for a, b in zip(results[4]["pred_pixels"], results[1]["pred_pixels"], strict=True))
    assert flipped <= 0.001 * sum(results[1]["gt_pixels"])


def test_end_of_epoch_checkpoints_every_n_epochs_and_after_the_last(tiny_recipe, tmp_path, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="hrseg.engine.train")
    train(tiny_recipe(**{"train.epochs": 3, "train.checkpoint_epochs": 2, "eval.num_overlays": 0, "data.val_num_samples": 1}), tmp_path)
    written = [line.split("checkpoint: ")[1].split(" ->")[0] for line in caplog.messages if line.startswith("checkpoint: ")]
    assert written == ["epoch 3, iteration 0 of the epoch", "epoch 4, iteration 0 of the epoch"]  # after epochs 2 and 3


def test_extra_epochs_fine_tune_on_trainval_with_a_fresh_poly(tiny_recipe, tmp_path):
    recipe = tiny_recipe(**{"train.epochs": 1, "train.extra_epochs": 1, "train.extra_lr": 0.001, "train.batch_size": 4, "eval.num_overlays": 0})
    metrics = train(recipe, tmp_path)
    rows = read_log(tmp_path / "log.csv")
    assert [(r["epoch"], r["phase"], r["iteration"]) for r in rows] == [("1", "train", "6"), ("2", "extra", "14")]  # 24 / 4, 32 / 4
    assert float(rows[0]["lr"]) == pytest.approx(poly_lr(recipe.train.lr, 5, 6))
    assert float(rows[1]["lr"]) == pytest.approx(poly_lr(0.001, 7, 8))
    assert metrics["epochs"] == 2 and metrics["iterations"] == 14


def test_nonfinite_loss_stops_with_the_iteration_or_skips(tiny_recipe, tmp_path, caplog, monkeypatch):
    # a loss that is NaN at every step (a NaN class weight would do it, but recipes refuse one)
    from hrseg.engine.losses import SegmentationLoss

    forward = SegmentationLoss.forward
    monkeypatch.setattr(SegmentationLoss, "forward", lambda self, *args, **kw: forward(self, *args, **kw) * float("nan"))
    recipe = tiny_recipe(**{"train.epochs": 1})
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at epoch 1, iteration 1 of the epoch.*nonfinite_loss=skip"):
        train(recipe, tmp_path / "stop")

    skip = tiny_recipe(**{"train.epochs": 1, "train.nonfinite_loss": "skip"})
    metrics = train(skip, tmp_path / "skip")
    assert metrics["iterations"] == 12 and "final_train_loss" not in metrics
    assert "non-finite loss (nan) at epoch 1, iteration 12" in caplog.text
    # no step was taken: the weights are still the initial ones
    torch.manual_seed(skip.train.seed)
    initial = build_model_from_config(skip.model).state_dict()
    final = state(tmp_path / "skip" / "final.pth")
    assert all(torch.equal(initial[k], final[k]) for k in initial if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))


def test_killed_run_resumes_bit_for_bit(tiny_recipe_file, tmp_path, run_env, hrseg_cmd):
    """SIGKILL mid-epoch after a checkpoint; the same command resumes; the final weights equal
    those of an uninterrupted run exactly (CPU, deterministic, dropout on)."""
    recipe = tiny_recipe_file(**{"train.checkpoint_every": 3})
    command = [*hrseg_cmd, "train", str(recipe), "--no-track", "--device", "cpu", "--out"]

    # the uninterrupted reference runs alongside (one thread each)
    reference = subprocess.Popen([*command, str(tmp_path / "ref")], env=run_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    out = tmp_path / "killed"
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen([*command, str(out)], env=run_env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 240
            while not (out / "checkpoint.pth").exists():
                assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "no checkpoint written"
                time.sleep(0.01)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    ckpt = read_checkpoint(out / "checkpoint.pth")
    position = ckpt["position"]
    assert position["step"] > 0, "expected a mid-epoch checkpoint"
    assert ckpt["world_size"] == 1 and ckpt["mlflow_run_id"] is None
    assert set(ckpt["rng"][0]) == {"torch", "numpy", "python", "cuda"}
    assert not (out / "final.pth").exists()

    resumed = subprocess.run([*command, str(out)], env=run_env, capture_output=True, text=True, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _, reference_log = reference.communicate(timeout=300)
    assert reference.returncode == 0, reference_log[-3000:]
    assert f"resuming from {out / 'checkpoint.pth'} (epoch {position['epoch'] + 1}, iteration {position['step']} of the epoch)" in resumed.stderr

    expected, got = state(tmp_path / "ref" / "final.pth"), state(out / "final.pth")
    assert expected.keys() == got.keys()
    different = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert different == []
    assert not (out / "checkpoint.pth").exists()
    assert _without_times(read_log(out / "log.csv")) == _without_times(read_log(tmp_path / "ref" / "log.csv"))


def test_two_process_ddp_equals_one_process_with_the_same_global_batch(tiny_recipe_file, tmp_path, run_env, hrseg_cmd):
    """torchrun, 2 CPU processes (gloo) x batch 1 == 1 process x batch 1 x 2 accumulation steps.

    Per-process BatchNorm (no SyncBN on CPU) sees one image in both set-ups, so the parameters
    agree; BN running statistics differ (DDP keeps rank 0's) and are not compared. OCR dropout
    is off because the two set-ups draw different random masks."""
    recipe = tiny_recipe_file(**{"train.epochs": 1, "train.batch_size": 1, "model.ocr_dropout": 0.0})
    args = ["train", str(recipe), "--no-track", "--device", "cpu", "--out"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "hrseg.cli"]
    runs = [
        subprocess.Popen([*torchrun, *args, str(tmp_path / "ddp")], env=run_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True),
        subprocess.Popen(
            [*hrseg_cmd, *args, str(tmp_path / "one"), "--set", "train.accumulate_steps=2"],
            env=run_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        ),
    ]  # fmt: skip
    for run in runs:
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-3000:]

    assert json.loads((tmp_path / "ddp" / "metrics.json").read_text())["world_size"] == 2
    assert json.loads((tmp_path / "ddp" / "metrics.json").read_text())["iterations"] == 12
    a, b = state(tmp_path / "ddp" / "final.pth"), state(tmp_path / "one" / "final.pth")
    config, _ = model_config_from_file(tmp_path / "one" / "final.pth")
    params = [name for name, _ in build_model_from_config(config).named_parameters()]
    for name in params:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-7, msg=name)
