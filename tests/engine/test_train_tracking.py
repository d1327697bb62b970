"""What a training run puts into MLflow (checked through the MLflow client on a temporary
SQLite store), that an interrupted run continues the same MLflow run when resumed, and that an
evaluation of its weights (a copy, as the pipeline's models/<row>/model.pth, or the run
folder's own files) is linked to it."""

from __future__ import annotations

import hashlib
import shutil

import pytest

import hrseg.engine.train as engine_train
from hrseg.config import flatten
from hrseg.engine.train import train
from hrseg.evaluation.evaluate import evaluate
from hrseg.runtime.tracker import profile_tags
from hrseg.tracking.tracker import MlflowTracker


def test_training_run_in_mlflow(tiny_recipe, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_EXP_NAME", "tiny-exp")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    recipe = tiny_recipe(**{"train.lr": 0.02})
    out = tmp_path / "run"
    tracker = MlflowTracker(uri=uri, tags={**profile_tags("smoke"), "pipeline.id": "p1"})  # what the CLI and the stages hand the library

    # interrupt the run in its second validation (after the epoch-1 checkpoint)
    real_validate = engine_train.validate
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_validate(*args, **kwargs)

    monkeypatch.setattr(engine_train, "validate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(recipe, out, tracker=tracker)
    client = MlflowClient(uri)
    [run] = client.search_runs(client.get_experiment_by_name("hrseg/cityscapes").experiment_id)
    assert run.info.status == "KILLED"

    monkeypatch.setattr(engine_train, "validate", real_validate)
    metrics = train(recipe, out, tracker=tracker)  # same command: resumes

    runs = client.search_runs(run.info.experiment_id)
    assert [r.info.run_id for r in runs] == [run.info.run_id]  # the same MLflow run continued
    run = client.get_run(run.info.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name.startswith("train cityscapes_ocr") and "lr=0.02" in run.info.run_name

    params = run.data.params
    assert params["train.lr"] == "0.02" and params["model.backbone"] == "hrnetv2_w18_small_v1"
    assert params["train.pretrained"] == "none" and params["data.crop_size"] == "[64, 128]"
    assert len(params) == len(flatten(recipe.to_dict())) - 1  # every value but the free-text description
    assert "description" not in params and recipe.description in run.data.tags["mlflow.note.content"]
    assert run.data.metrics["miou"] == pytest.approx(metrics["final_miou"])  # same name as eval runs

    tags = run.data.tags
    assert tags["hrseg.recipe"] == "cityscapes_ocr" and tags["hrseg.stage"] == "train" and tags["hrseg.profile"] == "smoke"
    assert tags["pipeline.id"] == "p1" and tags["world_size"] == "1" and tags["device"] == "cpu" and tags["dvc.exp_name"] == "tiny-exp"
    assert "git.commit" in tags and tags["git.dirty"] in ("true", "false")
    for name in ("final", "best"):
        path = out / f"{name}.pth"
        assert tags[f"checkpoint.{name}.path"] == str(path.resolve())
        assert tags[f"checkpoint.{name}.sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()

    history = client.get_metric_history(run.info.run_id, "val/miou")
    assert [m.step for m in history] == [1, 2]
    assert history[-1].value == pytest.approx(metrics["final_miou"])
    # every train.log_every=4 iterations, each step once: the steps run again after the resume
    # (13-24, logged before the interruption) are not logged a second time
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/loss")) == [4, 8, 12, 16, 20, 24]
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/epoch_loss")) == [1, 2]
    assert {"train/lr", "train/images_per_s", "train/epoch_loss", "best_miou", "final_miou"} <= set(run.data.metrics)

    artifacts = {a.path for d in ("config", "results", "curves", "overlays") for a in client.list_artifacts(run.info.run_id, d)}
    assert {"config/recipe.yaml", "results/metrics.json", "results/log.csv", "results/best_val_iou.json", "curves/training.png"} <= artifacts
    assert len([a for a in artifacts if a.startswith("overlays/")]) == 2
    assert not any(a.endswith(".pth") for a in artifacts)  # checkpoints are referenced, not copied

    # evaluations find this run by the sha256 of the file they evaluate
    (tmp_path / "models").mkdir()
    shutil.copy(out / "final.pth", tmp_path / "models" / "model.pth")
    for checkpoint in (tmp_path / "models" / "model.pth", out / "best.pth"):
        evaluate(recipe, checkpoint, tmp_path / "eval" / checkpoint.stem, path="eager", num_samples=1, num_overlays=0, tracker=MlflowTracker(uri=uri))
    evals = [r for r in client.search_runs(run.info.experiment_id) if r.data.tags["hrseg.stage"] == "eval"]
    assert sorted(r.info.run_name for r in evals) == ["eval cityscapes_ocr best.pth ss", "eval cityscapes_ocr model.pth ss"]
    assert [r.data.tags["hrseg.train_run_id"] for r in evals] == [run.info.run_id] * 2


def test_unwritable_artifacts_folder_still_ends_the_run_finished(tiny_recipe, tmp_path, monkeypatch, caplog):
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (tmp_path / "mlartifacts").write_text("a file where the artifacts folder should be")
    recipe = tiny_recipe(**{"train.epochs": 1, "eval.num_overlays": 0})
    metrics = train(recipe, tmp_path / "run", tracker=MlflowTracker(uri=uri))
    client = MlflowClient(uri)
    [run] = client.search_runs(client.get_experiment_by_name("hrseg/cityscapes").experiment_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["miou"] == pytest.approx(metrics["final_miou"])  # metrics still logged
    assert "MLflow artifact upload failed" in caplog.text
    assert caplog.text.count("MLflow artifact upload failed") == 1
