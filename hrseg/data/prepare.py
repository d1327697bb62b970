"""``hrseg prepare``: verify a dataset and write its list files and a summary.

Every image/label pair is checked first - the files exist and decode, image and label sizes
agree, label values are in the dataset's raw domain. All problems are collected and reported
together (``DatasetCheckError``); only when there are none are the lists written, each
atomically, followed by ``summary.json`` (samples per split, image size histogram, label
values seen). PASCAL-Context additionally decodes ``trainval_merged.json`` into 60-class index
PNGs under ``<out>/labels/`` (staged and moved into place only when every image is valid).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import hrseg.data.custom as custom
import hrseg.data.pascal_ctx as pascal_ctx
from hrseg import io as hio
from hrseg.data.catalog import get_layout
from hrseg.data.errors import DatasetCheckError, DatasetError
from hrseg.data.image_io import read_image, read_label
from hrseg.data.layout import Discovery, Sample
from hrseg.data.lists import write_list
from hrseg.data.verify import SUMMARY_NAME, check_output_folder, describe_values, parallel_map, short_message, swap_in_folder

logger = logging.getLogger(__name__)


@dataclass
class PairCheck:
    problems: list[str] = field(default_factory=list)
    size: tuple[int, int] | None = None  # image (H, W)
    values: tuple[int, ...] = ()  # raw label values present


def check_pair(root: Path, sample: Sample, raw_values: frozenset[int], dataset: str) -> PairCheck:
    """Decode one image (and label) and report everything wrong with it."""
    result = PairCheck()
    try:
        image = read_image(root / sample.image)
        result.size = image.shape[:2]
    except DatasetError as exc:
        result.problems.append(short_message(str(exc), root))
    if sample.label is None:
        return result
    try:
        label = read_label(root / sample.label)
    except DatasetError as exc:
        result.problems.append(short_message(str(exc), root))
        return result
    present = np.flatnonzero(np.bincount(label.ravel(), minlength=256))
    result.values = tuple(int(v) for v in present)
    outside = [v for v in result.values if v not in raw_values]
    if outside:
        result.problems.append(
            f"{sample.label}: label values {outside} are outside the {dataset} domain (expected {describe_values(raw_values)})"
        )
    if result.size is not None and label.shape != result.size:
        result.problems.append(
            f"{sample.label}: label is {label.shape[0]}x{label.shape[1]} but image {sample.image} is {result.size[0]}x{result.size[1]}"
        )
    return result


def _summary(dataset: str, found: Discovery, checks: dict[str, list[PairCheck]], lists: dict[str, int]) -> dict:
    splits = {}
    for split, samples in found.splits.items():
        sizes = Counter(f"{c.size[0]}x{c.size[1]}" for c in checks[split] if c.size)
        values = sorted({v for c in checks[split] for v in c.values})
        splits[split] = {"count": len(samples), "image_sizes": dict(sorted(sizes.items())), "label_values": values}
    return {"dataset": dataset, "splits": splits, "lists": {f"{name}.lst": n for name, n in sorted(lists.items())}}


def _write_lists(out: Path, layout, found: Discovery) -> dict[str, int]:
    lines = {split: [layout.format_line(split, s) for s in samples] for split, samples in found.splits.items()}
    for derived, parts in getattr(layout, "DERIVED_LISTS", {}).items():
        if all(p in lines for p in parts):
            lines[derived] = [line for p in parts for line in lines[p]]
    for name, entries in lines.items():
        write_list(out / f"{name}.lst", entries)
    return {name: len(entries) for name, entries in lines.items()}


def prepare_dataset(
    name: str,
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    workers: int | None = None,
    classes: str | os.PathLike | None = None,
    class_weights: str | None = None,
) -> dict:
    """Verify dataset ``name`` at ``root``; write ``<out>/<split>.lst`` and ``<out>/summary.json``.

    Returns the summary. Raises ``LayoutError`` when ``root`` does not look like the dataset,
    ``DatasetCheckError`` listing every problem (nothing is written then). ``classes`` and
    ``class_weights`` are for ``custom`` (``hrseg.data.custom.prepare_custom``)."""
    if name == custom.NAME:
        return custom.prepare_custom(root, out, classes=classes, class_weights=class_weights, workers=workers)
    if classes is not None or class_weights is not None:
        raise DatasetError(f"--classes / --class-weights are for custom datasets; {name!r} has its own classes")
    layout = get_layout(name)
    root, out = Path(root), Path(out)
    check_output_folder(out)
    if name == pascal_ctx.NAME:
        return _prepare_pascal(root, out, workers=workers)
    found = layout.discover(root)
    items = [(split, s) for split, samples in found.splits.items() for s in samples]
    results = parallel_map(lambda item: check_pair(root, item[1], layout.RAW_VALUES, name), items, workers=workers, description=f"checking {name}")
    problems = found.problems + [p for r in results for p in r.problems]
    if problems:
        raise DatasetCheckError(name, str(root), problems)
    checks: dict[str, list[PairCheck]] = {split: [] for split in found.splits}
    for (split, _), result in zip(items, results):
        checks[split].append(result)
    try:
        counts = _write_lists(out, layout, found)
        summary = _summary(name, found, checks, counts)
        hio.write_json(out / SUMMARY_NAME, summary)
    except OSError as exc:
        raise DatasetError(f"--out {out}: writing the lists failed ({exc.strerror or exc}: {exc.filename or out}); free space or pass another --out") from None
    logger.info("%s: wrote %s to %s", name, ", ".join(summary["lists"]), out)
    return summary


def _prepare_pascal(root: Path, out: Path, *, workers: int | None) -> dict:
    voc = pascal_ctx.find_voc_root(root)
    detail = pascal_ctx.load_detail(voc / pascal_ctx.JSON_NAME)
    found, records = pascal_ctx.discover(root, detail)
    staging = out / ".labels.staging"
    shutil.rmtree(staging, ignore_errors=True)
    palette = [c for rgb in pascal_ctx.SPEC_60.palette for c in rgb]

    def check(item: tuple[str, Sample, dict]) -> PairCheck:
        _, sample, record = item
        result = PairCheck()
        try:
            image = read_image(root / sample.image)
            result.size = image.shape[:2]
            if result.size != (int(record["height"]), int(record["width"])):
                result.problems.append(
                    f"{sample.image}: image is {result.size[0]}x{result.size[1]} but {pascal_ctx.JSON_NAME} says "
                    f"{record['height']}x{record['width']}"
                )
        except DatasetError as exc:
            result.problems.append(short_message(str(exc), root))
        mask, problems = pascal_ctx.semantic_mask(record, detail.annotations.get(record["image_id"], []))
        result.problems += problems
        index, bad = pascal_ctx.to_index(mask)
        if bad:
            result.problems.append(
                f"{record['file_name']} (image_id {record['image_id']}): mask values {bad} are not among the 60 "
                f"PASCAL-Context category ids"
            )
        result.values = tuple(int(v) for v in np.unique(index))
        if not result.problems:
            from PIL import Image

            png = Image.fromarray(index)
            png.putpalette(palette)  # L -> P: index values kept, colours for viewing
            hio.write_image(staging / sample.label, png)
        return result

    items = [(split, s, r) for split in found.splits for s, r in zip(found.splits[split], records[split])]
    try:
        results = parallel_map(check, items, workers=workers, description="decoding pascal_ctx")
        problems = found.problems + [p for r in results for p in r.problems]
        if problems:
            raise DatasetCheckError(pascal_ctx.NAME, str(root), problems)
        swap_in_folder(staging / pascal_ctx.LABEL_DIR, out / pascal_ctx.LABEL_DIR)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    checks: dict[str, list[PairCheck]] = {split: [] for split in found.splits}
    for (split, _, _), result in zip(items, results):
        checks[split].append(result)
    counts = _write_lists(out, pascal_ctx, found)
    summary = _summary(pascal_ctx.NAME, found, checks, counts)
    hio.write_json(out / SUMMARY_NAME, summary)
    logger.info("%s: wrote %s and %d label PNGs to %s", pascal_ctx.NAME, ", ".join(summary["lists"]), len(items), out)
    return summary
