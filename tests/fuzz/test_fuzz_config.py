"""Property-based tests (hypothesis) of the configuration front door: recipe YAML files,
params.yaml and ``--set`` values. Every input either resolves to a valid recipe or raises
``ConfigError`` (an ``HrsegError``) with a message; never another exception type."""

from __future__ import annotations

import copy
import os
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hrseg.config import ConfigError, parse_override, parse_yaml
from hrseg.recipe import resolve_recipe

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "stages"))

import common  # noqa: E402  (stages/common.py)

FUZZ = settings(max_examples=int(os.environ.get("HRSEG_FUZZ_EXAMPLES", "60")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
BASE = yaml.safe_load((REPO / "params/embedded/lip_ocr.yaml").read_text())
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=8)


def _keys(data: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in data.items():
        out.append(prefix + key)
        if isinstance(value, dict):
            out.extend(_keys(value, prefix + key + "."))
    return out


RECIPE_KEYS = _keys(BASE)


def _set(data: dict, dotted: str, value) -> dict:
    node = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return data


@FUZZ
@given(key=st.sampled_from(RECIPE_KEYS + ["train.lrr", "model.extra", "nonsense"]), value=values)
def test_any_recipe_value_resolves_or_is_a_config_error(key, value):
    data = _set(copy.deepcopy(BASE), key, value)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True))
        try:
            resolve_recipe(path)
        except ConfigError as error:
            assert str(error)


@FUZZ
@given(text=st.text(max_size=200))
def test_any_recipe_text_resolves_or_is_a_config_error(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            resolve_recipe(path)
        except ConfigError as error:
            assert str(path) in str(error)


@FUZZ
@given(key=st.sampled_from(RECIPE_KEYS + ["train.lrr", "a..b", "", "train.loss.x.y"]), raw=st.text(max_size=30))
def test_any_set_override_resolves_or_is_a_config_error(key, raw):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.yaml"
        path.write_text(yaml.safe_dump(BASE))
        try:
            parse_override(f"{key}={raw}")
            resolve_recipe(path, overrides=[f"{key}={raw}"])
        except ConfigError as error:
            assert str(error)


@FUZZ
@given(key=st.sampled_from(sorted(PARAMS) + ["lrr", "epoch", "profile_"]), value=values)
def test_any_params_yaml_value_parses_or_is_a_config_error(key, value):
    data = {**PARAMS, key: value}
    try:
        params = common.parse_params(data)
    except ConfigError as error:
        assert str(error)
        return
    assert isinstance(params, common.PipelineParams)


@pytest.mark.parametrize("text", ["lr: 1e-3", "lr: 1E-3", "lr: .001", "lr: 0.001", "lr: 1.0e-3"])
def test_every_spelling_of_a_small_number_is_a_number(text):
    assert common.parse_params({**PARAMS, **parse_yaml(text)}).knobs.lr == 0.001
