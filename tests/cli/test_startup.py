"""Start-up: ``hrseg --help`` imports no command module, a command imports only its own, and
the light commands never import torch or mlflow (fresh interpreters, as a user's shell starts them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from hrseg.cli import app
from hrseg.cli._app import COMMANDS

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "mlflow", "pandas", "matplotlib", "cv2")

#: runs ``hrseg ARGS...`` in this interpreter, then prints which heavy and which command modules it imported
PROBE = """
import json, sys
from hrseg.cli import app
try:
    app(sys.argv[1:], prog_name="hrseg")
except SystemExit:
    pass
print(json.dumps({"heavy": sorted(m for m in %r if m in sys.modules),
                  "commands": sorted(m.rsplit(".", 1)[1] for m in sys.modules if m.startswith("hrseg.cli.") and m != "hrseg.cli._app")}))
""" % (HEAVY,)


def probe(*args: str) -> tuple[dict, str]:
    """(imports, output) of ``hrseg ARGS...`` in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), "COLUMNS": "80"}
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    *output, last = proc.stdout.splitlines()
    return json.loads(last), "\n".join(output)


def test_import_hrseg_cli_imports_no_heavy_library():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    code = f"import sys, hrseg.cli; print([m for m in {HEAVY!r} if m in sys.modules])"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=True)
    assert proc.stdout.strip() == "[]"


def test_help_lists_every_command_without_importing_one():
    imported, text = probe("--help")
    assert imported == {"heavy": [], "commands": []}
    listed = " ".join(text.split("Commands:", 1)[1].split())
    for name, command in COMMANDS.items():
        assert f"{name} {command.help}" in listed


@pytest.mark.parametrize("command", ["info", "fetch"])
def test_a_command_imports_only_its_own_module(command):
    imported, text = probe(command, "--help")
    assert imported == {"heavy": [], "commands": [command]}, text
    assert f"Usage: hrseg {command} " in text


def test_info_from_the_shipped_table_imports_no_torch():
    imported, text = probe("info", "hrnetv2_w48_ocr", "--format", "tsv")
    assert imported == {"heavy": [], "commands": ["info"]}
    assert text.splitlines()[1].split("\t")[:3] == ["hrnetv2_w48_ocr", "70.37", "1206.4"]


def test_the_command_table_is_what_the_modules_register():
    group = typer.main.get_command(app)
    for name, command in COMMANDS.items():
        loaded = group.get_command(None, name)
        assert loaded is not None, f"{command.module} does not register {name!r}"
        assert loaded.get_short_help_str(limit=10_000) == command.help, f"COMMANDS[{name!r}].help is not the command's first sentence"
    assert set(typer.main.get_command(app).commands) == set(COMMANDS)  # everything registered is declared


def test_a_typo_suggests_among_all_commands():
    result = CliRunner().invoke(app, ["trian"])
    assert result.exit_code == 2 and "No such command 'trian'. Did you mean 'train'?" in result.output
    result = CliRunner().invoke(app, ["fetch", "lst"])
    assert result.exit_code == 2 and "No such command 'lst'. Did you mean 'list'?" in result.output
