"""The typed-config converter and recipe loading: strict keys, types, file/line in errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from hrseg.config import ConfigError, apply_overrides, flatten, from_dict, load_yaml, parse_choice, parse_override, to_dict
from hrseg.recipe import Recipe, load_recipe, recipe_from_dict


@dataclass(frozen=True)
class Inner:
    lr: float = 0.01
    scales: tuple[float, ...] = (1.0,)
    mode: Literal["a", "b"] = "a"
    crop: tuple[int, int] = (4, 8)
    path: Path | None = None


@dataclass(frozen=True)
class Outer:
    name: str
    inner: Inner = field(default_factory=Inner)
    flag: bool = False
    count: int = 1


def test_from_dict_converts_nested_values():
    cfg = from_dict(Outer, {"name": "x", "inner": {"lr": 1, "scales": [0.5, 1], "crop": [3, 5], "path": "a/b"}})
    assert cfg == Outer("x", Inner(1.0, (0.5, 1.0), "a", (3, 5), Path("a/b")))
    assert isinstance(cfg.inner.lr, float)
    assert to_dict(cfg) == {"name": "x", "inner": {"lr": 1.0, "scales": [0.5, 1.0], "mode": "a", "crop": [3, 5], "path": "a/b"}, "flag": False, "count": 1}


@pytest.mark.parametrize(
    "data, message",
    [
        ({"name": "x", "inner": {"lrr": 1}}, "f.yaml: unknown key inner.lrr (did you mean inner.lr?); valid keys under inner: lr, scales, mode, crop, path"),
        ({"name": "x", "inner": {"lr": "fast"}}, "f.yaml: inner.lr: expected a number, got 'fast' (str)"),
        ({"name": "x", "inner": {"mode": "c"}}, "f.yaml: inner.mode: expected one of 'a', 'b', got 'c' (str)"),
        ({"name": "x", "flag": "yes"}, "f.yaml: flag: expected true or false, got 'yes' (str)"),
        ({"name": "x", "count": 1.5}, "f.yaml: count: expected an integer, got 1.5 (float)"),
        ({"name": "x", "count": True}, "f.yaml: count: expected an integer, got True (bool)"),
        ({"name": "x", "inner": {"crop": [1, 2, 3]}}, "f.yaml: inner.crop: expected 2 values, got 3"),
        ({"name": "x", "inner": {"scales": [1, "a"]}}, "f.yaml: inner.scales[1]: expected a number"),
        ({"inner": {}}, "f.yaml: missing required key name"),
        ({"name": "x", "inner": 3}, "f.yaml: inner: expected a mapping, got 3 (int)"),
    ],
)
def test_from_dict_errors_name_file_and_key(data, message):
    with pytest.raises(ConfigError) as info:
        from_dict(Outer, data, source="f.yaml")
    assert str(info.value).startswith(message)


def test_overrides_and_flatten():
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    assert parse_override("x=abc") == ("x", "abc")
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("novalue")
    data = {"a": {"b": 1}}
    out = apply_overrides(data, ["a.c=2", "d.e=true"])
    assert out == {"a": {"b": 1, "c": 2}, "d": {"e": True}} and data == {"a": {"b": 1}}
    with pytest.raises(ConfigError, match="'a.b' is a value"):
        apply_overrides(data, ["a.b.c=1"])
    assert flatten({"a": {"b": 1, "c": {"d": [1]}}, "e": {}}) == {"a.b": 1, "a.c.d": [1], "e": {}}


def test_load_yaml_reports_the_line(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model:\n  head: ocr\n  bad: [1, 2\n")
    with pytest.raises(ConfigError, match=r"r.yaml: line \d+ invalid YAML"):
        load_yaml(path)
    with pytest.raises(ConfigError, match="file not found"):
        load_yaml(tmp_path / "absent.yaml")


def test_recipe_file_and_override_errors(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("model:\n  head: ocr\ntrain:\n  lr: 0.02\n")
    recipe = load_recipe(path, ["train.epochs=2"])
    assert isinstance(recipe, Recipe) and recipe.name == "mine" and recipe.train.lr == 0.02 and recipe.train.epochs == 2
    with pytest.raises(ConfigError, match=r"--set train.lrr=1: unknown key train.lrr \(did you mean train.lr\?\)"):
        load_recipe(path, ["train.lrr=1"])
    path.write_text("train:\n  lr: fast\n")
    with pytest.raises(ConfigError, match=r"mine.yaml:2: train.lr: expected a number"):
        load_recipe(path)
    with pytest.raises(ConfigError, match="unknown recipe 'no_such_recipe'"):
        load_recipe("no_such_recipe")
    assert recipe_from_dict({}).model.head == "ocr"


def test_parse_choice_returns_a_valid_value_and_names_the_valid_ones():
    Speed = Literal["fast", "slow"]
    assert parse_choice(Speed, "slow", "speed") == "slow"
    with pytest.raises(ConfigError, match="unknown speed 'quick'; expected one of fast, slow"):
        parse_choice(Speed, "quick", "speed")
