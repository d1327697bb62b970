"""Issue 17: what does no tensor work imports no torch (about 2 s of start-up).

One fresh interpreter runs, in order, the light ``hrseg`` commands (and ``--help`` of the
tensor commands train, evaluate, predict and export) and the light DVC stage scripts (as
``__main__``, through ``stage_main``) on a temporary copy of the synthetic data, and reports
after each step whether torch has been imported, and by whom. MLflow is pointed
at a store that cannot be used, so each stage's run is a ``NullRun`` (MLflow is allowed to
load; it only costs time here). The last step is the counter-check: the train stage does
tensor work, so importing it loads torch, and the probe must name it as the first to do so.

A second probe gives the tensor commands bad option values: typer's errors, and ``predict``'s
``--scales`` check, come without torch, with the same message as ever; running ``predict``
(on a missing checkpoint) is its counter-check.

The lazy package ``__init__``s (``hrseg.models``, ``hrseg.data``, ``hrseg.evaluation``) are
checked too: every name of their ``_LAZY`` table is the object its module defines.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

#: runs the steps given as JSON on argv[1] (("cli", args) | ("stage", script, args) | ("import", module)),
#: then prints one JSON line: each step's exit status, and the first step that imported torch
#: with the import chain (the frames of this checkout) that did it
PROBE = r"""
import importlib, importlib.abc, json, os, runpy, sys, traceback
sys.path.insert(0, "stages")
steps = json.loads(sys.argv[1])
current, culprit = None, None

class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        global culprit
        if name == "torch" and culprit is None:
            frames = [f"{f.filename}:{f.lineno}" for f in traceback.extract_stack()[:-1] if f.filename.startswith(os.getcwd())]
            culprit = {"step": current, "chain": frames}
        return None

sys.meta_path.insert(0, Watch())
from hrseg.cli import app
status = []
for step in steps:
    current = step
    code = 0
    try:
        if step[0] == "cli":
            app(step[1], prog_name="hrseg")
        elif step[0] == "stage":
            sys.argv = [step[1], *step[2]]
            runpy.run_path(step[1], run_name="__main__")
        else:
            importlib.import_module(step[1])
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    status.append(code)
print("PROBE " + json.dumps({"status": status, "culprit": culprit, "torch": "torch" in sys.modules}))
"""


def run_probe(steps: list, tmp_path: Path) -> dict:
    store = tmp_path / "mlflow-store-is-a-folder"
    store.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "MLFLOW_TRACKING_URI": f"sqlite:///{store}",  # a folder: start_tracking warns and returns a NullRun
        "COLUMNS": "80",
    }
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(steps)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("PROBE ")]
    assert proc.returncode == 0 and lines, f"probe failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result = json.loads(lines[-1].removeprefix("PROBE "))
    result["log"] = proc.stdout[-3000:] + proc.stderr[-3000:]
    return result


def test_light_commands_and_stages_never_import_torch(tmp_path):
    synth, lists = tmp_path / "synth", tmp_path / "lists"
    readme = tmp_path / "README.md"
    readme.write_text((REPO / "README.md").read_text(encoding="utf-8"), encoding="utf-8")
    steps = [
        ("import", "common"),
        ("cli", ["--help"]),
        ("cli", ["train", "--help"]),
        ("cli", ["evaluate", "--help"]),
        ("cli", ["predict", "--help"]),
        ("cli", ["export", "--help"]),
        ("cli", ["recipe", "list"]),
        ("cli", ["recipe", "show", "lip_ocr", "--profile", "embedded"]),
        ("cli", ["fetch", "list"]),
        ("cli", ["info", "hrnetv2_w48_ocr"]),
        ("cli", ["synth", "--out", str(tmp_path / "cli-synth"), "--datasets", "lip"]),
        ("cli", ["prepare", "lip", "--root", str(tmp_path / "cli-synth" / "lip"), "--out", str(tmp_path / "cli-lists" / "lip")]),
        ("stage", "stages/synth.py", ["--out", str(synth)]),
        ("stage", "stages/prepare.py", ["lip", "--root", str(synth / "lip"), "--out", str(lists / "lip")]),
        ("stage", "stages/fetch_pretrained.py", ["--dest", str(tmp_path / "pretrained")]),
        ("stage", "stages/results_table.py", ["--results", "results/eval", "--out", str(tmp_path / "results_table.md"), "--readme", str(readme)]),
        ("import", "train"),  # the counter-check: tensor work, so torch (first imported here)
    ]
    result = run_probe(steps, tmp_path)
    culprit = result["culprit"] or {}
    chain = "\n".join(culprit.get("chain", []))
    assert culprit.get("step") == ["import", "train"], f"torch first imported by step {culprit.get('step')}, through\n{chain}\n{result['log']}"
    assert any(frame.startswith(str(REPO / "hrseg")) for frame in culprit["chain"])  # the probe sees who imports it
    assert result["status"] == [0] * len(steps), f"a step failed: {list(zip(steps, result['status']))}\n{result['log']}"
    # the work happened
    assert (lists / "lip" / "train.lst").is_file() and (tmp_path / "cli-lists" / "lip" / "val.lst").is_file()
    assert json.loads((tmp_path / "pretrained" / "manifest.json").read_text())["profile"] == "embedded"
    assert (tmp_path / "results_table.md").read_text() == (REPO / "results" / "results_table.md").read_text()


def test_bad_options_of_the_tensor_commands_fail_without_torch(tmp_path):
    out, missing = str(tmp_path / "out"), str(tmp_path / "missing.pth")
    cases = [  # (step, exit status, what the error says)
        (("cli", ["train", "lip_ocr", "--cpu-threads", "many"]), 2, "Invalid value for '--cpu-threads'"),
        (("cli", ["evaluate", "lip_ocr", "-o", out]), 2, "Missing option '--checkpoint' / '-c'."),
        (("cli", ["evaluate", "lip_ocr", "-c", missing, "-o", out, "--batch", "abc"]), 2, "Invalid value for '--batch'"),
        (("cli", ["export", "-c", missing, "-o", out, "--height", "tall"]), 2, "Invalid value for '--height'"),
        (("cli", ["predict", "README.md", "-c", missing, "-o", out, "--scales", "abc"]), 1, "error: --scales 'abc': expected numbers separated by commas"),
        # the counter-check: the command runs, so it imports its library function (and torch) first
        (("cli", ["predict", "README.md", "-c", missing, "-o", out]), 1, f"error: {missing}: no such checkpoint file"),
    ]
    result = run_probe([step for step, _, _ in cases], tmp_path)
    culprit = result["culprit"] or {}
    chain = "\n".join(culprit.get("chain", []))
    assert culprit.get("step") == list(cases[-1][0]), f"torch first imported by step {culprit.get('step')}, through\n{chain}\n{result['log']}"
    assert f"{REPO / 'hrseg' / 'cli' / 'predict.py'}:" in chain  # imported by the command's body
    assert result["status"] == [status for _, status, _ in cases], f"{list(zip(cases, result['status']))}\n{result['log']}"
    for _, _, message in cases:
        assert message in result["log"], f"{message!r} not in\n{result['log']}"


@pytest.mark.parametrize("package", ["hrseg.models", "hrseg.data", "hrseg.evaluation"])
def test_lazy_names_are_their_modules_objects(package):
    module = importlib.import_module(package)
    for name, home in module._LAZY.items():
        assert getattr(module, name) is getattr(importlib.import_module(home), name), name
    assert set(module.__all__) == set(module._LAZY) <= set(dir(module))
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        module.nope  # noqa: B018


def test_public_imports_keep_working():
    from hrseg.data import SegmentationDataset, get_spec
    from hrseg.data.dataset import SegmentationDataset as home
    from hrseg.models import ModelConfig, build_model

    assert SegmentationDataset is home and get_spec("lip").num_classes == 20
    model = build_model("hrnetv2_w18_small_v1", "fcn", 3)
    assert model.num_classes == 3 and ModelConfig().name == "hrnetv2_w48_ocr"
