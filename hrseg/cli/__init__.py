"""The ``hrseg`` command: one typer app, one module per command."""

from hrseg.cli import info  # noqa: F401  (registers commands)
from hrseg.cli import prepare, synth  # noqa: F401
from hrseg.cli import fetch  # noqa: F401  (registers the "fetch" sub-app)
from hrseg.cli import train  # noqa: F401  (registers "train")
from hrseg.cli import export  # noqa: F401  (registers "export")
from hrseg.cli import evaluate, predict  # noqa: F401  (registers "evaluate" and "predict")
from hrseg.cli import runs, ui  # noqa: F401  (registers "runs" and "ui")
from hrseg.cli._app import app

__all__ = ["app"]
