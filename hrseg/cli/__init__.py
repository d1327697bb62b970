"""The ``hrseg`` command: one typer app, one module per command."""

from hrseg.cli import info  # noqa: F401  (registers commands)
from hrseg.cli._app import app

__all__ = ["app"]
