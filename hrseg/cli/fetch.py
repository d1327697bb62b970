"""``hrseg fetch list|get|verify``: the pretrained-weight catalogue and its downloader.

A sub-app, so that ``list`` and ``verify`` can never be mistaken for weight names. The work is
done by ``hrseg.weights.download`` (``fetch_many``, ``verify``); these commands parse options and print.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Annotated

import typer

from hrseg.cli._app import HrsegTyper, app, check_format, console, print_table, setup_logging, user_errors
from hrseg.errors import HrsegError
from hrseg.weights.catalogue import CATALOGUE
from hrseg.weights.download import fetch_many, verify

fetch_app = HrsegTyper(
    name="fetch",
    help="Pretrained weights: list the catalogue, download (resumable, verified), verify.",
    no_args_is_help=True,
)
app.add_typer(fetch_app, name="fetch")

_KINDS = ("imagenet", "segmentation")


def _ensure_logging() -> None:
    """Plain log lines on stderr unless the caller (a test, an embedding program) set logging up."""
    if not logging.getLogger().handlers:
        setup_logging()


@fetch_app.command("list")
def list_cli(
    kind: Annotated[str | None, typer.Option(help="Only 'imagenet' or only 'segmentation' entries.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table (plain text when piped), tsv or json (every field).")] = "table",
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
) -> None:
    """Show the catalogue: name, kind, dataset, model, expected result, file name."""
    with user_errors():
        fmt = "json" if as_json else fmt
        check_format(fmt)
        if kind is not None and kind not in _KINDS:
            raise HrsegError(f"--kind {kind!r}: expected one of {', '.join(_KINDS)}")
    entries = [e for e in CATALOGUE.values() if kind is None or e.kind == kind]
    rows = [
        [e.name, e.kind, e.dataset, e.model, str(e.expected) if e.expected else "-", e.filename, "auto" if e.urls else "by hand"]
        for e in entries
    ]
    print_table(
        ["name", "kind", "dataset", "model", "expected", "file", "download"],
        rows,
        fmt=fmt,
        caption="download: 'auto' = confirmed URL; 'by hand' = get it yourself, then --from PATH",
        records=[{**dataclasses.asdict(e), "model": e.model} for e in entries],
    )


@fetch_app.command("get")
def get_cli(
    names: Annotated[list[str], typer.Argument(help="Catalogue names (see 'hrseg fetch list').")],
    dest: Annotated[Path, typer.Option(help="Directory for the weights.")] = Path("pretrained"),
    mirror: Annotated[
        list[str] | None,
        typer.Option(help="Directory, file:// or http(s):// base URL holding the files by name; repeatable, tried first."),
    ] = None,
    sha256: Annotated[str | None, typer.Option(help="Pin the expected sha256 (one NAME only).")] = None,
    from_path: Annotated[
        str | None, typer.Option("--from", help="Import this downloaded file (or URL) instead (one NAME only).")
    ] = None,
    retries: Annotated[int, typer.Option(min=0, help="Extra attempts per HTTP source after a transient failure.")] = 3,
    timeout: Annotated[float, typer.Option(help="Network timeout in seconds.")] = 30.0,
    progress: Annotated[bool, typer.Option(help="Progress bar on a terminal, log lines otherwise.")] = True,
) -> None:
    """Download, verify (sha256) and place weights; prints the path of each file.

    Sources: --from, else each --mirror, then $HRSEG_WEIGHTS_MIRROR, then the catalogue URLs.
    """
    _ensure_logging()
    with user_errors():
        paths = fetch_many(
            names, dest, mirrors=mirror or (), sha256=sha256, source=from_path,
            retries=retries, timeout=timeout, progress=progress,
        )
    for path in paths:
        console.print(str(path), highlight=False, soft_wrap=True)


@fetch_app.command("verify")
def verify_cli(
    dest: Annotated[Path, typer.Option(help="Directory holding the weights.")] = Path("pretrained"),
    fmt: Annotated[str, typer.Option("--format", "-f", help="table (plain text when piped), tsv or json.")] = "table",
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
) -> None:
    """Re-hash the weights in DEST against the catalogue and the recorded hashes.

    Exit status 1 if any file's sha256 differs from what is expected.
    """
    with user_errors():
        fmt = "json" if as_json else fmt
        check_format(fmt)
        results = verify(dest)
    if not results and fmt == "table":
        console.print(f"no weight files in {dest}", highlight=False)
    else:
        rows = [[r.filename, r.name or "-", r.status, r.actual or "-", r.basis] for r in results]
        print_table(
            ["file", "name", "status", "sha256", "expected from"],
            rows,
            fmt=fmt,
            title=f"weights in {dest}",
            records=[dataclasses.asdict(r) for r in results],
        )
    if any(r.status == "mismatch" for r in results):
        raise typer.Exit(1)
