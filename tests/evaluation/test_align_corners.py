"""Where ``align_corners`` comes from (``hrseg.evaluation.alignment``): the flag, the value
stored in our checkpoint, the weight catalogue for official files (by name or sha256), the
recipe; the warnings when they disagree, the error when nothing says, and the one log line of
``predict`` / ``export`` / ``evaluate`` naming the source. Also: ``predict --dataset`` takes
its test sizes from the dataset's recipe."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from hrseg import io as hio
from hrseg.cli import app
from hrseg.errors import HrsegError
from hrseg.evaluation import alignment
from hrseg.evaluation.alignment import AlignCorners, decide_align_corners
from hrseg.evaluation.predict import dataset_eval_sizing, recipe_for_checkpoint
from hrseg.io import torch_save
from hrseg.models import ModelConfig, build_model_from_config
from hrseg.models.checkpoint import make_checkpoint
from hrseg.recipe import EvalConfig, Recipe
from hrseg.weights import catalogue
from hrseg.weights.catalogue import CATALOGUE, find_weight_file

CS_FCN = "hrnet_cs_8090_torch11.pth"  # catalogued: trained with align_corners=False
LIP_FCN = "hrnet_lip_5583_torch04.pth"  # catalogued: align_corners=False


def tiny_fcn(num_classes: int, align_corners: bool = True) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model_from_config(ModelConfig(backbone="hrnetv2_w18_small_v1", head="fcn", num_classes=num_classes, align_corners=align_corners))
    for module in model.modules():  # outputs of order 1 (the official init gives ~1e-6)
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight)
    model.last_layer[3].weight.data.mul_(0.02)
    return model.eval()


def official_file(path, num_classes: int = 19):
    """A tiny model saved in the released format (flat dict, ``model.`` prefix, loss weight)."""
    model = tiny_fcn(num_classes)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state["loss.criterion.weight"] = torch.ones(num_classes)
    torch_save(state, path)
    return model


def our_file(path, align_corners: bool, num_classes: int = 19):
    model = tiny_fcn(num_classes, align_corners)
    cfg = ModelConfig(backbone="hrnetv2_w18_small_v1", head="fcn", num_classes=num_classes, align_corners=align_corners)
    torch_save(make_checkpoint(model, cfg), path)
    return model


def recipe_saying(value: bool) -> Recipe:
    recipe = Recipe(name="my_recipe")
    return dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, align_corners=value))


def test_official_file_by_name_gives_the_catalogue_value(tmp_path, caplog):
    path = tmp_path / CS_FCN
    official_file(path)
    with caplog.at_level(logging.INFO, logger="hrseg.evaluation.alignment"):
        decided = decide_align_corners(path)
    assert decided == AlignCorners(False, f"weight catalogue: {CS_FCN}")
    assert str(decided) == f"align_corners=False (weight catalogue: {CS_FCN})"
    assert [r.getMessage() for r in caplog.records] == [str(decided)]


def test_our_checkpoint_gives_its_stored_value(tmp_path):
    our_file(tmp_path / "ours.pth", align_corners=False)
    assert decide_align_corners(tmp_path / "ours.pth") == AlignCorners(False, "stored in checkpoint ours.pth")
    our_file(tmp_path / "ours_true.pth", align_corners=True)
    assert decide_align_corners(tmp_path / "ours_true.pth").value is True


def test_flag_contradicting_the_catalogue_warns_naming_both_and_wins(tmp_path, caplog):
    path = tmp_path / CS_FCN
    official_file(path)
    with caplog.at_level(logging.WARNING, logger="hrseg.evaluation.alignment"):
        decided = decide_align_corners(path, flag=True)
    assert decided == AlignCorners(True, "flag --align-corners")
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith(f"--align-corners contradicts {CS_FCN}'s catalogue entry")
    assert "(trained with align_corners=False); using the flag" in warning
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hrseg.evaluation.alignment"):
        assert decide_align_corners(path, flag=False).value is False  # agrees: no warning
    assert not caplog.records


def test_flag_contradicting_our_stored_value_warns(tmp_path, caplog):
    our_file(tmp_path / "ours.pth", align_corners=True)
    with caplog.at_level(logging.WARNING, logger="hrseg.evaluation.alignment"):
        assert decide_align_corners(tmp_path / "ours.pth", flag=False).value is False
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "--no-align-corners contradicts ours.pth's stored model_config (trained with align_corners=True)" in warning


def test_recipe_contradicting_the_file_warns_and_the_file_wins(tmp_path, caplog):
    our_file(tmp_path / "ours.pth", align_corners=False)
    official_file(tmp_path / CS_FCN)
    for path, source in ((tmp_path / "ours.pth", "stored in checkpoint ours.pth"), (tmp_path / CS_FCN, f"weight catalogue: {CS_FCN}")):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="hrseg.evaluation.alignment"):
            assert decide_align_corners(path, recipe=recipe_saying(True)) == AlignCorners(False, source)
        (warning,) = [r.getMessage() for r in caplog.records]
        assert "recipe my_recipe says align_corners=True but" in warning and f"{path.name}'s" in warning and "using False" in warning
    # the flag still wins over both
    assert decide_align_corners(tmp_path / "ours.pth", flag=True, recipe=recipe_saying(False)).value is True


def test_unknown_official_file_uses_the_recipe_else_asks_for_the_flag(tmp_path):
    path = tmp_path / "my_download.pth"
    official_file(path)
    assert decide_align_corners(path, recipe=recipe_saying(False)) == AlignCorners(False, "recipe my_recipe")
    with pytest.raises(HrsegError, match="my_download.pth: cannot tell which align_corners") as err:
        decide_align_corners(path)
    assert "Pass --align-corners or --no-align-corners" in str(err.value)
    assert decide_align_corners(path, flag=False) == AlignCorners(False, "flag --no-align-corners")


def test_catalogue_lookup_by_name_first_then_by_sha256(tmp_path, monkeypatch):
    renamed = tmp_path / "renamed.pth"
    official_file(renamed)
    entry = CATALOGUE["hrnetv2_w48_cityscapes"]
    assert entry.sha256 is None and find_weight_file(renamed) is None  # no hash recorded: nothing to compare
    known = {entry.name: dataclasses.replace(entry, sha256=hio.sha256_file(renamed))}
    assert find_weight_file(renamed, known) == (known[entry.name], "sha256")

    def no_hashing(path):
        raise AssertionError("hashed although the file name matched")

    monkeypatch.setattr(catalogue, "sha256_file", no_hashing)
    named = tmp_path / CS_FCN
    named.write_bytes(b"not even read")
    assert find_weight_file(named, known) == (known[entry.name], "file name")
    with pytest.raises(AssertionError, match="hashed"):  # only a name mismatch hashes
        find_weight_file(renamed, known)


def test_matched_by_sha256_names_both_files(tmp_path, monkeypatch):
    renamed = tmp_path / "renamed.pth"
    official_file(renamed)
    entry = CATALOGUE["hrnetv2_w48_cityscapes"]
    known = {entry.name: dataclasses.replace(entry, sha256=hio.sha256_file(renamed))}
    monkeypatch.setattr(alignment, "find_weight_file", lambda path: find_weight_file(path, known))
    assert decide_align_corners(renamed) == AlignCorners(False, f"weight catalogue: {CS_FCN}, matched by sha256 to renamed.pth")


def test_predict_dataset_sizing_comes_from_the_recipes():
    official = {  # TEST.IMAGE_SIZE (height, width), TEST.BASE_SIZE of the official experiment YAMLs
        "cityscapes": ((1024, 2048), 2048),
        "lip": ((473, 473), 473),
        "pascal_ctx": ((520, 520), 520),
        "pascal_ctx60": ((520, 520), 520),
        "cocostuff": ((520, 520), 520),
        "ade20k": ((520, 520), 520),
    }
    for dataset, (crop, base) in official.items():
        assert dataset_eval_sizing(dataset) == EvalConfig(crop_size=crop, base_size=base), dataset


def test_predict_recipe_for_an_official_file(tmp_path):
    official_file(tmp_path / CS_FCN)
    recipe = recipe_for_checkpoint(tmp_path / CS_FCN, dataset="cityscapes")
    assert recipe.model.align_corners is False and recipe.model.head == "fcn"
    assert recipe.eval == EvalConfig(crop_size=(1024, 2048), base_size=2048)
    official_file(tmp_path / "unknown.pth")
    with pytest.raises(HrsegError, match="--no-align-corners"):
        recipe_for_checkpoint(tmp_path / "unknown.pth", dataset="cityscapes")
    assert recipe_for_checkpoint(tmp_path / "unknown.pth", dataset="cityscapes", align_corners=False).model.align_corners is False


def test_predict_prints_the_source(tmp_path):
    checkpoint = tmp_path / LIP_FCN
    official_file(checkpoint, num_classes=20)
    image = tmp_path / "person.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 40, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "out"
    args = ["predict", str(image), "--checkpoint", str(checkpoint), "--out", str(out), "--dataset", "lip", "--workers", "0", "--path", "eager"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"align_corners=False (weight catalogue: {LIP_FCN})" in result.output
    assert Image.open(out / "person.png").size == (40, 60)

    unknown = tmp_path / "lip_model.pth"
    checkpoint.rename(unknown)
    refused = CliRunner().invoke(app, [*args[:3], str(unknown), *args[4:]])
    assert refused.exit_code == 1 and "--align-corners or --no-align-corners" in " ".join(refused.output.split())


def test_export_prints_the_source_and_uses_the_catalogue_value(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    checkpoint = tmp_path / CS_FCN
    model = official_file(checkpoint)
    out = tmp_path / "cs.onnx"
    result = CliRunner().invoke(app, ["export", "-c", str(checkpoint), "-o", str(out), "--height", "64", "--width", "96"])
    assert result.exit_code == 0, result.output
    assert f"align_corners=False (weight catalogue: {CS_FCN})" in result.output
    trained = tiny_fcn(19, align_corners=False)
    trained.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 64, 96)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(["out"], {"image": x.numpy()})[0])
    with torch.no_grad():
        expected, default = trained(x)["out"], model(x)["out"]
    assert (got - expected).abs().max().item() <= 1e-4
    assert (got - default).abs().max().item() > 1e-3  # not the align_corners=True model

    unknown = tmp_path / "cs_model.pth"
    checkpoint.rename(unknown)
    refused = CliRunner().invoke(app, ["export", "-c", str(unknown), "-o", str(tmp_path / "u.onnx")])
    assert refused.exit_code == 1 and "--align-corners or --no-align-corners" in " ".join(refused.output.split())
    assert not (tmp_path / "u.onnx").exists()
