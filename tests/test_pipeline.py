"""The DVC pipeline end to end, in a temporary copy of the repository: `dvc repro` of one row,
idempotence, `dvc exp run -S`, the MLflow runs of every stage and the results table."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "stages"))

import common  # noqa: E402  (stages/common.py)
import dvc_yaml  # noqa: E402

from hrseg.config import ConfigError  # noqa: E402
from hrseg.results import BEGIN_MARKER, END_MARKER, PUBLISHED, build_table, replace_between_markers  # noqa: E402


def test_dvc_yaml_is_generated_from_the_table():
    assert (REPO / "dvc.yaml").read_text() == dvc_yaml.render(), "run `python stages/dvc_yaml.py`"
    names = set(dvc_yaml.stages())
    for row in PUBLISHED:  # every row of the official results tables has explicit stages
        assert {f"train_{row.name}", f"eval_{row.name}"} <= names
    assert {"synth", "fetch_pretrained", "results_table"} | {f"prepare_{d}" for d in dvc_yaml.DATASETS} <= names


def test_recipe_resolution_order(monkeypatch):
    monkeypatch.chdir(REPO)
    params = common.read_params()
    params.update(profile="embedded", data_root="/data", lr=None, epochs=None)
    r = common.resolve_recipe("pascal_ctx60_ocr", params)
    assert r.model.num_classes == 60 and r.model.backbone == "hrnetv2_w18_small_v1"  # recipe < profile
    assert r.data.root.as_posix() == "/data/pascal_ctx" and r.data.lists.as_posix() == "data/lists/pascal_ctx"
    base_lr = r.train.lr
    params.update(lr=0.123, crop=[32, 48], scales=[0.5, 1.0], flip=False)
    r = common.resolve_recipe("pascal_ctx60_ocr", params)  # knobs win
    assert (r.train.lr, r.data.crop_size, r.eval.scales, r.eval.flip) == (0.123, (32, 48), (0.5, 1.0), False)
    assert base_lr != 0.123
    full = common.resolve_recipe("cityscapes_ocr", {**params, "profile": "full", "lr": None, "crop": None})
    assert full.model.backbone == "hrnetv2_w48" and full.train.lr == 0.01 and full.data.crop_size == (512, 1024)
    with pytest.raises(ConfigError, match="unknown profile 'tiny'; valid: embedded, full"):
        common.resolve_recipe("cityscapes_ocr", {**params, "profile": "tiny"})
    assert common.run_name("train", "cityscapes_ocr", {"lr": 0.02, "epochs": None}) == "train cityscapes_ocr lr=0.02"


def test_stage_errors_are_one_message_not_a_traceback(monkeypatch, capsys):
    import argparse

    from hrseg.fetch import FetchError

    def fail(args, params):
        raise FetchError("could not fetch 'hrnetv2_w48_imagenet': put it at pretrained/x.pth")

    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "argv", ["stages/fetch_pretrained.py"])
    with pytest.raises(SystemExit) as exit_info:
        common.stage_main(argparse.ArgumentParser(), fail)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.strip() == "ERROR fetch_pretrained.py: could not fetch 'hrnetv2_w48_imagenet': put it at pretrained/x.pth"


def test_results_table_and_markers(tmp_path):
    (tmp_path / "cityscapes_ocr").mkdir()
    (tmp_path / "cityscapes_ocr" / "metrics.json").write_text(json.dumps({"miou": 0.81623, "pixel_acc": 0.96, "scales": [1.0], "flip": False}))
    (tmp_path / "ade20k_ocr").mkdir()
    (tmp_path / "ade20k_ocr" / "metrics.json").write_text(json.dumps({"miou": 0.455, "pixel_acc": 0.8, "scales": [0.5, 1.0], "flip": True}))
    (tmp_path / "cityscapes_ocr_trainval").mkdir()
    (tmp_path / "cityscapes_ocr_trainval" / "metrics.json").write_text(json.dumps({"miou": None, "scales": [0.5, 1.0], "flip": True}))
    table = build_table({row.name: tmp_path / row.name / "metrics.json" for row in PUBLISHED}, "full")
    lines = table.splitlines()
    assert len(lines) == 2 + len(PUBLISHED)
    assert "| Cityscapes | HRNetV2-W48+OCR | train -> val | single scale | 81.60 | 81.62 | 96.00 | full |" in lines
    assert "| ADE20K | HRNetV2-W48+OCR | train -> val | 2 scales + flip | 45.50 | 45.50 | 80.00 | full |" in lines
    assert any("train+val -> test" in line and "no labels (test server)" in line for line in lines)
    assert sum("not run" in line for line in lines) == len(PUBLISHED) - 3
    doc = f"intro\n{BEGIN_MARKER}\nold\n{END_MARKER}\nrest\n"
    once = replace_between_markers(doc, table)
    assert once == replace_between_markers(once, table)  # idempotent, byte for byte
    assert once.startswith("intro\n") and once.endswith(f"{END_MARKER}\nrest\n") and "old" not in once


# --------------------------------------------------------------------------------------
# End to end, through the real dvc CLI
# --------------------------------------------------------------------------------------


def _run(cmd: list[str], cwd: Path, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A fresh git repository holding this checkout's files (tracked and new, not ignored)."""
    dvc = shutil.which("dvc", path=str(Path(sys.executable).parent))
    if dvc is None:
        pytest.skip("dvc is not installed next to the test interpreter")
    root = tmp_path_factory.mktemp("pipeline") / "repo"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_file() and not name.startswith(("results/", "dvc.lock")):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / name)
    # a shorter schedule than the embedded default keeps this test at about a minute
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["epochs"] = 8
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t", OMP_NUM_THREADS="2")  # fmt: skip
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        _run(cmd, root, env)
    return root, env


def _mlflow_runs(root: Path) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    return [run for exp in client.search_experiments() for run in client.search_runs([exp.experiment_id])]


def test_repro_one_row_is_real_idempotent_and_tracked(project):
    root, env = project
    _run(["dvc", "repro", "eval_cityscapes_ocr"], root, env)
    metrics = json.loads((root / "results/eval/cityscapes_ocr/metrics.json").read_text())
    assert metrics["num_images"] == 8 and metrics["scales"] == [1.0] and metrics["flip"] is False
    assert metrics["pixel_acc"] > 0.4 and metrics["miou"] > 0.08  # learned something in 48 iterations
    train = json.loads((root / "results/train/cityscapes_ocr/metrics.json").read_text())
    assert train["epochs"] == 8 and train["lr"] == 0.05  # the values that ran (profile + knob)
    assert (root / "results/eval/cityscapes_ocr/confusion_matrix.png").is_file()

    lock = (root / "dvc.lock").read_text()
    again = _run(["dvc", "repro", "eval_cityscapes_ocr"], root, env)
    assert "Running stage" not in again.stdout and (root / "dvc.lock").read_text() == lock
    status = _run(["dvc", "status", "eval_cityscapes_ocr"], root, env)
    assert "up to date" in status.stdout

    runs = {run.data.tags.get("hrseg.stage"): run for run in _mlflow_runs(root)}
    assert {"synth", "prepare", "fetch", "train", "eval"} <= set(runs)
    train_run, eval_run = runs["train"], runs["eval"]
    assert train_run.data.params["train.epochs"] == "8" and train_run.data.tags["dvc.stage"] == "train_cityscapes_ocr"
    assert train_run.info.run_name == "train cityscapes_ocr epochs=8"
    assert eval_run.data.tags["hrseg.train_run_id"] == train_run.info.run_id
    assert abs(eval_run.data.metrics["miou"] - metrics["miou"]) < 1e-6
    assert all(run.data.tags["hrseg.profile"] == "embedded" for run in runs.values())


def test_exp_run_temp_set_param_exp_show_and_mlflow(project):
    root, env = project
    if not (root / "dvc.lock").is_file():
        _run(["dvc", "repro", "eval_cityscapes_ocr"], root, env)
    _run(["git", "add", "-A"], root, env)
    _run(["git", "commit", "-qm", "baseline"], root, env)
    # --temp: the experiment runs in a copy under .dvc/tmp/exps, yet must log to this store
    _run(["dvc", "exp", "run", "--temp", "-n", "lr002", "-S", "lr=0.02", "eval_cityscapes_ocr"], root, env)
    shown = json.loads(_run(["dvc", "exp", "show", "--json"], root, env).stdout)
    rows = {}
    for commit in shown:
        for rev in [commit] + [e for exp in commit.get("experiments") or [] for e in exp.get("revs", [])]:
            data = rev.get("data") or {}
            lr = data.get("params", {}).get("params.yaml", {}).get("data", {}).get("lr")
            miou = data.get("metrics", {}).get("results/eval/cityscapes_ocr/metrics.json", {}).get("data", {}).get("miou")
            rows[rev.get("name") or rev.get("rev")] = (lr, miou)
    assert rows["lr002"][0] == 0.02 and rows["lr002"][1] is not None
    assert any(lr is None and miou is not None for name, (lr, miou) in rows.items() if name != "lr002")
    runs = [r for r in _mlflow_runs(root) if r.data.tags.get("hrseg.stage") == "train" and r.data.tags.get("dvc.exp_name") == "lr002"]
    assert len(runs) == 1 and runs[0].data.params["train.lr"] == "0.02" and runs[0].info.run_name == "train cityscapes_ocr lr=0.02 epochs=8"


def test_results_table_regenerates_readme_byte_identically(project):
    root, env = project
    committed = [REPO / "results" / "eval" / row.name / "metrics.json" for row in PUBLISHED]
    if not all(path.is_file() for path in committed):
        pytest.skip("the committed results/eval/*/metrics.json are missing (run `dvc repro` and commit them)")
    for path in committed:  # the committed metrics (they replace the short row run above)
        target = root / path.relative_to(REPO)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    _run(["dvc", "repro", "-f", "-s", "results_table"], root, env)
    first = (root / "README.md").read_bytes()
    assert b"| Cityscapes | HRNetV2-W48+OCR | train -> val | single scale | 81.60 |" in first
    _run(["dvc", "repro", "-f", "-s", "results_table"], root, env)
    assert (root / "README.md").read_bytes() == first
    assert (root / "results/results_table.md").read_text() in first.decode()
    assert first == (REPO / "README.md").read_bytes(), "the README table is stale: run `dvc repro results_table`"


def test_missing_real_dataset_fails_at_its_prepare_stage(project):
    root, env = project
    params_file = root / "params.yaml"
    saved = params_file.read_text()
    params = yaml.safe_load(saved)
    # the ImageNet weights are in place (a stand-in file on a mirror): only the data is missing
    mirror = root.parent / "mirror"
    mirror.mkdir(exist_ok=True)
    (mirror / "hrnetv2_w48_imagenet_pretrained.pth").write_bytes(b"stand-in")
    params.update(profile="full", data_root=str(root / "no-such-data"), pretrained_mirror=str(mirror))
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        result = _run(["dvc", "repro", "eval_lip_ocr"], root, env, check=False)
    finally:
        params_file.write_text(saved)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "prepare_lip" in output and str(root / "no-such-data" / "lip") in output, output[-2000:]
    assert "Running stage 'train_lip_ocr'" not in output and "Traceback" not in output
