"""Your own dataset end to end: a 6-class and a binary synthetic custom set train to a clearly
non-trivial mIoU in a short CPU run (quality thresholds, no timings), then evaluate with the
user's class names, predict with the user's palette, export, and log to MLflow. The binary run
uses OHEM and class weights from ``hrseg prepare --class-weights``; no loss may be NaN."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hrseg.data import prepare_dataset
from hrseg.data.synth import CUSTOM_NAMES, CUSTOM_PALETTE, generate_synthetic, write_custom_dataset
from hrseg.engine.train import train
from hrseg.recipe import load_recipe
from hrseg.tracking.tracker import MlflowTracker

REPO = Path(__file__).resolve().parents[2]
BINARY_PALETTE = ((0, 0, 0), (255, 200, 0))


def fast(root: Path, lists: Path, **extra) -> dict:
    """The example recipe on 64x64 crops, validated once at the end (16 epochs x 4 iterations)."""
    values = {
        "data.root": str(root),
        "data.classes": str(root / "classes.yaml"),
        "data.lists": str(lists),
        "data.crop_size": [64, 64],
        "train.epochs": 16,
        "train.validate_every": 16,
        "train.deterministic": True,
        "eval.num_overlays": 1,
    }
    values.update(extra)
    return values


@pytest.fixture(scope="module")
def six_class_run(tmp_path_factory):
    """(recipe, run dir, metrics, data root) of the 6-class id-mask set, tracked in MLflow."""
    import torch

    base = tmp_path_factory.mktemp("custom6")
    generate_synthetic(base, datasets=["custom"])
    prepare_dataset("custom", base / "custom", base / "lists", workers=1)
    recipe = load_recipe(REPO / "docs" / "recipes" / "custom_synth.yaml", fast(base / "custom", base / "lists"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        metrics = train(recipe, base / "run", tracker=MlflowTracker(uri=f"sqlite:///{base / 'mlflow.db'}"))
    finally:
        torch.set_num_threads(threads)
    return recipe, base / "run", metrics, base


def test_six_classes_learn(six_class_run):
    recipe, run, metrics, _ = six_class_run
    assert recipe.model.num_classes == 6  # from classes.yaml
    # measured 0.53 (majority class alone: < 0.06)
    assert metrics["final_miou"] > 0.35
    rows = list(csv.DictReader(open(run / "log.csv", newline="")))
    assert all(math.isfinite(float(r["train_loss"])) for r in rows)


def test_six_classes_mlflow_run(six_class_run, monkeypatch):
    from mlflow import MlflowClient

    _, _, metrics, base = six_class_run
    client = MlflowClient(f"sqlite:///{base / 'mlflow.db'}")
    [run] = client.search_runs(client.get_experiment_by_name("hrseg/custom").experiment_id)
    assert run.data.params["data.dataset"] == "custom" and run.data.params["model.num_classes"] == "6"
    assert run.data.params["data.classes"].endswith("classes.yaml")
    assert run.data.metrics["miou"] == pytest.approx(metrics["final_miou"])


def test_six_classes_evaluate_with_class_names(six_class_run, tmp_path):
    from hrseg.evaluation.evaluate import evaluate

    recipe, run, _, _ = six_class_run
    result = evaluate(recipe, run / "final.pth", tmp_path, device="cpu", path="eager")
    # the generic protocol (long side 128, one 128x128 pass; training validates whole images at
    # their own size, so the numbers differ)
    assert result["miou"] > 0.35
    rows = list(csv.DictReader(open(tmp_path / "per_class.csv", newline="")))
    assert [r[next(iter(r))] for r in rows][: len(CUSTOM_NAMES)] == list(CUSTOM_NAMES)
    assert Image.open(tmp_path / "confusion_matrix.png").size[0] > 100
    assert json.loads((tmp_path / "metrics.json").read_text())["miou"] == pytest.approx(result["miou"], abs=1e-6)


def test_six_classes_predict_with_the_user_palette(six_class_run, tmp_path):
    from hrseg.evaluation.predict import predict

    _, run, _, base = six_class_run
    images = base / "custom" / "images" / "test"
    report = predict(images, run / "final.pth", tmp_path, device="cpu", path="eager", workers=0)  # the stored recipe names the classes file
    assert not report.failed and len(report.written) == 2
    png = Image.open(tmp_path / "site_0" / "test_0000.png")
    assert png.mode == "P"
    palette = png.getpalette()[: 3 * len(CUSTOM_PALETTE)]
    assert palette == [c for rgb in CUSTOM_PALETTE for c in rgb]
    assert set(np.unique(np.array(png))) <= set(range(6))
    assert (tmp_path / "overlays" / "site_1" / "test_0001.png").is_file()


def test_six_classes_export(six_class_run, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from hrseg.evaluation.export import export_checkpoint

    _, run, _, _ = six_class_run
    path = export_checkpoint(run / "final.pth", tmp_path / "model.onnx", height=64, width=64)
    import onnx

    [out] = onnx.load(str(path)).graph.output
    assert out.type.tensor_type.shape.dim[1].dim_value == 6


def test_binary_with_ohem_and_class_weights(tmp_path):
    """Background + one foreground class stored as 0/255 masks, weighted CE with OHEM."""
    import torch

    from hrseg.data.synth import _rng

    root = tmp_path / "cracks"
    write_custom_dataset(
        root,
        lambda *p: _rng(1, "custom", *p),
        names=("background", "crack"),
        raw=(0, 255),
        palette=BINARY_PALETTE,
        ignore=None,
        counts=(12, 4, 0),
        blobs_per_object=3,
    )
    assert "mapping: {0: background, 255: crack}" in (root / "classes.yaml").read_text()
    summary = prepare_dataset("custom", root, tmp_path / "lists", workers=1, class_weights="inverse")
    weights = summary["class_weights"]["weights"]
    assert weights[1] > 1 > weights[0] > 0  # the rarer foreground weighs more (measured 4.21 and 0.57)
    recipe = load_recipe(
        REPO / "docs" / "recipes" / "custom_synth.yaml",
        fast(root, tmp_path / "lists", **{"train.epochs": 24, "train.loss.class_weights": weights, "train.loss.use_ohem": True, "train.loss.ohem_keep": 2000}),
    )
    assert recipe.model.num_classes == 2
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        metrics = train(recipe, tmp_path / "run")  # nonfinite_loss: stop -> a NaN would raise
    finally:
        torch.set_num_threads(threads)
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv", newline="")))
    assert rows and all(math.isfinite(float(r["train_loss"])) for r in rows)
    # measured 0.78; all background scores 0.44 (12 % foreground pixels), all foreground 0.06
    assert metrics["final_miou"] > 0.6
