"""Recipes: one typed, frozen configuration per experiment (``params/<name>.yaml``).

A recipe has four sections - ``model``, ``data``, ``train``, ``eval`` - mapped onto the
dataclasses below by ``hrseg.config.from_dict``: unknown keys and wrong types are errors that
name the file and the key. ``load_recipe`` resolves a recipe name or path, applies
``--set key=value`` overrides and validates the result.

The library never reads the DVC ``params.yaml``; DVC stages turn its values into overrides.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal

from hrseg.config import ConfigError, apply_overrides, from_dict, load_yaml, to_dict
from hrseg.models.segmentation import ModelConfig


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "cityscapes"  # a key of hrseg.data.DATASETS
    root: Path = Path("data/cityscapes")  # the dataset as downloaded
    lists: Path = Path("data/lists/cityscapes")  # where ``hrseg prepare`` wrote the .lst files
    train_split: str = "train"  # list file <lists>/<train_split>.lst
    val_split: str = "val"
    crop_size: tuple[int, int] = (512, 1024)  # (height, width) of training crops
    base_size: int = 2048  # long side before random scaling
    scale_factor: int = 16  # random scale 0.5 + randint(0, scale_factor) / 10
    random_flip: bool = True
    num_workers: int = 4
    val_num_samples: int | None = None  # official TEST.NUM_SAMPLES: validate on the first N only
    classes: Path | None = None  # dataset custom: its classes.yaml (default <root>/classes.yaml)


@dataclass(frozen=True)
class LossConfig:
    balance_weights: tuple[float, ...] = (0.4, 1.0)  # (aux, main) for OCR; (main,) for FCN
    class_weights: tuple[float, ...] | None = None  # per-class CE weights (Cityscapes recipes)
    use_ohem: bool = False
    ohem_thresh: float = 0.9
    ohem_keep: int = 131072  # per process
    # Official quirk: with OHEM, the aux CE is averaged over *all* pixels, ignored ones
    # included. False = aux CE averaged over valid pixels only (our default; see README).
    ohem_aux_quirk: bool = False


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 484
    batch_size: int = 3  # per process (official BATCH_SIZE_PER_GPU)
    accumulate_steps: int = 1  # batches per optimizer step (emulates more processes)
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    head_lr_mult: float = 1.0  # LR multiplier for parameters matching head_keywords
    head_keywords: tuple[str, ...] = ()
    extra_epochs: int = 0  # official EXTRA_EPOCH: fine-tune on extra_split with a fresh poly
    extra_lr: float = 0.001
    extra_split: str = "trainval"
    loss: LossConfig = field(default_factory=LossConfig)
    pretrained: Path | None = None  # ImageNet (or other) weights for the backbone
    seed: int = 304
    deterministic: bool = False
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    sync_bn: bool = True  # convert BN to SyncBatchNorm under DDP on CUDA only
    checkpoint_every: int = 0  # iterations between checkpoints (0: end of every epoch only)
    log_every: int = 10  # iterations between loss/lr/images-per-second logs
    validate_every: int = 1  # epochs between validations (official: every epoch)
    nonfinite_loss: Literal["stop", "skip"] = "stop"


@dataclass(frozen=True)
class EvalConfig:
    split: str = "val"  # list file <lists>/<split>.lst
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    crop_size: tuple[int, int] = (1024, 2048)  # (height, width) of the network input / window
    base_size: int = 2048  # long side at scale 1.0
    # ADE20K testval: the official code does not crop the multiple-of-8 padding before
    # resizing the prediction to the label size. True = reproduce that quirk.
    ade20k_pad_quirk: bool = False
    num_overlays: int = 4  # colourised prediction overlays written by ``hrseg evaluate``
    batch_size: int = 1


@dataclass(frozen=True)
class Recipe:
    name: str = "cityscapes_ocr"
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def recipe_dirs() -> list[Path]:
    """Where recipe names are looked up: ``$HRSEG_RECIPES``, ``./params``, the repo's ``params``."""
    dirs = []
    if os.environ.get("HRSEG_RECIPES"):
        dirs.append(Path(os.environ["HRSEG_RECIPES"]))
    dirs.append(Path.cwd() / "params")
    dirs.append(Path(__file__).resolve().parent.parent / "params")
    unique: list[Path] = []
    for d in dirs:
        if d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def available_recipes() -> list[str]:
    names = set()
    for d in recipe_dirs():
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.yaml"))
    return sorted(names)


def resolve_recipe_path(name_or_path: str | os.PathLike) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        if not candidate.is_file():
            raise ConfigError(f"{candidate}: recipe file not found")
        return candidate
    for d in recipe_dirs():
        path = d / f"{name_or_path}.yaml"
        if path.is_file():
            return path
    raise ConfigError(
        f"unknown recipe {str(name_or_path)!r}; looked in {', '.join(map(str, recipe_dirs()))}. "
        f"Available: {', '.join(available_recipes()) or '(none)'}"
    )


def recipe_from_dict(data: dict, overrides: Iterable[str] | dict[str, Any] = (), *, source: str | None = None) -> Recipe:
    """Validate ``data`` (errors name ``source``), then apply and validate the overrides
    (errors say they come from the overrides)."""
    recipe = from_dict(Recipe, data, source=source)
    overrides = dict(overrides) if isinstance(overrides, dict) else list(overrides)
    if not overrides:
        return _post_validate(recipe, data, source)
    data, source = apply_overrides(data, overrides), f"{source or 'recipe'} with overrides"
    return _post_validate(from_dict(Recipe, data, source=source), data, source)


def _post_validate(recipe: Recipe, data: dict, source: str | None) -> Recipe:
    """Checks across sections: a custom dataset's ``model.num_classes`` comes from (and must
    agree with) its classes file (``hrseg.data.custom.complete_recipe``)."""
    if recipe.data.dataset == "custom" or recipe.data.classes is not None:
        from hrseg.data.custom import complete_recipe

        given = "num_classes" in (data.get("model") or {})
        return complete_recipe(recipe, num_classes_given=given, source=source)
    return recipe


def load_recipe(name_or_path: str | os.PathLike, overrides: Iterable[str] | dict[str, Any] = ()) -> Recipe:
    """Load ``params/<name>.yaml`` (or a path), apply ``key=value`` overrides, validate.

    The recipe's ``name`` defaults to the file's stem."""
    path = resolve_recipe_path(name_or_path)
    data = load_yaml(path)
    data.setdefault("name", path.stem)
    return recipe_from_dict(data, overrides, source=str(path))
