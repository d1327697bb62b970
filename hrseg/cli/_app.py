"""The single typer app and the helpers every command shares.

User-facing messages and exit codes live only in ``hrseg.cli``: library code raises
``HrsegError`` subclasses, ``user_errors`` prints them and exits with status 1.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Iterator

import typer
from rich.console import Console

from hrseg.errors import HrsegError

app = typer.Typer(
    name="hrseg",
    help="HRNetV2 / HRNetV2+OCR semantic segmentation: models, data, training, evaluation, pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

console = Console()


@app.callback()
def main() -> None:
    """HRNetV2 / HRNetV2+OCR semantic segmentation (run ``hrseg COMMAND --help``)."""
err_console = Console(stderr=True)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn ``HrsegError`` into ``error: <message>`` on stderr and exit status 1."""
    try:
        yield
    except HrsegError as exc:
        from rich.markup import escape  # messages quote lists like [background, crack]: not markup

        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True, soft_wrap=True)
        raise typer.Exit(1) from None


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the call (not the stream that was
    current when logging was configured), so redirected or captured stderr keeps working."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; ignore
        pass


def setup_logging(verbose: bool = False) -> None:
    """Plain log lines on stderr; rank filtering is done by the engine's logger."""
    handler = _CurrentStderr()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True)
