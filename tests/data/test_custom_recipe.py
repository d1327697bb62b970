"""Recipes for custom datasets: ``model.num_classes`` from the classes file, ``data.classes``
defaulting to ``<root>/classes.yaml``, and the example recipes in ``docs/recipes``."""

from __future__ import annotations

from pathlib import Path

import pytest

from hrseg.config import ConfigError
from hrseg.data.errors import DatasetError
from hrseg.recipe import load_recipe, recipe_from_dict

REPO = Path(__file__).resolve().parents[2]


def custom(root: Path, **model) -> dict:
    return {"model": {"backbone": "hrnetv2_w18_small_v1", **model}, "data": {"dataset": "custom", "root": str(root)}}


@pytest.fixture
def root(tmp_path) -> Path:
    (tmp_path / "classes.yaml").write_text("names: [background, crack, pothole]\n")
    return tmp_path


def test_num_classes_and_classes_path_come_from_the_classes_file(root):
    recipe = recipe_from_dict(custom(root))
    assert recipe.model.num_classes == 3 and recipe.data.classes == root / "classes.yaml"
    assert recipe_from_dict(custom(root, num_classes=3)).model.num_classes == 3
    # overrides are validated the same way
    other = root / "two.yaml"
    other.write_text("names: [bg, fg]\n")
    assert recipe_from_dict(custom(root), [f"data.classes={other}"]).model.num_classes == 2


def test_disagreement_names_both(root):
    with pytest.raises(ConfigError) as info:
        recipe_from_dict(custom(root, num_classes=19), source="my.yaml")
    message = str(info.value)
    assert message.startswith("my.yaml: model.num_classes is 19 but") and f"{root / 'classes.yaml'} lists 3 classes (background, crack, pothole)" in message
    with pytest.raises(ConfigError, match="with overrides: model.num_classes is 5"):
        recipe_from_dict(custom(root), ["model.num_classes=5"], source="my.yaml")


def test_missing_classes_file(tmp_path):
    with pytest.raises(ConfigError, match=r"data.classes: .*classes.yaml not found; model.num_classes comes from it"):
        recipe_from_dict(custom(tmp_path))
    # with num_classes given the recipe loads (before `hrseg synth`); training checks it later
    assert recipe_from_dict(custom(tmp_path, num_classes=6)).data.classes == tmp_path / "classes.yaml"
    (tmp_path / "classes.yaml").write_text("names: [only]\n")
    with pytest.raises(DatasetError, match="at least 2"):
        recipe_from_dict(custom(tmp_path))


def test_classes_only_for_custom(root):
    with pytest.raises(ConfigError, match="data.classes is read only for data.dataset: custom"):
        recipe_from_dict({"data": {"dataset": "lip", "classes": str(root / "classes.yaml")}})
    assert recipe_from_dict({"data": {"dataset": "lip"}}).data.classes is None


@pytest.mark.parametrize("name", ["custom_synth", "custom_rgb_synth"])
def test_example_recipes_load(name, monkeypatch, tmp_path):
    from hrseg.data.synth import generate_synthetic

    monkeypatch.chdir(tmp_path)
    generate_synthetic(tmp_path / "data" / "synth", datasets=["custom_rgb" if "rgb" in name else "custom"])
    recipe = load_recipe(REPO / "docs" / "recipes" / f"{name}.yaml")
    assert recipe.data.dataset == "custom" and recipe.model.num_classes == 6
    assert recipe.model.backbone == "hrnetv2_w18_small_v1" and recipe.model.ocr_mid_channels == 32 and recipe.model.init == "kaiming"
    assert recipe.train.pretrained is None
