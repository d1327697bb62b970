"""What ``hrseg prepare`` does alike for every dataset (the built-in layouts in
``hrseg.data.prepare``, your own in ``hrseg.data.custom``): check the output folder first,
decode the pairs on a thread pool, word the problems, move generated label folders into place
in one step; the name of the ``summary.json`` both write."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from hrseg.data.errors import DatasetError

logger = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")
#: the summary ``hrseg prepare`` writes next to the lists
SUMMARY_NAME = "summary.json"


def describe_values(values: Iterable[int]) -> str:
    """``0..33`` for a contiguous set, else the sorted list."""
    values = sorted(values)
    if values and values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}..{values[-1]}"
    return str(values)


def short_message(message: str, root: Path) -> str:
    """``message`` with the paths below ``root`` made relative to it (shorter problem lists)."""
    return message.replace(f"{root}{os.sep}", "")


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


def check_output_folder(out: Path) -> None:
    """Raise ``DatasetError`` (naming ``out`` and the fix) unless list files can be written
    in ``out``; done before any image is decoded, and leaves nothing behind (``out`` itself
    is created only when the lists are written)."""
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


def swap_in_folder(new: Path, target: Path) -> None:
    """Replace the directory ``target`` by ``new`` (the old one is removed after the move)."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    if new.is_dir():
        new.rename(target)
    else:
        target.mkdir(parents=True)
    shutil.rmtree(old, ignore_errors=True)
