"""What every DVC stage script shares: its entry point (``stage_main``), reading
params.yaml, resolving a recipe for the active profile, and the MLflow run of a stage.

Resolution order for a recipe (later wins):
  params/<recipe>.yaml  <  params/profiles/<profile>.yaml (all -> datasets.<dataset> ->
  recipes.<recipe>)  <  data paths from params.yaml  <  non-null sweep knobs (lr, epochs, ...).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hrseg.config import ConfigError, load_yaml
from hrseg.errors import HrsegError
from hrseg.recipe import Recipe, recipe_from_dict, resolve_recipe_path

PARAMS = Path("params.yaml")
PROFILES = Path("params/profiles")

#: top-level knob -> recipe key it overrides
KNOBS = {
    "lr": "train.lr",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "crop": "data.crop_size",
    "seed": "train.seed",
    "scales": "eval.scales",
    "flip": "eval.flip",
}

#: a dataset spec -> the prepared dataset (folder under data_root, lists under data/lists)
PREPARED = {"pascal_ctx60": "pascal_ctx"}


def read_params(path: Path = PARAMS) -> dict[str, Any]:
    return load_yaml(path)


def stage_main(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace, dict[str, Any]], object], *, torchrun: bool = False) -> None:
    """The ``__main__`` of a stage script: log lines with times, arguments parsed, params.yaml
    read, the stage re-launched under torchrun when ``torchrun`` and ``nproc_per_node`` > 1,
    then ``run(args, params)``. A user-facing error (missing data, no weights, bad recipe) ends
    the stage with its message and exit status 1, not a traceback."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    args = parser.parse_args()
    try:
        params = read_params()
        if torchrun:
            relaunch_under_torchrun(params)
        run(args, params)
    except HrsegError as error:
        print(f"ERROR {Path(sys.argv[0]).name}: {error}", file=sys.stderr)
        raise SystemExit(1) from None


def deep_merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else copy.deepcopy(value)
    return out


def profile_overlay(profile: str) -> dict[str, Any]:
    path = PROFILES / f"{profile}.yaml"
    if not path.is_file():
        valid = ", ".join(sorted(p.stem for p in PROFILES.glob("*.yaml")))
        raise ConfigError(f"params.yaml: unknown profile {profile!r}; valid: {valid}")
    return load_yaml(path)


def prepared_name(dataset: str) -> str:
    return PREPARED.get(dataset, dataset)


def resolve_recipe(name: str, params: dict[str, Any]) -> Recipe:
    """The recipe a train/eval stage runs, with the profile, data paths and knobs applied."""
    path = resolve_recipe_path(name)
    data = load_yaml(path)
    data.setdefault("name", name)
    profile = params["profile"]
    overlay = profile_overlay(profile)
    dataset = data.get("data", {}).get("dataset", "cityscapes")
    for section in (overlay.get("all"), overlay.get("datasets", {}).get(dataset), overlay.get("recipes", {}).get(name)):
        if section:
            data = deep_merge(data, section)
    folder = prepared_name(dataset)
    overrides: dict[str, Any] = {"data.root": f"{params['data_root']}/{folder}", "data.lists": f"data/lists/{folder}"}
    overrides.update({key: params[knob] for knob, key in KNOBS.items() if params.get(knob) is not None})
    return recipe_from_dict(data, overrides, source=f"{path} + {PROFILES / profile}.yaml")


def recipe_key(*values: Any) -> str:
    """A short, stable hash of JSON-able settings (e.g. the resolved training recipe)."""
    payload = json.dumps(list(values), sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def relaunch_under_torchrun(params: dict[str, Any]) -> None:
    """With ``nproc_per_node`` > 1, re-run this script under ``torchrun --standalone`` (one
    process per GPU); a single process runs as a plain Python process."""
    nproc = int(params.get("nproc_per_node", 1))
    if nproc > 1 and "LOCAL_RANK" not in os.environ:
        os.execvp("torchrun", ["torchrun", "--standalone", f"--nproc-per-node={nproc}", *sys.argv])


def device(params: dict[str, Any]) -> str | None:
    value = str(params.get("device", "auto"))
    return None if value == "auto" else value


def run_name(stage: str, recipe: str, params: dict[str, Any]) -> str:
    """``"train cityscapes_ocr lr=0.02"``: the stage, the recipe and every knob set in params.yaml."""
    knobs = " ".join(f"{k}={params[k]}" for k in KNOBS if params.get(k) is not None)
    return f"{stage} {recipe} {knobs}".strip()


def stage_tags(params: dict[str, Any], stage: str) -> dict[str, str]:
    """Tags every stage's MLflow run carries (the library adds git and DVC_* tags)."""
    return {
        "hrseg.stage": stage,
        "hrseg.profile": str(params.get("profile")),
        "hrseg.pipeline": os.environ.get("DVC_EXP_NAME") or "workspace",
    }
