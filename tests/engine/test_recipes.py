"""params/full/*.yaml: every official experiment, loaded into typed configs, with official.md
section 6 values (iterations computed for the official 4 processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hrseg.config import ConfigError
from hrseg.engine.schedule import build_schedule
from hrseg.recipe import dataset_folder, load_recipe

PARAMS = Path(__file__).resolve().parents[2] / "params" / "full"

# name: (head, align_corners, crop, base, scale_factor, batch/process, epochs, lr, wd, head keywords, ohem, iterations)
OFFICIAL = {
    "cityscapes_ocr": ("ocr", True, (512, 1024), 2048, 16, 3, 484, 0.01, 5e-4, (), False, [119_548]),
    "cityscapes_hrnet": ("fcn", False, (512, 1024), 2048, 16, 3, 484, 0.01, 5e-4, (), False, [119_548]),
    "cityscapes_ocr_trainval": ("ocr", True, (512, 1024), 2048, 16, 3, 484, 0.01, 5e-4, (), False, [139_876]),
    "cityscapes_hrnet_trainval": ("fcn", False, (512, 1024), 2048, 16, 3, 484, 0.01, 5e-4, (), False, [119_548, 139_876]),
    "lip_ocr": ("ocr", True, (473, 473), 473, 11, 10, 150, 0.007, 5e-4, (), False, [114_150]),
    "lip_hrnet": ("fcn", False, (473, 473), 473, 11, 10, 150, 0.007, 5e-4, (), False, [114_150]),
    "pascal_ctx_ocr": ("ocr", True, (520, 520), 520, 16, 4, 200, 0.001, 1e-4, ("cls", "aux", "ocr"), False, [62_400]),
    "pascal_ctx60_ocr": ("ocr", True, (520, 520), 520, 16, 4, 200, 0.001, 1e-4, ("cls", "aux", "ocr"), False, [62_400]),
    "pascal_ctx_hrnet": ("fcn", False, (520, 520), 520, 16, 4, 200, 0.001, 1e-4, ("last_layer",), False, [62_400]),
    "pascal_ctx60_hrnet": ("fcn", False, (520, 520), 520, 16, 4, 200, 0.001, 1e-4, ("last_layer",), False, [62_400]),
    "cocostuff_ocr": ("ocr", True, (520, 520), 520, 16, 4, 110, 0.001, 1e-4, ("cls", "aux", "ocr"), True, [61_820]),
    "cocostuff_hrnet": ("fcn", True, (520, 520), 520, 16, 4, 110, 0.001, 1e-4, ("last_layer",), True, [61_820]),
    "ade20k_ocr": ("ocr", True, (520, 520), 520, 16, 4, 120, 0.02, 1e-4, (), True, [151_560]),
    "ade20k_hrnet": ("fcn", True, (520, 520), 520, 11, 4, 120, 0.02, 1e-4, (), True, [151_560]),
}
TRAIN_SIZES = {"cityscapes": 2975, "lip": 30462, "pascal_ctx": 4998, "pascal_ctx60": 4998, "cocostuff": 9000, "ade20k": 20210}


def test_every_official_recipe_is_present():
    assert sorted(p.stem for p in PARAMS.glob("*.yaml")) == sorted([*OFFICIAL, "custom"])  # + the template for your own data


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_recipe_matches_the_official_yaml(name):
    head, align, crop, base, sf, batch, epochs, lr, wd, keywords, ohem, iterations = OFFICIAL[name]
    recipe = load_recipe(name)
    text = (PARAMS / f"{name}.yaml").read_text()
    assert "experiments/" in text.split("\n\n")[0]  # the header names the official yaml
    m, d, t = recipe.model, recipe.data, recipe.train
    assert (m.backbone, m.head, m.align_corners) == ("hrnetv2_w48", head, align)
    assert (d.crop_size, d.base_size, d.scale_factor, d.root, d.lists) == (crop, base, sf, Path("data") / dataset_folder(d.dataset), Path("data/lists") / dataset_folder(d.dataset))
    assert (t.batch_size, t.epochs, t.lr, t.weight_decay, t.momentum, t.head_keywords) == (batch, epochs, lr, wd, 0.9, keywords)
    assert t.head_lr_mult == (10.0 if keywords else 1.0)
    assert t.loss.use_ohem == ohem and t.loss.balance_weights == ((0.4, 1.0) if head == "ocr" else (1.0,))
    assert (t.loss.class_weights is not None) == (d.dataset == "cityscapes")
    assert t.pretrained == Path("pretrained/hrnetv2_w48_imagenet_pretrained.pth") and t.seed == 304
    if ohem and head == "ocr":
        assert t.loss.ohem_aux_quirk  # the official-reproduction recipes keep the official arithmetic
    n_train = 3475 if d.train_split == "trainval" else TRAIN_SIZES[d.dataset]
    schedule = build_schedule(
        epochs=t.epochs, lr=t.lr, train_samples=n_train, batch_size=t.batch_size, world_size=4,
        extra_epochs=t.extra_epochs, extra_lr=t.extra_lr, extra_samples=3475,
    )  # fmt: skip
    assert [p.max_iters for p in schedule.phases] == iterations


def test_cityscapes_class_weights_are_the_official_ones():
    weights = load_recipe("cityscapes_ocr").train.loss.class_weights
    assert len(weights) == 19 and weights[0] == 0.8373 and weights[17] == 1.1529


def test_recipe_errors_name_the_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  loss:\n    use_ohem: 1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:3: train\.loss\.use_ohem: expected true or false, got 1 \(int\)"):
        load_recipe(bad)
    bad.write_text("train:\n  warmup: 10\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:2: unknown key train\.warmup"):
        load_recipe(bad)
