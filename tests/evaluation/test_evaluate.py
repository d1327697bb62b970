"""``evaluate`` end to end on ``hrseg synth`` data: exact against the slow reference loop,
output files, MLflow, the Cityscapes test split, the ADE20K padding quirk, and 2-process
sharding equal to one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch.nn.functional as F

from hrseg.data.dataset import build_dataset
from hrseg.evaluation.evaluate import evaluate, shard_indices
from hrseg.evaluation.reference import reference_predict
from hrseg.runtime.tracker import checkpoint_tags, profile_tags
from hrseg.tracking.tracker import MlflowTracker, start_tracking

SUMMARY_KEYS = {"miou", "miou_nan", "miou_gt", "pixel_acc", "mean_acc", "num_images", "scales", "flip"}


def official_confusion(model, recipe, num_images: int, *, crop_pad: bool) -> np.ndarray:
    """The official testval loop, written out: reference TTA, crop the testval padding (or
    not), resize to the label size, argmax, count."""
    from hrseg.data.catalog import get_spec

    spec = get_spec(recipe.data.dataset)
    ev = recipe.eval
    dataset = build_dataset(recipe.data, ev.split, train=False, eval_cfg=ev, num_samples=num_images)
    k = spec.num_classes
    mat = np.zeros((k, k), np.int64)
    for i in range(len(dataset)):
        sample = dataset[i]
        pred = reference_predict(
            model, sample["image"][None], num_classes=k, scales=ev.scales, flip=ev.flip, crop_size=tuple(ev.crop_size),
            base_size=ev.base_size, mode="cityscapes" if spec.name == "cityscapes" else "generic",
            align_corners=recipe.model.align_corners, flip_pairs=spec.flip_pairs,
        )  # fmt: skip
        pad_h, pad_w = (int(v) for v in sample["pad"]) if crop_pad else (0, 0)
        if pad_h or pad_w:
            pred = pred[:, :, : pred.shape[2] - pad_h, : pred.shape[3] - pad_w]
        label = sample["label"].numpy()
        if tuple(pred.shape[-2:]) != label.shape:
            pred = F.interpolate(pred, label.shape, mode="bilinear", align_corners=recipe.model.align_corners)
        seg = pred.argmax(1)[0].numpy()
        keep = label != 255
        np.add.at(mat, (label[keep], seg[keep]), 1)
    return mat


def official_metrics(mat: np.ndarray) -> dict:
    tp = np.diag(mat).astype(float)
    pos, res = mat.sum(1), mat.sum(0)
    iou = tp / np.maximum(1.0, pos + res - tp)
    return {
        "miou": iou.mean(), "iou": iou, "pixel_acc": tp.sum() / pos.sum(), "mean_acc": (tp / np.maximum(1.0, pos)).mean(),
        "gt_pixels": pos.tolist(), "pred_pixels": res.tolist(),
    }  # fmt: skip


def test_cityscapes_val_matches_the_official_loop_and_writes_everything(synth_data, tmp_path, make_recipe, make_checkpoint, monkeypatch):
    root, lists = synth_data["cityscapes"]
    # 0.75: whole image after a cv2 resize; 1.25: 2 x 2 windows shifted inside the image
    recipe = make_recipe("cityscapes", root, lists, 19, crop_size=[64, 128], base_size=128, scales=[0.75, 1.25], flip=True)
    model = make_checkpoint(tmp_path / "tiny.pth", 19)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # a file store starts faster than SQLite
    uri = (tmp_path / "mlruns").as_uri()
    # the training run that wrote tiny.pth, as training tags it
    with start_tracking("hrseg/cityscapes", "train tiny", tags={"hrseg.stage": "train", **checkpoint_tags("checkpoint.final", tmp_path / "tiny.pth")}, uri=uri) as train_run:
        pass
    out = tmp_path / "eval"
    tracker = MlflowTracker(uri=uri, tags={"hrseg.pipeline": "workspace", **profile_tags("smoke")})
    result = evaluate(recipe, tmp_path / "tiny.pth", out, path="eager", num_samples=2, tracker=tracker)

    expected = official_metrics(official_confusion(model, recipe, 2, crop_pad=True))
    assert sum(v > 0 for v in result["pred_pixels"]) >= 2, "degenerate test model: one class everywhere"
    # eval.batch_size 1 (the default): the official order, so the same pixels, exactly
    assert result["gt_pixels"] == expected["gt_pixels"] and result["pred_pixels"] == expected["pred_pixels"]
    assert result["miou"] == pytest.approx(expected["miou"], abs=1e-12)
    assert result["pixel_acc"] == pytest.approx(expected["pixel_acc"], abs=1e-12)
    assert result["mean_acc"] == pytest.approx(expected["mean_acc"], abs=1e-12)
    np.testing.assert_allclose(result["iou"], expected["iou"], atol=1e-12)

    summary = json.loads((out / "metrics.json").read_text())
    assert set(summary) == SUMMARY_KEYS
    assert summary["num_images"] == 2 and summary["scales"] == [0.75, 1.25] and summary["flip"] is True
    rows = (out / "per_class.csv").read_text().splitlines()
    assert rows[0] == "class,iou,acc,gt_pixels,pred_pixels" and len(rows) == 20 and rows[1].startswith("road,")
    assert (out / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    overlays = sorted((out / "overlays").glob("*.png"))
    assert len(overlays) == 2
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporaries

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("hrseg/cityscapes").experiment_id])
    (run,) = [r for r in runs if r.info.run_id != train_run.run_id]
    assert run.data.tags["hrseg.stage"] == "eval" and run.info.run_name == "eval tiny_cityscapes tiny.pth 2scales+flip"
    assert run.data.tags["hrseg.train_run_id"] == train_run.run_id  # found by the checkpoint's sha256
    assert run.data.tags["hrseg.profile"] == "smoke" and run.data.tags["hrseg.pipeline"] == "workspace"
    assert run.data.metrics["miou"] == pytest.approx(result["miou"])
    assert run.data.params["eval.flip"] == "True" and run.data.params["checkpoint.sha256"]
    artifacts = {a.path for folder in ("results", "overlays") for a in client.list_artifacts(run.info.run_id, folder)}
    assert {"results/metrics.json", "results/per_class.csv", "results/confusion_matrix.png"} <= artifacts
    assert sum(a.startswith("overlays/") for a in artifacts) == 2
    assert run.info.status == "FINISHED"


def test_cityscapes_test_split_writes_submittable_label_ids(synth_data, tmp_path, make_recipe, make_checkpoint):
    from PIL import Image

    from hrseg.data.cityscapes import train_id_to_label_id

    root, lists = synth_data["cityscapes"]
    recipe = make_recipe("cityscapes", root, lists, 19, crop_size=[64, 128], base_size=128, split="test")
    make_checkpoint(tmp_path / "tiny.pth", 19)
    result = evaluate(recipe, tmp_path / "tiny.pth", tmp_path / "out", path="eager", num_overlays=0)
    assert result == {"num_images": 4, "scales": [1.0], "flip": False}
    pngs = sorted((tmp_path / "out" / "test_results").glob("*.png"))
    assert pngs[0].name == "berlin_000000_000019_leftImg8bit.png" and len(pngs) == 4
    valid = set(train_id_to_label_id().values())
    for png in pngs:
        img = Image.open(png)
        assert img.mode == "P" and img.size == (256, 128)
        assert set(np.unique(np.asarray(img)).tolist()) <= valid


def test_ade20k_testval_padding_is_cropped_unless_the_quirk_is_on(synth_data, tmp_path, make_recipe, make_checkpoint):
    root, lists = synth_data["ade20k"]
    model = make_checkpoint(tmp_path / "tiny.pth", 150)
    for quirk in (False, True):
        recipe = make_recipe("ade20k", root, lists, 150, crop_size=[64, 64], base_size=60, ade20k_pad_quirk=quirk)
        sample = build_dataset(recipe.data, "val", train=False, eval_cfg=recipe.eval, num_samples=1)[0]
        assert int(sample["pad"].sum()) > 0  # short side 60 -> padded to a multiple of 8
        result = evaluate(recipe, tmp_path / "tiny.pth", tmp_path / f"out{quirk}", path="eager", num_samples=1, num_overlays=0)
        expected = official_metrics(official_confusion(model, recipe, 1, crop_pad=not quirk))
        assert result["gt_pixels"] == expected["gt_pixels"] and result["pred_pixels"] == expected["pred_pixels"]
        assert result["miou"] == pytest.approx(expected["miou"], abs=1e-12)


def test_shards_cover_every_image_once():
    shards = [shard_indices(7, r, 3) for r in range(3)]
    assert shards == [[0, 3, 6], [1, 4], [2, 5]]
    assert sorted(i for shard in shards for i in shard) == list(range(7))
    assert shard_indices(1, 1, 2) == []


# ----------------------------------------------------------------------------- distributed


def test_torchrun_two_processes_give_the_single_process_result(synth_data, tmp_path, make_recipe, make_checkpoint):
    """``torchrun --nproc-per-node 2 -m hrseg.cli evaluate``: 2 gloo processes on CPU, strided
    shards, summed confusion matrices; rank 0 alone writes the files."""
    import yaml

    root, lists = synth_data["cityscapes"]
    recipe = make_recipe("cityscapes", root, lists, 19, crop_size=[64, 128], base_size=128, scales=[0.5])
    make_checkpoint(tmp_path / "tiny.pth", 19)
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(recipe.to_dict(), default=str))))
    single = evaluate(recipe, tmp_path / "tiny.pth", tmp_path / "single", device="cpu", path="eager", num_samples=3, num_overlays=1)
    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "hrseg.cli", "evaluate",
        str(tmp_path / "recipe.yaml"), "--checkpoint", str(tmp_path / "tiny.pth"), "--out", str(out), "--device", "cpu",
        "--num-samples", "3", "--overlays", "1", "--no-track", "--path", "eager",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "3 images, 2 on this rank" in done.stderr
    assert json.loads((out / "metrics.json").read_text()) == json.loads((tmp_path / "single" / "metrics.json").read_text())
    assert (out / "per_class.csv").read_text() == (tmp_path / "single" / "per_class.csv").read_text()
    assert sum(single["gt_pixels"]) > 0
    assert len(list((out / "overlays").glob("*.png"))) == 1  # rank 0 only


def test_released_official_checkpoint_format(parity, synth_data, tmp_path):
    """A file in the released format (``model.`` prefix, ``loss.criterion.weight``) from the
    official implementation evaluates like ours: strict load, same protocol."""
    from hrseg.recipe import recipe_from_dict

    root, lists = synth_data["cityscapes"]
    recipe = recipe_from_dict(
        {
            "model": {"backbone": "hrnetv2_w18_small_v2", "head": "ocr", "num_classes": 19},
            "data": {"dataset": "cityscapes", "root": str(root), "lists": str(lists), "num_workers": 0},
            "eval": {"crop_size": [64, 128], "base_size": 128, "num_overlays": 0},
        }
    )
    result = evaluate(recipe, parity / "w18s2_ocr_k19.pth", tmp_path, path="eager", num_samples=1)
    assert result["num_images"] == 1 and sum(result["pred_pixels"]) == sum(result["gt_pixels"]) > 0
