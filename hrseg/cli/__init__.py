"""The ``hrseg`` command: one typer app, one module per command. The command table
(``hrseg.cli._app.COMMANDS``) names each command's module, imported only when that command runs."""

from hrseg.cli._app import app, run

__all__ = ["app", "run"]
