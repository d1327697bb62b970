"""Progress over images: a rich bar on a TTY, plain log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


def progress(items: Iterable[T], total: int, description: str, *, enabled: bool = True) -> Iterator[T]:
    """Yield ``items``; on a TTY show a rich progress bar, otherwise log a line with the
    images/s every ~5 % of ``total``. ``enabled=False`` (non-zero ranks) stays silent."""
    if not enabled:
        yield from items
        return
    if sys.stderr.isatty():
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*columns, transient=False) as bar:
            task = bar.add_task(description, total=total)
            for item in items:
                yield item
                bar.advance(task)
        return
    every = max(1, total // 20)
    start = time.perf_counter()
    for i, item in enumerate(items, 1):
        yield item
        if i % every == 0 or i == total:
            elapsed = time.perf_counter() - start
            log.info("%s: %d/%d images, %.2f images/s", description, i, total, i / elapsed if elapsed > 0 else 0.0)
