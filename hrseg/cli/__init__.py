"""The ``hrseg`` command: one typer app, one module per command (importing a module
registers its command on the app)."""

from hrseg.cli import evaluate, export, fetch, info, predict, prepare, recipe, runs, synth, train, ui  # noqa: F401
from hrseg.cli._app import app

__all__ = ["app"]
