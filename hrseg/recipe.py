"""Recipes: one typed, frozen configuration per experiment, and the one function that
resolves what a run uses.

A recipe has four sections - ``model``, ``data``, ``train``, ``eval`` - mapped onto the
dataclasses below by ``hrseg.config.from_dict``: unknown keys, wrong types and out-of-range
values are errors that name the file, the line and the key.

Recipes live in one folder per **profile**: ``params/<profile>/<name>.yaml`` (``full``: the
official experiments; ``embedded``: the same rows, small enough for a CPU). Each file is
complete - the file you edit is the file that runs. ``resolve_recipe`` is the only place
where a recipe meets its run-time settings, in this order (later wins, each recorded with
its origin):

1. the recipe file (``params/<profile>/<name>.yaml``, or any path);
2. ``data_root``: sets ``data.root = <data_root>/<folder>`` and ``data.lists =
   data/lists/<folder>`` (a recipe that also sets them is refused, naming both places);
3. the sweep knobs (``Knobs``: ``lr``, ``epochs``, ``batch_size``, ``crop``, ``seed``,
   ``scales``, ``flip``) - DVC stages pass them from ``params.yaml``;
4. ``--set key=value`` overrides.

``hrseg train/evaluate --profile P`` and the DVC stages call it with the same arguments, so
the CLI and the pipeline run the identical recipe; ``hrseg recipe show`` prints the result
with each value's origin. The library never reads the DVC ``params.yaml``.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping

from hrseg.config import ConfigError, apply_overrides, bounded, flatten, from_dict, load_yaml_with_lines, parse_override, to_dict
from hrseg.data.catalog import CUSTOM, DATASETS
from hrseg.data.custom import complete_recipe
from hrseg.models.config import HRNET_CONFIGS, ModelConfig

#: the profile ``hrseg train/evaluate`` use when none is given: the official recipes
DEFAULT_PROFILE = "full"
#: where datasets live when no data_root is given: data/<folder>
DEFAULT_DATA_ROOT = "data"


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "cityscapes"  # a key of hrseg.data.DATASETS
    # The dataset as downloaded, and where ``hrseg prepare`` wrote its .lst files. Unset (the
    # usual case): <data_root>/<folder> and data/lists/<folder>, folder = the dataset's
    # prepared layout (pascal_ctx60 reads the pascal_ctx lists); data_root defaults to "data".
    root: Path | None = None
    lists: Path | None = None
    train_split: str = "train"  # list file <lists>/<train_split>.lst
    val_split: str = "val"
    crop_size: tuple[int, int] = bounded((512, 1024), ge=1)  # (height, width) of training crops
    base_size: int = bounded(2048, ge=1)  # long side before random scaling
    scale_factor: int = bounded(16, ge=0)  # random scale 0.5 + randint(0, scale_factor) / 10
    random_flip: bool = True
    num_workers: int = bounded(4, ge=0)
    val_num_samples: int | None = bounded(None, ge=1)  # official TEST.NUM_SAMPLES: validate on the first N only
    classes: Path | None = None  # dataset custom: its classes.yaml (default <root>/classes.yaml)


@dataclass(frozen=True)
class LossConfig:
    balance_weights: tuple[float, ...] = bounded((0.4, 1.0), ge=0)  # (aux, main) for OCR; (main,) for FCN
    class_weights: tuple[float, ...] | None = bounded(None, ge=0)  # per-class CE weights (Cityscapes recipes)
    use_ohem: bool = False
    ohem_thresh: float = bounded(0.9, gt=0, le=1)
    ohem_keep: int = bounded(131072, ge=1)  # per process
    # Official quirk: with OHEM, the aux CE is averaged over *all* pixels, ignored ones
    # included. False = aux CE averaged over valid pixels only (our default; see README).
    ohem_aux_quirk: bool = False


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = bounded(484, ge=1)
    batch_size: int = bounded(3, ge=1)  # per process (official BATCH_SIZE_PER_GPU)
    accumulate_steps: int = bounded(1, ge=1)  # batches per optimizer step (emulates more processes)
    lr: float = bounded(0.01, gt=0)
    momentum: float = bounded(0.9, ge=0)
    nesterov: bool = False
    weight_decay: float = bounded(5e-4, ge=0)
    poly_power: float = bounded(0.9, ge=0)
    head_lr_mult: float = bounded(1.0, gt=0)  # LR multiplier for parameters matching head_keywords
    head_keywords: tuple[str, ...] = ()
    extra_epochs: int = bounded(0, ge=0)  # official EXTRA_EPOCH: fine-tune on extra_split with a fresh poly
    extra_lr: float = bounded(0.001, gt=0)
    extra_split: str = "trainval"
    loss: LossConfig = field(default_factory=LossConfig)
    pretrained: Path | None = None  # ImageNet (or other) weights for the backbone
    seed: int = 304
    deterministic: bool = False
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    # CPU, float32: OCR's large 3x3 layer (>= 512 outputs, hrseg.models.winograd) runs its
    # forward and input gradient by NNPACK's Winograd kernel (float32 rounding); no other effect
    winograd: bool = True
    sync_bn: bool = True  # convert BN to SyncBatchNorm under DDP on CUDA only
    checkpoint_every: int = bounded(0, ge=0)  # iterations between mid-epoch checkpoints (0: none)
    checkpoint_epochs: int = bounded(1, ge=1)  # epochs between end-of-epoch checkpoints, the last one always (official: every epoch)
    log_every: int = bounded(10, ge=1)  # iterations between loss/lr/images-per-second logs
    validate_every: int = bounded(1, ge=1)  # epochs between validations (official: every epoch)
    nonfinite_loss: Literal["stop", "skip"] = "stop"


@dataclass(frozen=True)
class EvalConfig:
    split: str = "val"  # list file <lists>/<split>.lst
    scales: tuple[float, ...] = bounded((1.0,), gt=0)
    flip: bool = False
    crop_size: tuple[int, int] = bounded((1024, 2048), ge=1)  # (height, width) of the network input / window
    base_size: int = bounded(2048, ge=1)  # long side at scale 1.0
    # ADE20K testval: the official code does not crop the multiple-of-8 padding before
    # resizing the prediction to the label size. True = reproduce that quirk.
    ade20k_pad_quirk: bool = False
    num_overlays: int = bounded(4, ge=0)  # colourised prediction overlays written by ``hrseg evaluate``
    batch_size: int = bounded(1, ge=1)


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


#: Recipe keys each kind of run reads (DVC declares exactly these as the stage's params, so an
#: edit elsewhere in the file does not re-run it). Training validates with eval.batch_size and
#: writes eval.num_overlays overlays; evaluation rebuilds the model and reads its dataset.
TRAIN_KEYS = ("model", "data", "train", "eval.batch_size", "eval.num_overlays")
EVAL_KEYS = ("model", "data.dataset", "data.num_workers", "eval")
#: keys that never come from a pipeline recipe file: data_root decides them
DATA_ROOT_KEYS = ("data.root", "data.lists")


@dataclass(frozen=True)
class Knobs:
    """The sweep knobs of the pipeline (``params.yaml``): ``None`` keeps the recipe's value,
    anything else overrides that key in every recipe that runs (``KNOB_KEYS``)."""

    lr: float | None = bounded(None, gt=0)
    epochs: int | None = bounded(None, ge=1)
    batch_size: int | None = bounded(None, ge=1)
    crop: tuple[int, int] | None = bounded(None, ge=1)
    seed: int | None = None
    scales: tuple[float, ...] | None = bounded(None, gt=0)
    flip: bool | None = None

    def items(self) -> list[tuple[str, Any]]:
        """(knob, value) of the knobs that are set, in declaration order."""
        return [(knob, getattr(self, knob)) for knob in KNOB_KEYS if getattr(self, knob) is not None]


#: knob -> the recipe key it overrides
KNOB_KEYS: Mapping[str, str] = {
    "lr": "train.lr",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "crop": "data.crop_size",
    "seed": "train.seed",
    "scales": "eval.scales",
    "flip": "eval.flip",
}


@dataclass(frozen=True)
class ResolvedRecipe:
    """A validated recipe and, for every dotted key, where its value came from
    (``params/embedded/lip_ocr.yaml:31``, ``params.yaml: lr``, ``--set train.lr=0.02``,
    ``data_root``, or ``default`` for a value no file gives)."""

    recipe: Recipe
    path: Path
    sources: Mapping[str, str]

    def origin(self, key: str) -> str:
        return self.sources.get(key, "default")

    def changed(self) -> list[str]:
        """``key=value`` for every value set by a knob or ``--set`` (not by the file)."""
        flat = flatten(self.recipe.to_dict())
        return [f"{key.rsplit('.', 1)[-1]}={_short(flat[key])}" for key, src in self.sources.items() if src.startswith(_OVERRIDE_ORIGINS) and key in flat]

    def run_name(self, stage: str) -> str:
        """``"train cityscapes_ocr lr=0.02"``: the stage, the recipe and the values set on top of it."""
        return " ".join([stage, self.recipe.name, *self.changed()])

    def table(self) -> list[tuple[str, Any, str]]:
        """(key, value, origin) for every value of the recipe, in field order."""
        return [(key, value, self.origin(key)) for key, value in flatten(self.recipe.to_dict()).items()]


_OVERRIDE_ORIGINS = ("--set", "knob ")


def _short(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(_short(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def recipe_dirs() -> list[Path]:
    """Where recipe names are looked up: ``$HRSEG_RECIPES``, ``./params``, the repo's ``params``
    (each holding one folder per profile)."""
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


def available_profiles() -> list[str]:
    return sorted({p.name for d in recipe_dirs() if d.is_dir() for p in d.iterdir() if p.is_dir() and any(p.glob("*.yaml"))})


def available_recipes(profile: str = DEFAULT_PROFILE) -> list[str]:
    return sorted({p.stem for d in recipe_dirs() for p in (d / profile).glob("*.yaml")})


def resolve_recipe_path(name_or_path: str | os.PathLike, profile: str = DEFAULT_PROFILE) -> Path:
    """A path as given, else ``<recipe dir>/<profile>/<name>.yaml``."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        if not candidate.is_file():
            raise ConfigError(f"{candidate}: recipe file not found")
        return candidate
    if profile not in available_profiles():
        raise ConfigError(f"unknown profile {profile!r}; valid: {', '.join(available_profiles()) or '(none)'} (folders of {', '.join(map(str, recipe_dirs()))})")
    for d in recipe_dirs():
        path = d / profile / f"{name_or_path}.yaml"
        if path.is_file():
            return path
    raise ConfigError(
        f"unknown recipe {str(name_or_path)!r} in profile {profile!r}; looked in "
        f"{', '.join(str(d / profile) for d in recipe_dirs())}. Available: {', '.join(available_recipes(profile)) or '(none)'}"
    )


def _relative(path: Path) -> Path:
    """``path`` relative to the working directory when it lies below it (shorter messages)."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def dataset_folder(dataset: str) -> str:
    """The folder a dataset's files and lists live in: its prepared layout (pascal_ctx60 ->
    pascal_ctx), or the dataset name for one hrseg does not know."""
    spec = DATASETS.get(dataset)
    return spec.layout if spec is not None else dataset


def dataset_paths(folder: str, data_root: str | os.PathLike = DEFAULT_DATA_ROOT) -> tuple[str, str]:
    """``(data.root, data.lists)`` of a dataset folder: ``<data_root>/<folder>`` and
    ``data/lists/<folder>`` (where ``hrseg prepare`` writes the lists in the pipeline)."""
    return f"{data_root}/{folder}", f"data/lists/{folder}"


def resolve_recipe(
    name_or_path: str | os.PathLike,
    *,
    profile: str = DEFAULT_PROFILE,
    data_root: str | os.PathLike | None = None,
    knobs: Knobs = Knobs(),
    overrides: Iterable[str] | Mapping[str, Any] = (),
    data_root_origin: str = "data_root",
    knob_origin: str = "params.yaml",
) -> ResolvedRecipe:
    """The recipe a run uses: file < data_root < knobs < ``--set`` (see the module docstring).

    ``data_root_origin`` / ``knob_origin`` name where those values came from in messages
    (``"params.yaml: data_root"``, ``"--data-root"``)."""
    path = _relative(resolve_recipe_path(name_or_path, profile))
    data, lines = load_yaml_with_lines(path)
    sources: dict[str, str] = {key: f"{path}:{line}" for key, line in lines.items()}
    if "name" not in data:
        data["name"], sources["name"] = path.stem, f"{path} (file name)"

    def where(key: str | None) -> str | None:
        """The origin of ``key`` or of its closest enclosing section."""
        while key:
            if key in sources:
                return sources[key]
            key = key.rpartition(".")[0]
        return None

    base = from_dict(Recipe, data, source=str(path), where=where)
    _check_names(base, str(path), where)
    updates: dict[str, Any] = {}
    folder = dataset_folder(base.data.dataset)
    if data_root is not None:
        for key in DATA_ROOT_KEYS:
            if key in lines:
                raise ConfigError(
                    f"{sources[key]}: {key} is decided by {data_root_origin} ({data_root}) for this run; "
                    f"remove {key} from {path} (the dataset is read from <data_root>/{folder})",
                    key=key,
                )
        updates["data.root"], updates["data.lists"] = dataset_paths(folder, data_root)
        sources["data.root"] = sources["data.lists"] = f"{data_root_origin} ({data_root})"
    for knob, value in knobs.items():
        updates[KNOB_KEYS[knob]] = to_dict(value)
        sources.pop(KNOB_KEYS[knob], None)  # re-inserted: origins of overrides keep their order
        sources[KNOB_KEYS[knob]] = f"knob {knob_origin}: {knob}"
    pairs = overrides.items() if isinstance(overrides, Mapping) else (parse_override(text) for text in overrides)
    for key, value in pairs:
        updates[key] = value
        sources.pop(key, None)
        sources[key] = f"--set {key}={value}"
    for key, default in zip(DATA_ROOT_KEYS, dataset_paths(folder)):  # data/<folder>, data/lists/<folder>
        if key not in lines and key not in updates:
            updates[key], sources[key] = default, "default (data/<folder>)"
    recipe = from_dict(Recipe, apply_overrides(data, updates), source=f"{path} with overrides", where=where)
    _check_names(recipe, f"{path} with overrides", where)
    recipe = _post_validate(recipe, "model.num_classes" in lines or "model.num_classes" in updates, f"{path} with overrides")
    return ResolvedRecipe(recipe, path, sources)


def _check_names(recipe: Recipe, source: str, where) -> None:
    """Names that must be known: backbone and dataset (the error lists the valid ones)."""
    checks = (("model.backbone", recipe.model.backbone, HRNET_CONFIGS), ("data.dataset", recipe.data.dataset, (*DATASETS, CUSTOM)))
    for key, value, valid in checks:
        if value not in valid:
            close = difflib.get_close_matches(value, list(valid), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{where(key) or source}: {key}: unknown {value!r}{hint}; valid: {', '.join(valid)}", key=key)


def recipe_from_dict(data: dict, overrides: Iterable[str] | dict[str, Any] = (), *, source: str | None = None) -> Recipe:
    """Validate ``data`` (errors name ``source``), then apply and validate the overrides
    (errors say they come from the overrides). Unset data paths get their default location."""
    recipe = from_dict(Recipe, data, source=source)
    overrides = dict(overrides) if isinstance(overrides, dict) else list(overrides)
    if overrides:
        data, source = apply_overrides(data, overrides), f"{source or 'recipe'} with overrides"
        recipe = from_dict(Recipe, data, source=source)
    return _post_validate(with_default_paths(recipe), "num_classes" in (data.get("model") or {}), source)


def _post_validate(recipe: Recipe, num_classes_given: bool, source: str | None) -> Recipe:
    """Checks across sections: a custom dataset's ``model.num_classes`` comes from (and must
    agree with) its classes file (``hrseg.data.custom.complete_recipe``)."""
    if recipe.data.dataset == CUSTOM or recipe.data.classes is not None:
        return complete_recipe(recipe, num_classes_given=num_classes_given, source=source)
    return recipe


def with_default_paths(recipe: Recipe) -> Recipe:
    """``data.root`` / ``data.lists`` filled in with data/<folder>, data/lists/<folder> when unset."""
    default_root, default_lists = dataset_paths(dataset_folder(recipe.data.dataset))
    root = recipe.data.root if recipe.data.root is not None else Path(default_root)
    lists = recipe.data.lists if recipe.data.lists is not None else Path(default_lists)
    return dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, root=root, lists=lists))


def load_recipe(name_or_path: str | os.PathLike, overrides: Iterable[str] | Mapping[str, Any] = (), *, profile: str = DEFAULT_PROFILE) -> Recipe:
    """``resolve_recipe(...).recipe``: a recipe of a profile (or a path) with ``--set`` overrides."""
    return resolve_recipe(name_or_path, profile=profile, overrides=overrides).recipe
