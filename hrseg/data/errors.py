"""Errors raised by ``hrseg.data``: all are ``HrsegError`` subclasses, so the CLI prints them
and exits with status 1."""

from __future__ import annotations

from hrseg.errors import HrsegError


class DatasetError(HrsegError):
    """A dataset name, list file, image or label is missing, unreadable or invalid."""


class LayoutError(DatasetError):
    """A dataset root does not have the on-disk layout of the dataset it was given as."""


class DatasetCheckError(DatasetError):
    """``prepare`` found problems in the dataset; nothing was written.

    ``problems`` holds every problem found (the message lists the first ``shown``)."""

    def __init__(self, dataset: str, root: str, problems: list[str], shown: int = 20) -> None:
        self.problems = list(problems)
        head = f"{dataset}: {len(problems)} problem(s) in {root}; no list was written"
        lines = [f"  - {p}" for p in problems[:shown]]
        if len(problems) > shown:
            lines.append(f"  ... and {len(problems) - shown} more ({len(problems)} in total)")
        super().__init__("\n".join([head + ":"] + lines))
