"""Cross-check with ``cityscapesscripts``: on Cityscapes-format files (ground truth labelIds
from ``hrseg synth``, predictions written by our submission writer), the official
pixel-level evaluation and our ``ConfusionMatrix`` agree."""

from __future__ import annotations

import numpy as np
import pytest

from hrseg import io as hio
from hrseg.data.dataset import build_dataset
from hrseg.data.image_io import read_label
from hrseg.evaluation.evaluate import write_cityscapes_result
from hrseg.metrics import ConfusionMatrix


def _cityscapes_eval(predictions: list[str], ground_truth: list[str], monkeypatch) -> dict:
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as csev

    if not hasattr(np, "in1d"):  # removed in NumPy 2.4; cityscapesscripts still calls it
        monkeypatch.setattr(np, "in1d", lambda a, b, invert=False: np.isin(a, b, invert=invert).ravel(), raising=False)
    for name, value in {"quiet": True, "JSONOutput": False, "evalInstLevelScore": False, "evalPixelAccuracy": True}.items():
        monkeypatch.setattr(csev.args, name, value, raising=False)
    return csev.evaluateImgLists(predictions, ground_truth, csev.args)


@pytest.mark.parametrize("drop_classes", [False, True])
def test_miou_equals_cityscapesscripts(synth_data, tmp_path, monkeypatch, make_recipe, drop_classes):
    root, lists = synth_data["cityscapes"]
    recipe = make_recipe("cityscapes", root, lists, 19)
    dataset = build_dataset(recipe.data, "val", train=False, eval_cfg=recipe.eval)
    rng = np.random.default_rng(7)
    cm = ConfusionMatrix(19)
    predictions, ground_truth = [], []
    lut = dataset.spec.lut()
    dropped_ids = (32, 33)  # labelIds of motorcycle and bicycle (trainIds 17, 18)
    for entry in dataset.entries:
        raw = read_label(entry.label)
        if drop_classes:  # make classes 17 and 18 occur nowhere: void in GT, never predicted
            raw = np.where(np.isin(raw, dropped_ids), 0, raw).astype(np.uint8)
        gt_path = tmp_path / "gt" / entry.label.name
        hio.write_image(gt_path, raw)
        label = lut[raw].astype(np.int64)
        pred = label.copy()
        pred[pred == 255] = rng.integers(0, 19, size=int((pred == 255).sum()))
        noise = rng.random(pred.shape) < 0.3  # corrupt 30 % of the pixels
        pred[noise] = rng.integers(0, 19, size=int(noise.sum()))
        if drop_classes:
            pred[np.isin(pred, (17, 18))] = 0
        path = tmp_path / "pred" / f"{entry.name}.png"
        write_cityscapes_result(path, pred)
        predictions.append(str(path))
        ground_truth.append(str(gt_path))
        cm.update(pred, label, ignore_label=255)
    ours = cm.compute()
    theirs = _cityscapes_eval(predictions, ground_truth, monkeypatch)

    assert ours["present"][17] == ours["present"][18] == (not drop_classes)
    assert theirs["averageScoreClasses"] == pytest.approx(ours["miou_nan"], abs=1e-9)
    names = dataset.spec.class_names
    for c in range(19):
        score = theirs["classScores"][names[c]]
        if ours["present"][c]:
            assert score == pytest.approx(ours["iou"][c], abs=1e-9)
        else:
            assert np.isnan(score)
    if all(ours["present"]):
        assert theirs["averageScoreClasses"] == pytest.approx(ours["miou"], abs=1e-9)
    else:  # the official plain mean counts absent classes as 0; cityscapesscripts skips them
        assert ours["miou"] < ours["miou_nan"]
