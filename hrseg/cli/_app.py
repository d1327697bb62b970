"""The single typer app, its command table, and the helpers every command shares.

``COMMANDS`` declares every command once: its name, the module that registers it on ``app``,
and its one-line help. ``hrseg --help`` lists the table without importing any command module;
``hrseg CMD ...`` (``--help`` included) imports only CMD's module (``HrsegGroup``), so a command
pays for the libraries it uses and no other (torch alone is about 2 s). Inside a command module
every import is at module level, except the library function of a command that does tensor
work (train, evaluate, predict, export): it is imported in the command's body, so that the
command's ``--help`` and typer's checking of its options import no torch.

User-facing messages and exit codes live only in ``hrseg.cli``: library code raises
``HrsegError`` subclasses, ``user_errors`` prints them and exits with status 1.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import json
import logging
import re
import sys
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperArgument, TyperCommand, TyperGroup

from hrseg.errors import HrsegError

#: typer's type labels in help records: ``<str>``, ``<list[str]>``, ``<path>`` ...
_TYPE_LABEL = re.compile(r" <[^<>]*>$")


_CLICK_NAMES = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "bool": "BOOLEAN", "path": "PATH", "int range": "INTEGER RANGE", "float range": "FLOAT RANGE"}


def _metavar(param: Any, ctx: Any) -> str:
    """What click writes for an option's value or an argument: TEXT, INTEGER, PATH, [a|b]."""
    if param.metavar is not None:
        return param.metavar
    if isinstance(param, TyperArgument):
        return param.name.upper()
    label = param.display_type(ctx).strip("<>")
    if label.startswith("list[") and label.endswith("]"):  # a repeatable option takes one value at a time
        label = label[len("list[") : -1]
    if "|" in label:
        return f"[{label}]"
    return _CLICK_NAMES.get(label, label.upper())


class PlainHelpCommand(TyperCommand):
    """Help as click writes it, wrapped to the terminal (80 columns when piped), with click's
    metavars (``--out PATH``, ``RECIPE``) instead of typer's ``<path>`` and ``{recipe}``."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = _metavar(param, ctx) + ("..." if param.nargs != 1 else "")
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments, options = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            name, text = record
            if isinstance(param, TyperArgument):
                arguments.append((_metavar(param, ctx), text))
            else:
                options.append((_TYPE_LABEL.sub(f" {_metavar(param, ctx)}", name), text))
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


class PlainHelpGroup(TyperGroup):
    """Command lists with each command's whole first sentence (wrapped, never cut to "...")."""

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = [row for row in (self.command_row(ctx, name) for name in self.list_commands(ctx)) if row is not None]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def command_row(self, ctx: Any, name: str) -> tuple[str, str] | None:
        """``(name, one-line help)`` of a command in the list, or None for a hidden one."""
        command = self.get_command(ctx, name)
        if command is None or command.hidden:
            return None
        return name, command.get_short_help_str(limit=10_000)


@dataclass(frozen=True)
class LazyCommand:
    """A command of ``hrseg``: the module whose import registers it on ``app``, the help line
    ``hrseg --help`` shows (a test checks it is the command's own first sentence), and whether
    its work imports torch (``warm``: then ``run`` starts it through a warm interpreter)."""

    module: str
    help: str
    warm: bool = False


#: Every ``hrseg`` command, in the order ``hrseg --help`` lists them.
COMMANDS: Mapping[str, LazyCommand] = MappingProxyType(
    {
        "evaluate": LazyCommand("hrseg.cli.evaluate", "Evaluate CHECKPOINT with the official test protocol and write the results to --out.", warm=True),
        "export": LazyCommand("hrseg.cli.export", "Export a segmentation checkpoint to ONNX.", warm=True),
        "info": LazyCommand("hrseg.cli.info", "Print parameters, multiply-adds and FLOPs."),
        "predict": LazyCommand("hrseg.cli.predict", "Write a palettised label PNG (pixel value = class index) and an overlay per image.", warm=True),
        "prepare": LazyCommand("hrseg.cli.prepare", "Check every image/label pair, then write the official-format list files."),
        "runs": LazyCommand("hrseg.cli.runs", "Print a comparison table of the training and evaluation runs, newest first."),
        "synth": LazyCommand("hrseg.cli.synth", "Write tiny synthetic datasets in the exact on-disk formats of the real ones."),
        "train": LazyCommand("hrseg.cli.train", "Train RECIPE and write checkpoint.pth, best.pth, final.pth, metrics.json and log.csv to --out.", warm=True),
        "ui": LazyCommand("hrseg.cli.ui", "Start the MLflow UI on the project's runs (one worker, no job runner) and print its URL."),
        "fetch": LazyCommand("hrseg.cli.fetch", "Pretrained weights: list the catalogue, download (resumable, verified), verify."),
        "recipe": LazyCommand("hrseg.cli.recipe", "Recipes: list them, show one resolved with where each value comes from."),
    }
)


class HrsegGroup(PlainHelpGroup):
    """The top-level group: lists ``COMMANDS`` without importing them, imports a command's
    module when that command is looked up (to run it or show its help), and suggests close
    names for a typo among all of them."""

    def __init__(self, *, suggest_commands: bool = True, **kwargs: Any) -> None:
        super().__init__(suggest_commands=False, **kwargs)  # typer would suggest among the loaded commands only
        self.suggest_all = suggest_commands

    def list_commands(self, ctx: Any) -> list[str]:
        return list(dict.fromkeys([*COMMANDS, *super().list_commands(ctx)]))

    def get_command(self, ctx: Any, name: str) -> Any:
        if name not in self.commands and name in COMMANDS:
            importlib.import_module(COMMANDS[name].module)  # registers the command on ``app``
            loaded = typer.main.get_command(app).commands  # the click commands of everything registered so far
            if name in loaded:
                self.add_command(loaded[name], name)
        return super().get_command(ctx, name)

    def command_row(self, ctx: Any, name: str) -> tuple[str, str] | None:
        if name in COMMANDS and name not in self.commands:  # not loaded: the table's help, no import
            return name, COMMANDS[name].help
        return super().command_row(ctx, name)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name = args[0] if args else ""
        if self.suggest_all and not name.startswith("-") and name not in self.list_commands(ctx):
            matches = difflib.get_close_matches(name, self.list_commands(ctx))
            if matches:  # click's message, with typer's suggestion
                ctx.fail(f"No such command {name!r}. Did you mean {', '.join(repr(m) for m in matches)}?")
        return super().resolve_command(ctx, args)


class HrsegTyper(typer.Typer):
    """``typer.Typer`` with plain click help (no rich panels, which cut columns when piped)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", PlainHelpGroup)
        kwargs.setdefault("rich_markup_mode", None)
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["cls"] = kwargs.get("cls") or PlainHelpCommand
        return super().command(*args, **kwargs)


app = HrsegTyper(
    cls=HrsegGroup,
    name="hrseg",
    help="HRNetV2 / HRNetV2+OCR semantic segmentation: models, data, training, evaluation, pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

console = Console()
err_console = Console(stderr=True)

#: ``--format`` values of the commands that print a table.
TABLE_FORMATS = ("table", "tsv", "json")


def check_format(fmt: str, valid: Sequence[str] = TABLE_FORMATS) -> None:
    if fmt not in valid:
        raise HrsegError(f"unknown --format {fmt!r}; expected one of {', '.join(valid)}")


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Collection[str] = ()) -> str:
    """Aligned columns of full width, two spaces apart, nothing cut (for pipes and files)."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if h in right else c.ljust(w) for c, w, h in zip(cells, widths, headers)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]) + "\n"


def print_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    fmt: str = "table",
    right: Collection[str] = (),
    title: str | None = None,
    caption: str | None = None,
    records: Sequence[dict[str, Any]] | None = None,
) -> None:
    """Print rows of text cells on stdout.

    ``table``: a rich table on a terminal; when stdout is not a terminal, plain aligned text of
    full width (title and caption as lines of their own), so pipes and files get every
    character. ``tsv``: a header line and tab-separated rows. ``json``: ``records`` (default:
    one object per row, keyed by header)."""
    check_format(fmt)
    if fmt == "json":
        data = list(records) if records is not None else [dict(zip(headers, r)) for r in rows]
        typer.echo(json.dumps(data, indent=2))
    elif fmt == "tsv":
        clean = [[c.replace("\t", " ").replace("\n", " ") for c in r] for r in [list(headers), *rows]]
        typer.echo("".join("\t".join(r) + "\n" for r in clean), nl=False)
    elif console.is_terminal:
        table = Table(title=title, caption=caption)
        for header in headers:
            table.add_column(header, justify="right" if header in right else "left", overflow="fold")  # wrap, never cut
        for r in rows:
            table.add_row(*r)
        console.print(table)
    else:
        text = plain_table(headers, rows, right)
        typer.echo((f"{title}\n" if title else "") + text + (f"{caption}\n" if caption else ""), nl=False)


@app.callback()
def main() -> None:
    """HRNetV2 / HRNetV2+OCR semantic segmentation (run ``hrseg COMMAND --help``)."""


def run() -> None:
    """The ``hrseg`` program (the console script and ``python -m hrseg.cli``). A command whose
    work imports torch (``LazyCommand.warm``) is first handed to a warm-start server
    (``hrseg.runtime.warm``: a process forked from one that has torch imported runs it, with
    this process's arguments, directory, environment and terminal) when one is up or can be
    started; otherwise, and for ``--help``, it runs here. ``app`` itself (what tests invoke)
    never hands anything over."""
    args = sys.argv[1:]
    name = next((arg for arg in args if not arg.startswith("-")), "")
    if name in COMMANDS and COMMANDS[name].warm and "--help" not in args:
        from hrseg.runtime.warm import run_warm  # sockets, pickle, ...: only for these commands (about 30 ms)

        run_warm()
    app(prog_name="hrseg")


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn ``HrsegError`` into ``error: <message>`` on stderr and exit status 1."""
    try:
        yield
    except HrsegError as exc:
        # escape: messages quote lists like [background, crack], which are not markup
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
