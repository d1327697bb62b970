"""What every DVC stage script shares: its entry point (``stage_main``), the typed
``params.yaml`` (``PipelineParams``), the pipeline's rows, and the one call that resolves a
row's recipe (``hrseg.recipe.resolve_recipe``, the same function ``hrseg train --profile``
calls).

A row's recipe is ``params/<profile>/<row>.yaml``, complete; ``data_root`` decides where its
dataset is read, and the non-null sweep knobs (``lr``, ``epochs``, ...) override their key.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hrseg.config import ConfigError, bounded, from_dict, load_yaml, load_yaml_with_lines, to_dict, unknown_keys_error
from hrseg.errors import HrsegError
from hrseg.recipe import KNOB_KEYS, Knobs, ResolvedRecipe, resolve_recipe
from hrseg.runtime import CpuIsa, HostMemory, pin_cpu_numerics, set_host_memory
from hrseg.runtime.launch import LaunchConfig, torchrun_args
from hrseg.runtime.tracker import pipeline_tags

PARAMS = Path("params.yaml")
ROWS_FILE = Path("stages/rows.yaml")


@dataclass(frozen=True)
class PipelineParams:
    """``params.yaml``, typed. Unknown keys, wrong types and out-of-range values are refused
    with the line and a did-you-mean, before any stage does work."""

    profile: str = "embedded"  # recipes: params/<profile>/<row>.yaml
    data_root: str = "data/synth"  # datasets under <data_root>/<folder>
    knobs: Knobs = Knobs()  # lr, epochs, batch_size, crop, seed, scales, flip (top-level keys)
    nproc_per_node: int = bounded(1, ge=1)
    nnodes: int = bounded(1, ge=1)
    node_rank: int = bounded(0, ge=0)
    rdzv_endpoint: str = ""  # host:port of node 0 (c10d rendezvous) when nnodes > 1
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cpu_threads: int = bounded(2, ge=0)  # 0: torch's default (the number of cores)
    cpu_isa: CpuIsa = "avx2"
    host_memory: HostMemory = "keep"  # never changes results: no stage depends on it
    synth_seed: int = 0
    pretrained_mirror: str = ""

    @property
    def device_arg(self) -> str | None:
        return None if self.device == "auto" else self.device

    def resolve(self, row: str) -> ResolvedRecipe:
        """The recipe ``train_<row>`` / ``eval_<row>`` run."""
        return resolve_recipe(
            row, profile=self.profile, data_root=self.data_root, knobs=self.knobs, data_root_origin="params.yaml: data_root", knob_origin="params.yaml"
        )

    def tags(self, stage: str) -> dict[str, str]:
        """Tags every stage's MLflow run carries (``hrseg.runtime.tracker.pipeline_tags``)."""
        return pipeline_tags(stage, self.profile)


_TOP_LEVEL = [f.name for f in dataclasses.fields(PipelineParams) if f.name != "knobs"] + list(KNOB_KEYS)


def parse_params(data: dict[str, Any], lines: dict[str, int] | None = None, source: str = str(PARAMS)) -> PipelineParams:
    """``PipelineParams`` from the top-level mapping of params.yaml (knobs are top-level keys
    there, so that ``dvc exp run -S lr=0.02`` works)."""
    lines = lines or {}

    def where(key: str | None) -> str | None:
        key = (key or "").removeprefix("knobs.").split(".")[0]
        return f"{source}:{lines[key]}" if key in lines else None

    unknown = [key for key in data if key not in _TOP_LEVEL]
    if unknown:
        error = unknown_keys_error(unknown, _TOP_LEVEL)
        raise ConfigError(f"{where(error.key) or source}: {error}", key=error.key)
    knobs = {key: data[key] for key in KNOB_KEYS if key in data}
    rest = {key: value for key, value in data.items() if key not in KNOB_KEYS}
    return from_dict(PipelineParams, {**rest, "knobs": knobs}, source=source, where=where)


def read_params(path: Path = PARAMS) -> PipelineParams:
    data, lines = load_yaml_with_lines(path)
    return parse_params(data, lines, str(path))


def pipeline_rows(path: Path = ROWS_FILE) -> list[str]:
    """The pipeline's rows (``stages/rows.yaml``): one ``train_<row>`` + ``eval_<row>`` each."""
    rows = load_yaml(path).get("rows")
    if not isinstance(rows, list) or not all(isinstance(r, str) for r in rows):
        raise ConfigError(f"{path}: expected `rows:` with a list of recipe names")
    return rows


def stage_main(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace, PipelineParams], object], *, torchrun: bool = False) -> None:
    """The ``__main__`` of a stage script: log lines with times, arguments parsed, params.yaml
    read and checked, then for the stages that run tensor work (``torchrun``: train, evaluate)
    the host memory policy set and CPU numerics pinned (threads, instruction set: results
    reproduce across machines) and the
    stage re-launched under torchrun when more than one process is asked for, then
    ``run(args, params)``. The other stages (synth, prepare, fetch_pretrained, results_table)
    never import torch, so they skip the pinning and its ~2 s torch import. A user-facing error
    (bad params, missing data, no weights) ends the stage with its message and exit status 1,
    not a traceback."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    args = parser.parse_args()
    try:
        params = read_params()
        if torchrun:
            set_host_memory(params.host_memory)
            pin_cpu_numerics(params.cpu_threads, params.cpu_isa)  # before the first tensor operation
            relaunch_under_torchrun(params)
        run(args, params)
    except HrsegError as error:
        print(f"ERROR {Path(sys.argv[0]).name}: {error}", file=sys.stderr)
        raise SystemExit(1) from None


def launch_config(params: PipelineParams) -> LaunchConfig:
    """params.yaml's processes and nodes as the library's launcher settings."""
    return LaunchConfig(
        nproc_per_node=params.nproc_per_node, nnodes=params.nnodes, node_rank=params.node_rank,
        rdzv_endpoint=params.rdzv_endpoint or None, rdzv_id=os.environ.get("DVC_STAGE", "hrseg"),
    )  # fmt: skip


def relaunch_under_torchrun(params: PipelineParams) -> None:
    """Re-run this script under torchrun (one process per GPU, on every node) when more than
    one process is asked for; a single process runs as a plain Python process."""
    launch = launch_config(params)
    if launch.needs_launcher and "LOCAL_RANK" not in os.environ:
        os.execvp("torchrun", ["torchrun", *torchrun_args(launch), *sys.argv])


def recipe_key(*values: Any) -> str:
    """A short, stable hash of JSON-able settings (e.g. the resolved training recipe)."""
    payload = json.dumps([to_dict(v) for v in values], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]
