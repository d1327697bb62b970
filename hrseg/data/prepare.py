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
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from hrseg import io as hio
from hrseg.data import pascal_ctx
from hrseg.data.catalog import get_layout
from hrseg.data.errors import DatasetCheckError, DatasetError
from hrseg.data.image_io import read_image, read_label
from hrseg.data.layout import Discovery, Sample
from hrseg.data.lists import write_list

logger = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")
SUMMARY_NAME = "summary.json"


@dataclass
class PairCheck:
    problems: list[str] = field(default_factory=list)
    size: tuple[int, int] | None = None  # image (H, W)
    values: tuple[int, ...] = ()  # raw label values present


def describe_values(values: Iterable[int]) -> str:
    """``0..33`` for a contiguous set, else the sorted list."""
    values = sorted(values)
    if values and values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}..{values[-1]}"
    return str(values)


def _short(message: str, root: Path) -> str:
    return message.replace(f"{root}{os.sep}", "")


def check_pair(root: Path, sample: Sample, raw_values: frozenset[int], dataset: str) -> PairCheck:
    """Decode one image (and label) and report everything wrong with it."""
    result = PairCheck()
    try:
        image = read_image(root / sample.image)
        result.size = image.shape[:2]
    except DatasetError as exc:
        result.problems.append(_short(str(exc), root))
    if sample.label is None:
        return result
    try:
        label = read_label(root / sample.label)
    except DatasetError as exc:
        result.problems.append(_short(str(exc), root))
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


def parallel_map(fn: Callable[[T], R], items: Sequence[T], *, workers: int | None, description: str) -> list[R]:
    """``[fn(x) for x in items]`` on a thread pool (decoding releases the GIL), with a rich
    progress bar on a TTY and a log line every ~10% otherwise."""
    workers = max(1, workers or min(8, os.cpu_count() or 1))
    results: list[R] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        iterator = pool.map(fn, items)
        if sys.stderr.isatty() and items:
            from rich.progress import track

            return list(track(iterator, total=len(items), description=description, transient=True))
        step = max(1, len(items) // 10)
        for i, result in enumerate(iterator, start=1):
            results.append(result)
            if i % step == 0 or i == len(items):
                logger.info("%s: %d/%d", description, i, len(items))
    return results


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


def check_output_folder(out: Path) -> None:
    """Raise ``DatasetError`` (naming ``out`` and the fix) unless list files can be written
    in ``out``; done before any image is decoded, and leaves nothing behind (``out`` itself
    is created only when the lists are written)."""
    import tempfile

    if out.exists() and not out.is_dir():
        raise DatasetError(f"--out {out}: is a file, expected a folder for the list files; pass another --out or remove the file")
    existing = next(p for p in (out, *out.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise DatasetError(f"--out {out}: {existing} is a file, so the folder cannot be created; pass another --out")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".hrseg-write-check-"):
            pass
    except OSError as exc:
        where = "" if existing == out else f" (in {existing})"
        raise DatasetError(f"--out {out}: cannot write there{where}: {exc.strerror or exc}; pass a writable --out folder") from None


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
    if name == "custom":
        from hrseg.data.custom import prepare_custom

        return prepare_custom(root, out, classes=classes, class_weights=class_weights, workers=workers)
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
            result.problems.append(_short(str(exc), root))
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
        labels, old = out / pascal_ctx.LABEL_DIR, out / ".labels.old"
        shutil.rmtree(old, ignore_errors=True)
        if labels.exists():
            labels.rename(old)
        (staging / pascal_ctx.LABEL_DIR).rename(labels)
        shutil.rmtree(old, ignore_errors=True)
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
