"""What a resumable training checkpoint holds, in a ``torch.load(weights_only=True)``-safe form.

``<out>/checkpoint.pth`` (latest, written atomically by rank 0) is our checkpoint format
(``hrseg.models.checkpoint.make_checkpoint``) plus:

``position``      ``{"epoch", "step", "global_step"}``: the next epoch to run and the optimizer
                  steps already done in it (``step > 0`` = a mid-epoch checkpoint);
``optimizer``     the SGD state (momentum buffers, LR of every group);
``scaler``        the fp16 GradScaler state, or None;
``rng``           one entry per rank: torch CPU/CUDA, numpy and Python ``random`` states;
``sampler_epoch`` the epoch the data sampler was last set to;
``epoch_loss``    ``[sum, count]`` of the running epoch's losses (mid-epoch resume);
``history``       the per-epoch rows of ``log.csv`` so far;
``best``          ``{"miou", "epoch"}``;
``mlflow_run_id`` the MLflow run to continue (or None);
``recipe``        the resolved recipe dict; ``world_size``.

RNG states are stored as tensors, lists, ints, floats and strings only.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from hrseg.config import flatten
from hrseg.errors import HrsegError


class ResumeError(HrsegError):
    """A checkpoint that cannot be resumed with the current settings."""


#: Recipe keys that may change between a run and its resumption (they do not affect the
#: trained weights).
RESUMABLE_CHANGES = (
    "description",
    "data.num_workers",
    "train.log_every",
    "train.checkpoint_every",
    "train.nonfinite_loss",
    "eval.",
)


def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """This process's RNG states (torch CPU, torch CUDA of ``device``, numpy, python)."""
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(np_kind),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "python": {"version": int(py_version), "state": [int(v) for v in py_state], "gauss": py_gauss},
        "cuda": None,
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Restore what ``rng_state`` captured."""
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state((npst["kind"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["gauss"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    if device is not None and device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def recipe_differences(saved: dict, current: dict) -> list[str]:
    """Dotted keys whose values differ between two recipe dicts, ignoring ``RESUMABLE_CHANGES``."""
    a, b = flatten(saved), flatten(current)
    keys = sorted(set(a) | set(b))
    return [
        f"{k}: {a.get(k)!r} -> {b.get(k)!r}"
        for k in keys
        if a.get(k) != b.get(k) and not any(k == p or (p.endswith(".") and k.startswith(p)) for p in RESUMABLE_CHANGES)
    ]


def check_resumable(checkpoint: dict, current_recipe: dict, world_size: int, path: str) -> None:
    """Raise ``ResumeError`` when the checkpoint was written by a different run setup."""
    if "position" not in checkpoint or "optimizer" not in checkpoint:
        raise ResumeError(f"{path}: not a training checkpoint (no position/optimizer); start afresh with --no-resume")
    saved_world = int(checkpoint.get("world_size", 1))
    if saved_world != world_size:
        raise ResumeError(
            f"{path}: written by a run with {saved_world} process(es), this run has {world_size}; the schedule and the "
            "data shards depend on it. Restart with the same number of processes, or use --no-resume"
        )
    diffs = recipe_differences(checkpoint.get("recipe", {}), current_recipe)
    if diffs:
        shown = "; ".join(diffs[:10]) + (f"; ... ({len(diffs)} in all)" if len(diffs) > 10 else "")
        raise ResumeError(
            f"{path}: the recipe differs from the one this checkpoint was trained with ({shown}). "
            "Restore the settings, use another --out directory, or pass --no-resume"
        )
