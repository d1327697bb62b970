"""``hrseg ui``: the MLflow UI on the project's store, on 127.0.0.1, until Ctrl-C."""

from __future__ import annotations

import socket
from typing import Annotated

import typer

from hrseg.cli._app import app, console, setup_logging, user_errors
from hrseg.tracking.ui import serve_ui


@app.command("ui")
def ui_cli(
    uri: Annotated[str | None, typer.Option(help="Backend store (default: $MLFLOW_TRACKING_URI, else sqlite:////<repo>/mlflow.db).")] = None,
    host: Annotated[str, typer.Option(help="Address to bind. Anything but 127.0.0.1/localhost/::1 needs --allow-remote.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="Port to listen on (0: any free port).")] = 5000,
    allow_remote: Annotated[bool, typer.Option("--allow-remote", help="Allow a non-local --host. The UI has NO authentication: prefer an SSH tunnel.")] = False,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the UI in a web browser once it answers.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging, the server's own output and its access log.")] = False,
) -> None:
    """Start the MLflow UI on the project's runs (one worker, no job runner) and print its URL.

    Stops cleanly on Ctrl-C. MLflow's own start-up output is shown only with --verbose
    (and quoted in one line if the server fails). If an MLflow UI on the same store already
    listens on the port (a killed hrseg ui leaves it running), its URL is printed and it is
    reused; any other process on the port is named. From another machine use an SSH tunnel:
    ssh -L 5000:127.0.0.1:5000 <this machine>, then open http://127.0.0.1:5000.
    """
    setup_logging(verbose)

    def announce(url: str, store: str) -> None:
        console.print(f"MLflow UI for {store}\n  {url}   (Ctrl-C to stop)", highlight=False, soft_wrap=True)
        if host in ("127.0.0.1", "localhost", "::1"):
            port_ = url.rsplit(":", 1)[-1]
            console.print(
                f"  from another machine: ssh -L {port_}:127.0.0.1:{port_} {socket.gethostname()}, then open http://127.0.0.1:{port_}",
                highlight=False,
                soft_wrap=True,
            )

    def reused(url: str, store: str, pid: int) -> None:
        console.print(
            f"MLflow UI for {store} is already running (process {pid})\n  {url}   (stop it with: kill {pid})", highlight=False, soft_wrap=True
        )

    with user_errors():
        code = serve_ui(
            uri, host, port, open_browser=open_browser, allow_remote=allow_remote, access_log=verbose, announce=announce, verbose=verbose, reused=reused
        )
    if code:
        raise typer.Exit(code)
