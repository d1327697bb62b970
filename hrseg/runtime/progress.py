"""Progress display, one home for both kinds: ``progress`` over the images of an evaluation or
a prediction, ``TrainingProgress`` over the epochs and iterations of training. A rich bar on a
TTY, plain log lines otherwise (pipes, files, DVC stages)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

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


class TrainingProgress:
    """Training: a rich progress bar per epoch on a TTY (rank 0), plain log lines every
    ``train.log_every`` iterations otherwise."""

    def __init__(self, enabled: bool, total_epochs: int) -> None:
        self.total_epochs = total_epochs
        self.bar = None
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.bar.start()
        self.enabled = enabled
        self.task = None
        # log lines go through rich's stderr proxy while the bar is live (printed above it)
        self._swapped: list[tuple[logging.StreamHandler, Any]] = []
        if self.bar is not None and sys.stderr is not sys.__stderr__:
            for handler in logging.getLogger().handlers:
                if isinstance(handler, logging.StreamHandler) and handler.stream is sys.__stderr__:
                    self._swapped.append((handler, handler.setStream(sys.stderr)))

    def start_epoch(self, epoch: int, steps: int, done: int) -> None:
        if self.bar is not None:
            if self.task is not None:
                self.bar.remove_task(self.task)
            self.task = self.bar.add_task(f"epoch {epoch + 1}/{self.total_epochs}", total=steps, completed=done, stats="")

    def update(self, epoch: int, step: int, steps: int, loss: float, lr: float, ips: float, *, log_line: bool) -> None:
        stats = f"loss {loss:.4f} lr {lr:.3e} {ips:.1f} img/s"
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, completed=step + 1, stats=stats)
        elif self.enabled and log_line:
            log.info("epoch %d/%d iter %d/%d %s", epoch + 1, self.total_epochs, step + 1, steps, stats)

    def close(self) -> None:
        if self.bar is not None:
            for handler, stream in self._swapped:
                handler.setStream(stream)
            self._swapped = []
            self.bar.stop()
            self.bar = None
