"""``predict``: segment one image or a folder of images with the evaluation arithmetic.

Every image goes through the dataset's testval sizing (``hrseg.data.EvalTransform``: e.g.
LIP resizes to 473x473, ADE20K/COCO-Stuff resize the short side to 520 and pad), then
``multi_scale_predict`` with the chosen scales/flip, then the padding is cropped and the
prediction resized to the image's own size. Outputs in ``out_dir`` (for a folder, the input's
sub-folders are mirrored):

``<name>.png``            palettised PNG: pixel values are class indices, colours the dataset's
                          palette;
``overlays/<name>.png``   the prediction blended over the image.

``<name>`` is the input's path below the folder without its suffix (``a/x.jpg`` -> ``a/x``).
When several inputs of one folder share a stem (``x.png`` and ``x.jpg``), each of them keeps
its suffix instead (``x.png.png``, ``x.jpg.png``), so every input gets its own output; should
that still collide with another input's name, ``-2``, ``-3``, ... is appended in sorted order
(``output_names``).

Where the settings come from, in order: ``recipe`` (model, dataset and eval sizing); else the
recipe stored in an hrseg training checkpoint; else ``dataset`` (the test sizing of the
dataset's HRNet recipe in the ``full`` profile, ``params/full/<dataset>_hrnet.yaml``, with a
single scale and no flip; the model architecture read or inferred from the checkpoint).
``align_corners`` is decided by ``hrseg.evaluation.alignment``: the flag, else the value stored
in our checkpoint or the weight catalogue's for an official file, else ``recipe``'s.

Unreadable images are logged and skipped; the others are still processed. The returned
``PredictReport`` lists both (the CLI exits with status 2 when any image failed).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from hrseg.config import ConfigError, from_dict
from hrseg.data.catalog import get_spec
from hrseg.data.image_io import read_image
from hrseg.data.transforms import EvalTransform
from hrseg.errors import HrsegError
from hrseg.evaluation.alignment import decide_align_corners, with_align_corners
from hrseg.evaluation.evaluate import first_item, protocol_scores, with_protocol
from hrseg.evaluation.inference import finalize_prediction
from hrseg.evaluation.loading import load_model
from hrseg.models.checkpoint import model_config_from_file, read_checkpoint
from hrseg.recipe import DEFAULT_PROFILE, EvalConfig, Recipe, resolve_recipe
from hrseg.runtime.distributed import select_device
from hrseg.runtime.progress import progress
from hrseg.visualize import overlay, save_label_png, save_png

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class PredictError(HrsegError):
    """Inputs or settings that make prediction impossible."""


@dataclass
class PredictReport:
    """What ``predict`` did: written label PNGs and the images that failed (with why)."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def find_images(path: str | os.PathLike) -> tuple[Path, list[Path]]:
    """``(base, images)``: a single file, or every file with an image suffix below a folder
    (recursive, sorted). ``base`` is the folder the output names are relative to."""
    path = Path(path)
    if path.is_file():
        return path.parent, [path]
    if path.is_dir():
        images = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise PredictError(f"{path}: no images found (looked for {', '.join(IMAGE_SUFFIXES)} files, recursively)")
        return path, images
    raise PredictError(f"{path}: no such image file or folder")


def output_names(base: Path, files: Sequence[Path]) -> dict[Path, Path]:
    """The output name (relative, ``.png``) of every input; distinct for distinct inputs (see
    the module docstring for the rule)."""
    relative = {f: f.relative_to(base) for f in files}
    stems: dict[Path, int] = {}
    for rel in relative.values():
        stems[rel.with_suffix("")] = stems.get(rel.with_suffix(""), 0) + 1
    names: dict[Path, Path] = {}
    taken: set[Path] = set()
    for source in sorted(files):
        rel = relative[source]
        stem = rel.with_suffix("")
        name = Path(f"{stem}.png") if stems[stem] == 1 else Path(f"{rel}.png")
        candidate, n = name, 1
        while candidate in taken:
            n += 1
            candidate = name.with_name(f"{name.stem}-{n}.png")
        taken.add(candidate)
        names[source] = candidate
    return names


def dataset_eval_sizing(dataset: str) -> EvalConfig:
    """The test sizing (``crop_size``, ``base_size``) of ``dataset``'s HRNet recipe in the
    ``full`` profile (``params/full/<dataset>_hrnet.yaml``, the official test sizes); the
    other eval settings keep their defaults (single scale, no flip)."""
    name = f"{dataset}_hrnet"
    try:
        row = resolve_recipe(name, profile=DEFAULT_PROFILE).recipe
    except ConfigError as exc:
        raise PredictError(f"--dataset {dataset}: the test sizes come from the recipe {DEFAULT_PROFILE}/{name}, which cannot be used ({exc}); pass --recipe") from None
    if row.data.dataset != dataset:
        raise PredictError(f"--dataset {dataset}: recipe {DEFAULT_PROFILE}/{name} is for dataset {row.data.dataset!r}; pass --recipe")
    return EvalConfig(crop_size=row.eval.crop_size, base_size=row.eval.base_size)


def recipe_for_checkpoint(
    checkpoint: str | os.PathLike,
    *,
    recipe: Recipe | None = None,
    dataset: str | None = None,
    align_corners: bool | None = None,
) -> Recipe:
    """The recipe whose model, dataset and eval sizing ``predict`` uses (see module docstring),
    with ``model.align_corners`` decided for ``checkpoint`` (``align_corners``: the user's flag)."""

    if recipe is not None and dataset is not None and dataset != recipe.data.dataset:
        raise PredictError(f"recipe {recipe.name!r} is for dataset {recipe.data.dataset!r}, not {dataset!r}; pass only one of --recipe/--dataset")
    given = recipe
    data = read_checkpoint(checkpoint)
    if recipe is None:
        stored = data.get("recipe") if data.get("format") == "hrseg" else None
        if isinstance(stored, dict):
            recipe = from_dict(Recipe, stored, source=f"{checkpoint} (stored recipe)")
            if dataset is not None and dataset != recipe.data.dataset:
                raise PredictError(
                    f"{checkpoint} was trained on {recipe.data.dataset!r} but --dataset {dataset!r} was given; "
                    "drop --dataset or pass a matching --recipe"
                )
            log.info("using the recipe stored in %s (%s)", checkpoint, recipe.name)
        elif dataset is None:
            raise PredictError(f"{checkpoint} does not name its dataset: pass --recipe NAME or --dataset NAME")
    decided = decide_align_corners(checkpoint, flag=align_corners, recipe=given, data=data)
    del data
    if recipe is None:
        assert dataset is not None
        spec = get_spec(dataset)
        model_cfg, _ = model_config_from_file(checkpoint)
        if model_cfg.num_classes != spec.num_classes:
            raise PredictError(f"{checkpoint} has {model_cfg.num_classes} classes but dataset {dataset!r} has {spec.num_classes}")
        recipe = Recipe(name=f"predict-{spec.name}", model=model_cfg, eval=dataset_eval_sizing(spec.name))
        recipe = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, dataset=spec.name))
    return with_align_corners(recipe, decided)


class _ImageFiles(Dataset):
    """Decoded + testval-sized images; a failure is returned (not raised) so that one bad
    file never stops the loader."""

    def __init__(self, files: Sequence[Path], transform: Any) -> None:
        self.files = list(files)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:

        path = self.files[index]
        try:
            image = read_image(path)
            sample = self.transform(image, None)
        except Exception as exc:  # noqa: BLE001 - decoding errors of any kind: report and go on
            message = str(exc).removeprefix(f"{path}: ") if isinstance(exc, HrsegError) else f"{type(exc).__name__}: {exc}"
            return {"index": index, "error": message}
        sample["index"] = index
        sample["bgr"] = image
        return sample


def predict(
    inputs: str | os.PathLike,
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    recipe: Recipe | None = None,
    dataset: str | None = None,
    scales: Sequence[float] | None = None,
    flip: bool | None = None,
    batch_size: int | None = None,
    align_corners: bool | None = None,
    device: str | None = None,
    path: str = "auto",
    overlays: bool = True,
    workers: int = 2,
) -> PredictReport:
    """Segment ``inputs`` (an image or a folder) with ``checkpoint``; write label PNGs and
    overlays to ``out_dir``. ``path`` is the ``hrseg.evaluation.inference_paths`` inference path (``auto`` = the
    fastest one that stays within float32 tolerance; ``eager`` = exact); ``batch_size`` the
    network inputs per forward pass (see ``hrseg.evaluation.evaluate.evaluate``)."""

    base, files = find_images(inputs)
    names = output_names(base, files)
    out = Path(out_dir)
    recipe = with_protocol(recipe_for_checkpoint(checkpoint, recipe=recipe, dataset=dataset, align_corners=align_corners), scales=scales, flip=flip, batch_size=batch_size)
    spec = get_spec(recipe.data.dataset, recipe.data.classes)
    ev = recipe.eval
    dev = select_device(device)
    loaded = load_model(recipe, checkpoint, dev, path=path)
    transform = EvalTransform.from_spec(spec, crop_size=ev.crop_size, base_size=ev.base_size)
    loader = DataLoader(_ImageFiles(files, transform), batch_size=1, collate_fn=first_item, num_workers=max(0, workers), pin_memory=dev.type == "cuda")
    log.info(
        "predicting %d image(s) from %s with %s (%s, %s sizing): scales %s, flip %s, inference path %s",
        len(files), inputs, checkpoint, recipe.model.name, spec.name, list(ev.scales), ev.flip, loaded.path,
    )  # fmt: skip
    report = PredictReport()
    for sample in progress(loader, len(files), "predict"):
        source = files[sample["index"]]
        name = names[source]
        if "error" in sample:
            log.warning("skipped %s: %s", source, sample["error"])
            report.failed.append((source, sample["error"]))
            continue
        try:
            scores = protocol_scores(loaded, sample["image"], spec, ev, dev)
            size = tuple(int(v) for v in sample["orig_size"])
            pred = finalize_prediction(scores, size, pad=tuple(int(v) for v in sample["pad"]), align_corners=loaded.model.align_corners)
            labels = pred.cpu().numpy().astype(np.uint8)
            save_label_png(out / name, labels, spec.palette)
            if overlays:
                rgb = np.ascontiguousarray(sample["bgr"][:, :, ::-1])
                save_png(out / "overlays" / name, overlay(rgb, labels, spec.palette, ignore_label=spec.ignore_label))
        except torch.cuda.OutOfMemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad image must not stop a folder run
            message = str(exc) if isinstance(exc, HrsegError) else f"{type(exc).__name__}: {exc}"
            log.warning("failed on %s: %s", source, message)
            report.failed.append((source, message))
            continue
        report.written.append(out / name)
    log.info("wrote %d prediction(s) to %s; %d image(s) failed", len(report.written), out, len(report.failed))
    return report
