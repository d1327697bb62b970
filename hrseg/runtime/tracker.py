"""The tracker interface the library logs through, and the one home of MLflow run names and tags.

``hrseg.engine.train.train`` and ``hrseg.evaluation.evaluate.evaluate`` take a ``Tracker`` (or
None: nothing is recorded). The library calls ``tracker.start_run(...)`` on the main rank only
and logs through the ``Run`` it returns; every other rank, and a call without a tracker, gets
a ``NullRun``, which accepts every call and does nothing. The MLflow implementation is
``hrseg.tracking.tracker.MlflowTracker``, created by the CLI and the DVC stages; it says where
runs go (store URI), which extra tags they carry and which run name replaces the library's
default.

What a run is called and tagged is decided here, for the library (training and evaluation
runs), the CLI (``profile_tags``) and the pipeline's stages (``pipeline_tags``):

- experiment ``hrseg/<dataset>`` (``experiment_name``);
- training: run ``train <recipe> <values that differ from the recipe file>``; tags
  ``hrseg.recipe``, ``hrseg.stage=train``, ``hrseg.dataset``, ``hrseg.model``, ``world_size``,
  ``device``, ``torch``, the recipe's description as ``mlflow.note.content``; params: the
  resolved recipe but its description; at the end, tags ``checkpoint.{final,best}.{path,sha256}``
  reference the weight files (``checkpoint_tags``);
- evaluation: run ``eval <recipe> <checkpoint file> <protocol>``; the same tags with
  ``hrseg.stage=eval`` plus ``hrseg.split``, ``hrseg.inference_path`` and ``hrseg.train_run_id``;
  params: the resolved recipe plus ``checkpoint.path``, ``checkpoint.sha256``, ``eval.num_images``.

**How an evaluation finds its training run** (one route, ``find_training_run``): the newest run
whose checkpoint reference tag (``checkpoint.final.sha256``, else ``checkpoint.best.sha256``)
equals the sha256 of the evaluated file. It works wherever the file went: the pipeline
evaluates ``models/<row>/model.pth``, a copy of the training run's ``final.pth``, and ``hrseg
evaluate -c <run folder>/final.pth`` (or ``best.pth``) evaluates the file itself; nothing has to
travel with the weights (they stay byte-identical between identical runs).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hrseg.config import flatten
from hrseg.io import sha256_file

if TYPE_CHECKING:
    from hrseg.recipe import Recipe
    from hrseg.runtime.distributed import DistInfo

#: MLflow's limit on the length of a parameter value.
MAX_PARAM_LENGTH = 6000
#: The tag of an evaluation run that names the training run of the evaluated weights.
TRAIN_RUN_TAG = "hrseg.train_run_id"
#: The checkpoint reference tags whose sha256 identifies a training run's weight files, in the
#: order ``find_training_run`` looks them up.
CHECKPOINT_SHA256_TAGS = ("checkpoint.final.sha256", "checkpoint.best.sha256")
#: Recipe keys left out of training run names (paths and settings that do not change the result).
_NOT_IN_RUN_NAME = ("name", "description", "data.root", "data.lists", "data.num_workers", "train.pretrained", "train.log_every", "train.checkpoint_every", "eval.num_overlays")


# --------------------------------------------------------------------------------------
# The interface
# --------------------------------------------------------------------------------------


class Run(Protocol):
    """One started run: what the library logs while it trains or evaluates."""

    @property
    def run_id(self) -> str | None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...

    def set_tags(self, tags: Mapping[str, Any]) -> None: ...

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None: ...

    def log_dict(self, data: Mapping[str, Any], name: str) -> None: ...

    def log_figure(self, figure: Any, name: str) -> None: ...

    def close(self, status: str = "FINISHED") -> None:
        """End the run: ``FINISHED``, ``FAILED`` or ``KILLED``."""


class Tracker(Protocol):
    """Where and how the library's runs are recorded (what the CLI and the stages hand it)."""

    def start_run(self, experiment: str, name: str, tags: Mapping[str, str], params: Mapping[str, str], *, run_id: str | None = None) -> Run:
        """Start the run ``name`` in ``experiment`` (``run_id``: reopen that run, for a resumed
        training). The tracker may add tags and replace the name; it never raises."""
        ...

    def find_run(self, tag: str, value: str) -> str | None:
        """The id of the newest run whose tag ``tag`` is ``value``, or None (never raises)."""
        ...


class NullRun:
    """The run of a job without a tracker (and of every rank but the main one): accepts every
    call and does nothing."""

    run_id: str | None = None
    enabled = False

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        pass

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        pass

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        pass

    def log_dict(self, data: Mapping[str, Any], name: str) -> None:
        pass

    def log_text(self, text: str, name: str) -> None:
        pass

    def log_figure(self, figure: Any, name: str) -> None:
        pass

    def close(self, status: str = "FINISHED") -> None:
        pass

    def __enter__(self) -> NullRun:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __repr__(self) -> str:
        return "NullRun()"


def find_training_run(tracker: Tracker, checkpoint_sha256: str) -> str | None:
    """The training run that wrote the weight file with this sha256 (see the module docstring)."""
    for tag in CHECKPOINT_SHA256_TAGS:
        found = tracker.find_run(tag, checkpoint_sha256)
        if found:
            return found
    return None


# --------------------------------------------------------------------------------------
# Names, tags and params
# --------------------------------------------------------------------------------------


def experiment_name(dataset: str) -> str:
    return f"hrseg/{dataset}"


def profile_tags(profile: str | None) -> dict[str, str]:
    """The tag of the recipe folder (``params/<profile>/``) a run's recipe came from."""
    return {"hrseg.profile": profile} if profile else {}


def pipeline_tags(stage: str, profile: str) -> dict[str, str]:
    """Tags every MLflow run of a DVC stage carries (the tracker adds git and ``DVC_*`` tags)."""
    return {"hrseg.stage": stage, **profile_tags(profile), "hrseg.pipeline": os.environ.get("DVC_EXP_NAME") or "workspace"}


def _run_tags(stage: str, recipe: Recipe, info: DistInfo, **extra: str) -> dict[str, str]:
    import torch  # loaded by the caller already; kept off the module level for the stages that only need pipeline_tags

    return {
        "hrseg.recipe": recipe.name,
        "hrseg.stage": stage,
        "hrseg.dataset": recipe.data.dataset,
        "hrseg.model": recipe.model.name,
        **extra,
        "world_size": str(info.world_size),
        "device": str(info.device) if info.device.type == "cpu" else torch.cuda.get_device_name(info.device),
        "torch": torch.__version__,
    }


def params_from_dict(data: Mapping[str, Any]) -> dict[str, str]:
    """Flatten a nested (resolved recipe) dict into MLflow params: dotted keys, string values,
    ``None`` written as ``"none"``, lists as ``[a, b]``, values cut at MLflow's length limit."""
    params = {}
    for key, value in flatten(dict(data)).items():
        if value is None:
            text = "none"
        elif isinstance(value, (list, tuple)):
            text = "[" + ", ".join("none" if v is None else str(v) for v in value) + "]"
        else:
            text = str(value)
        params[key] = text[:MAX_PARAM_LENGTH]
    return params


def train_run_name(recipe: Recipe, recipe_file: Recipe | None, limit: int = 6) -> str:
    """``"train <recipe> key=value ..."``: the recipe name plus the values that differ from
    ``recipe_file`` (the recipe as its file says; None: the name alone), train settings first,
    in field order, at most ``limit`` of them."""
    name = f"train {recipe.name}"
    if recipe_file is None:
        return name
    base = flatten(recipe_file.to_dict())
    current = flatten(recipe.to_dict())
    order = {"train": 0, "model": 1, "data": 2, "eval": 3}
    keys = [k for k in current if k not in _NOT_IN_RUN_NAME and base.get(k) != current[k]]
    keys.sort(key=lambda k: order.get(k.split(".")[0], 4))  # stable: field order within a section
    parts = [f"{k.rsplit('.', 1)[-1]}={_short(current[k])}" for k in keys]
    return " ".join([name, *parts[:limit]]) + (" ..." if len(parts) > limit else "")


def _short(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(map(str, value)) + "]"
    return str(value)


def train_run_tags(recipe: Recipe, info: DistInfo) -> dict[str, str]:
    tags = _run_tags("train", recipe, info)
    if recipe.description:
        # the recipe file's description as the run's note, not as a parameter: overrides may
        # have changed what it says, and the parameters show what really ran
        tags["mlflow.note.content"] = f"Recipe {recipe.name}: {recipe.description}. The parameters show the values that ran (after profile and overrides)."
    return tags


def train_run_params(recipe: Recipe) -> dict[str, str]:
    return params_from_dict({k: v for k, v in recipe.to_dict().items() if k != "description"})


def checkpoint_tags(name: str, path: str | os.PathLike) -> dict[str, str]:
    """Tags that reference a weight file without uploading it: ``<name>.path`` and
    ``<name>.sha256`` (``name``: ``checkpoint.final`` or ``checkpoint.best``)."""
    path = Path(path)
    return {f"{name}.path": str(path.resolve()), f"{name}.sha256": sha256_file(path)}


def eval_run_name(recipe: Recipe, checkpoint: str | os.PathLike) -> str:
    """``"eval <recipe> <checkpoint file> ss"`` (or ``6scales+flip``, ...)."""
    ev = recipe.eval
    protocol = "ss" if tuple(ev.scales) == (1.0,) else f"{len(ev.scales)}scales"
    return f"eval {recipe.name} {Path(checkpoint).name} {protocol}{'+flip' if ev.flip else ''}"


def eval_run_tags(recipe: Recipe, info: DistInfo, inference_path: str, train_run_id: str | None) -> dict[str, str]:
    tags = _run_tags("eval", recipe, info, **{"hrseg.split": recipe.eval.split, "hrseg.inference_path": inference_path})
    if train_run_id:
        tags[TRAIN_RUN_TAG] = str(train_run_id)
    return tags


def eval_run_params(recipe: Recipe, checkpoint: str | os.PathLike, checkpoint_sha256: str, num_images: int) -> dict[str, str]:
    params = params_from_dict(recipe.to_dict())
    params.update({"checkpoint.path": str(Path(checkpoint).resolve()), "checkpoint.sha256": checkpoint_sha256, "eval.num_images": str(num_images)})
    return params
