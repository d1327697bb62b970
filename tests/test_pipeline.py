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
from hrseg.tracking.results_table import BEGIN_MARKER, END_MARKER, PUBLISHED, build_table, replace_between_markers  # noqa: E402


def test_dvc_yaml_is_generated_from_the_table():
    assert (REPO / "dvc.yaml").read_text() == dvc_yaml.render(), "run `python stages/dvc_yaml.py`"
    names = set(dvc_yaml.stages())
    for row in PUBLISHED:  # every row of the official results tables has explicit stages
        assert {f"train_{row.name}", f"eval_{row.name}"} <= names
    assert {"synth", "fetch_pretrained", "results_table"} | {f"prepare_{d}" for d in dvc_yaml.DATASETS} <= names


PROFILES = ("embedded", "full")


@pytest.fixture()
def at_repo(monkeypatch):
    monkeypatch.chdir(REPO)


def _params(**changes) -> common.PipelineParams:
    data = yaml.safe_load((REPO / "params.yaml").read_text())
    data.update(changes)
    return common.parse_params(data)


def test_recipe_resolution_order(at_repo):
    params = _params(data_root="/data")
    r = params.resolve("pascal_ctx60_ocr")
    assert r.recipe.model.num_classes == 60 and r.recipe.model.backbone == "hrnetv2_w18_small_v1"
    assert r.recipe.data.root.as_posix() == "/data/pascal_ctx" and r.recipe.data.lists.as_posix() == "data/lists/pascal_ctx"
    assert r.origin("train.lr") == "params/embedded/pascal_ctx60_ocr.yaml:" + str(_line("params/embedded/pascal_ctx60_ocr.yaml", "  lr:"))
    base_lr = r.recipe.train.lr
    r = _params(lr=0.123, crop=[32, 48], scales=[0.5, 1.0], flip=False).resolve("pascal_ctx60_ocr")  # knobs win
    assert (r.recipe.train.lr, r.recipe.data.crop_size, r.recipe.eval.scales, r.recipe.eval.flip) == (0.123, (32, 48), (0.5, 1.0), False)
    assert base_lr != 0.123 and r.origin("train.lr") == "knob params.yaml: lr"
    assert r.run_name("train") == "train pascal_ctx60_ocr lr=0.123 crop_size=32,48 scales=0.5,1 flip=False"
    full = _params(profile="full", data_root="data").resolve("cityscapes_ocr").recipe
    assert full.model.backbone == "hrnetv2_w48" and full.train.lr == 0.01 and full.data.crop_size == (512, 1024)
    with pytest.raises(ConfigError, match="unknown profile 'tiny'; valid: embedded, full"):
        _params(profile="tiny").resolve("cityscapes_ocr")


def _line(path: str, prefix: str) -> int:
    return next(i for i, line in enumerate((REPO / path).read_text().splitlines(), 1) if line.startswith(prefix))


@pytest.mark.parametrize("profile", PROFILES)
def test_cli_and_stage_resolve_the_identical_recipe_for_every_row(at_repo, profile):
    from typer.testing import CliRunner

    from hrseg.cli import app

    params = _params(profile=profile, data_root=f"/datasets/{profile}")
    for row in common.pipeline_rows():
        stage = params.resolve(row).recipe.to_dict()
        result = CliRunner().invoke(app, ["recipe", "show", row, "--profile", profile, "--data-root", f"/datasets/{profile}", "--format", "json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["recipe"] == stage, row
    # with knobs set, the CLI's --set gives the same recipe as the stage's knobs
    knobbed = _params(profile=profile, lr=1e-3, epochs=2, crop=[32, 32], scales=[1.0, 1.5], flip=True)
    sets = ["train.lr=1e-3", "train.epochs=2", "data.crop_size=[32, 32]", "eval.scales=[1.0, 1.5]", "eval.flip=true"]
    result = CliRunner().invoke(app, ["recipe", "show", "lip_ocr", "--profile", profile, "--data-root", "data/synth", "--format", "json", *sum((["--set", s] for s in sets), [])])
    assert json.loads(result.output)["recipe"] == knobbed.resolve("lip_ocr").recipe.to_dict()


def test_train_and_evaluate_commands_use_the_same_resolution(at_repo, monkeypatch, tmp_path):
    """`hrseg train/evaluate --profile` hand the library exactly the stage's recipe."""
    from typer.testing import CliRunner

    import hrseg.engine.train as engine_train
    import hrseg.evaluation.evaluate as evaluation_evaluate
    from hrseg.cli import app

    seen = {}  # the commands import their library function when they run: patch it in its module
    monkeypatch.setattr(engine_train, "train", lambda recipe, out, **kw: seen.setdefault("train", (recipe, kw)))
    monkeypatch.setattr(evaluation_evaluate, "evaluate", lambda recipe, *a, **kw: seen.setdefault("eval", (recipe, kw)) and {"num_images": 0})
    args = ["--profile", "embedded", "--data-root", "data/synth", "--set", "train.lr=0.02"]
    assert CliRunner().invoke(app, ["train", "cityscapes_ocr", "-o", str(tmp_path), *args]).exit_code == 0
    assert CliRunner().invoke(app, ["evaluate", "cityscapes_ocr", "-c", "x.pth", "-o", str(tmp_path), *args]).exit_code == 0
    expected = _params(lr=0.02).resolve("cityscapes_ocr")
    assert seen["train"][0] == expected.recipe and seen["eval"][0] == expected.recipe
    train_tracker, eval_tracker = seen["train"][1]["tracker"], seen["eval"][1]["tracker"]
    assert train_tracker.run_name == expected.run_name("train") == "train cityscapes_ocr lr=0.02"
    assert eval_tracker.run_name is None  # the library names it: eval <recipe> <checkpoint> <protocol>
    assert train_tracker.tags == eval_tracker.tags == {"hrseg.profile": "embedded"} and train_tracker.uri is None


@pytest.mark.parametrize("profile", PROFILES)
def test_every_pipeline_recipe_file_is_complete(at_repo, profile):
    """Every value a stage uses is in the recipe file (a DVC param), none is a code default."""
    from hrseg.config import flatten

    for row in common.pipeline_rows():
        resolved = _params(profile=profile).resolve(row)
        from_defaults = [key for key, _, origin in resolved.table() if origin == "default"]
        assert from_defaults == [], f"params/{profile}/{row}.yaml lacks {from_defaults}"
        assert set(flatten(resolved.recipe.to_dict())) - {k for k, _, o in resolved.table() if o.startswith(f"params/{profile}/")} <= {
            "name", "data.root", "data.lists"
        }  # fmt: skip
    assert sorted(p.stem for p in (REPO / "params" / "embedded").glob("*.yaml")) == sorted(common.pipeline_rows())
    # a row reads the same dataset folder in every profile (dvc.yaml's data deps are static)
    for row in common.pipeline_rows():
        assert len({dvc_yaml.dataset_folder(_params(profile=p).resolve(row).recipe.data.dataset) for p in PROFILES}) == 1


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"lrr": 0.5}, r"params.yaml:\d+: unknown key lrr \(did you mean lr\?\)"),
        ({"epoch": 3}, r"params.yaml:\d+: unknown key epoch \(did you mean epochs\?\)"),
        ({"batch_size": -2}, r"params.yaml:\d+: knobs.batch_size: must be >= 1, got -2"),
        ({"crop": [0, 64]}, r"params.yaml:\d+: knobs.crop\[0\]: must be >= 1, got 0"),
        ({"lr": -0.1}, r"params.yaml:\d+: knobs.lr: must be > 0, got -0.1"),
        ({"lr": "fast"}, r"params.yaml:\d+: knobs.lr: expected a number, got 'fast'"),
        ({"nproc_per_node": 0}, r"params.yaml:\d+: nproc_per_node: must be >= 1"),
        ({"device": "gpu"}, r"params.yaml:\d+: device: expected one of 'auto', 'cpu', 'cuda', got 'gpu'"),
    ],
)
def test_bad_params_yaml_is_refused_naming_the_file_line_and_key(tmp_path, changes, message):
    text = (REPO / "params.yaml").read_text()
    for key, value in changes.items():
        text += f"{key}: {json.dumps(value)}\n" if f"\n{key}:" not in text else ""
        text = "\n".join(f"{key}: {json.dumps(value)}" if line.startswith(f"{key}:") else line for line in text.splitlines()) + "\n"
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        common.read_params(tmp_path / "params.yaml")


def test_numbers_like_1e_3_are_numbers_everywhere(tmp_path, at_repo):
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text().replace("lr: null", "lr: 1e-3"))
    assert common.read_params(tmp_path / "params.yaml").knobs.lr == 0.001
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  lr: 5E-4\n  weight_decay: 1e-4\n")
    from hrseg.recipe import resolve_recipe

    r = resolve_recipe(recipe, overrides=["train.extra_lr=2e-5"]).recipe
    assert (r.train.lr, r.train.weight_decay, r.train.extra_lr) == (5e-4, 1e-4, 2e-5)


@pytest.mark.parametrize(
    "edit, message",
    [
        (("  batch_size: 4", "  batch_size: -4"), r"params/embedded/lip_ocr.yaml:\d+: train.batch_size: must be >= 1, got -4"),
        (("  num_workers: 0", "  num_workers: -1"), r"params/embedded/lip_ocr.yaml:\d+: data.num_workers: must be >= 0, got -1"),
        (("  val_num_samples: null", "  val_num_samples: 0"), r"params/embedded/lip_ocr.yaml:\d+: data.val_num_samples: must be >= 1, got 0"),
        (("  checkpoint_every: 0", "  checkpoint_every: -5"), r"train.checkpoint_every: must be >= 0, got -5"),
        (("  lr: 0.05", "  lrr: 0.05"), r"params/embedded/lip_ocr.yaml:\d+: unknown key train.lrr \(did you mean train.lr\?\)"),
        (("  backbone: hrnetv2_w18_small_v1", "  backbone: hrnetv2_w18_smal_v1"), r"model.backbone: unknown 'hrnetv2_w18_smal_v1' \(did you mean hrnetv2_w18_small_v1\?\)"),
        (("  dataset: lip", "  dataset: lip\n  root: /elsewhere"), r"params/embedded/lip_ocr.yaml:\d+: data.root is decided by params.yaml: data_root \(data/synth\)"),
    ],
)
def test_bad_recipe_values_are_refused_naming_file_line_and_key(tmp_path, monkeypatch, edit, message):
    params_dir = tmp_path / "params" / "embedded"
    params_dir.mkdir(parents=True)
    text = (REPO / "params/embedded/lip_ocr.yaml").read_text()
    assert edit[0] in text
    (params_dir / "lip_ocr.yaml").write_text(text.replace(edit[0], edit[1], 1))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=message):
        _params().resolve("lip_ocr")


def test_a_stage_refuses_bad_params_before_any_work(tmp_path, monkeypatch, capsys):
    import argparse

    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text() + "epoch: 3\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["stages/train.py"])
    ran = []
    with pytest.raises(SystemExit) as exit_info:
        common.stage_main(argparse.ArgumentParser(), lambda args, params: ran.append(1))
    assert exit_info.value.code == 1 and not ran
    assert "ERROR train.py: params.yaml:" in capsys.readouterr().err


@pytest.mark.parametrize("torchrun", [True, False])
def test_only_tensor_stages_pin_cpu_numerics_before_their_work(torchrun, monkeypatch):
    """train / evaluate (``torchrun=True``) set the host memory policy and pin threads and
    instruction set before any tensor operation, then maybe re-launch, then work; the other
    stages never load torch for it."""
    import argparse

    calls = []
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "argv", ["stages/x.py"])
    monkeypatch.setattr(common, "pin_cpu_numerics", lambda threads, isa: calls.append(("pin", threads, isa)))
    monkeypatch.setattr(common, "set_host_memory", lambda policy: calls.append(("host_memory", policy)))
    monkeypatch.setattr(common, "relaunch_under_torchrun", lambda params: calls.append(("relaunch",)))
    common.stage_main(argparse.ArgumentParser(), lambda args, params: calls.append(("run",)), torchrun=torchrun)
    params = common.read_params()
    expected = [("host_memory", params.host_memory), ("pin", params.cpu_threads, params.cpu_isa), ("relaunch",), ("run",)]
    assert calls == (expected if torchrun else [("run",)])


def test_multi_node_launcher_comes_from_params():
    from hrseg.runtime.launch import DistributedError, torchrun_args

    assert not common.launch_config(_params()).needs_launcher
    assert torchrun_args(common.launch_config(_params(nproc_per_node=4))) == ["--standalone", "--nproc-per-node=4"]
    two = torchrun_args(common.launch_config(_params(nnodes=2, node_rank=1, nproc_per_node=8, rdzv_endpoint="10.0.0.1:29400")))
    assert two[:2] == ["--nnodes=2", "--nproc-per-node=8"] and "--rdzv-endpoint=10.0.0.1:29400" in two
    with pytest.raises(DistributedError, match="rdzv_endpoint|endpoint"):
        torchrun_args(common.launch_config(_params(nnodes=2)))


def test_stage_errors_are_one_message_not_a_traceback(monkeypatch, capsys):
    import argparse

    from hrseg.weights.download import FetchError

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
    (tmp_path / "cityscapes_ocr" / "metrics.json").write_text(json.dumps({"miou": 0.81623, "miou_gt": 0.9, "pixel_acc": 0.96, "scales": [1.0], "flip": False}))
    (tmp_path / "ade20k_ocr").mkdir()
    (tmp_path / "ade20k_ocr" / "metrics.json").write_text(json.dumps({"miou": 0.455, "pixel_acc": 0.8, "scales": [0.5, 1.0], "flip": True}))
    (tmp_path / "cityscapes_ocr_trainval").mkdir()
    (tmp_path / "cityscapes_ocr_trainval" / "metrics.json").write_text(json.dumps({"miou": None, "scales": [0.5, 1.0], "flip": True}))
    table = build_table({row.name: tmp_path / row.name / "metrics.json" for row in PUBLISHED}, "full")
    lines = table.splitlines()
    assert len(lines) == 2 + len(PUBLISHED)
    assert "| Cityscapes | HRNetV2-W48+OCR | train -> val | single scale | 81.60 | 81.62 | 90.00 | 96.00 | full |" in lines
    assert "| ADE20K | HRNetV2-W48+OCR | train -> val | 2 scales + flip | 45.50 | 45.50 | - | 80.00 | full |" in lines
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


#: the row the end-to-end tests run: the quickest (FCN head, 12 epochs on synthetic Cityscapes)
ROW = "cityscapes_hrnet"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A fresh git repository holding this checkout's files (tracked and new, not ignored):
    what a user's `git clone` gives, committed results and dvc.lock included."""
    dvc = shutil.which("dvc", path=str(Path(sys.executable).parent))
    if dvc is None:
        pytest.skip("dvc is not installed next to the test interpreter")
    root = tmp_path_factory.mktemp("pipeline") / "repo"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_file() and not name.startswith("tests/fixtures/"):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")  # fmt: skip
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        _run(cmd, root, env)
    return root, env


def _mlflow_runs(root: Path) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    return [run for exp in client.search_experiments() for run in client.search_runs([exp.experiment_id])]


def _changed_files(root: Path, env: dict) -> list[str]:
    return _run(["git", "status", "--porcelain", "--untracked-files=no"], root, env).stdout.splitlines()


def test_repro_reproduces_the_committed_results_is_idempotent_and_tracked(project):
    """From a fresh clone, `dvc repro eval_<row>` recomputes the row bit for bit: every
    committed metric, log and dvc.lock hash comes out identical (CPU numerics are pinned by
    params.yaml: 2 threads, AVX2 kernels; the package versions by constraints.txt)."""
    root, env = project
    _run(["dvc", "repro", f"eval_{ROW}"], root, env)
    assert _changed_files(root, env) == [], "the committed results do not reproduce: re-run `dvc repro` and commit, or find what differs"
    metrics = json.loads((root / f"results/eval/{ROW}/metrics.json").read_text())
    assert metrics["num_images"] == 8 and metrics["miou_gt"] >= metrics["miou"] > 0.1  # it learned
    assert (root / f"results/eval/{ROW}/confusion_matrix.png").is_file()

    again = _run(["dvc", "repro", f"eval_{ROW}"], root, env)
    assert "Running stage" not in again.stdout and _changed_files(root, env) == []
    assert "up to date" in _run(["dvc", "status", f"eval_{ROW}"], root, env).stdout

    runs = {run.data.tags.get("hrseg.stage"): run for run in _mlflow_runs(root)}
    assert {"synth", "prepare", "fetch", "train", "eval"} <= set(runs)
    train_run, eval_run = runs["train"], runs["eval"]
    assert train_run.data.params["train.epochs"] == "12" and train_run.data.tags["dvc.stage"] == f"train_{ROW}"
    assert train_run.info.run_name == f"train {ROW}"
    assert eval_run.data.tags["hrseg.train_run_id"] == train_run.info.run_id  # found by the model's sha256
    assert abs(eval_run.data.metrics["miou"] - metrics["miou"]) < 1e-6
    assert all(run.data.tags["hrseg.profile"] == "embedded" for run in runs.values())


def test_editing_a_recipe_value_is_seen_by_dvc_and_reruns_only_its_row(project):
    root, env = project
    if not (root / "mlflow.db").is_file():
        _run(["dvc", "repro", f"eval_{ROW}"], root, env)
    recipe = root / f"params/embedded/{ROW}.yaml"
    full = root / f"params/full/{ROW}.yaml"
    saved, saved_full = recipe.read_text(), full.read_text()

    def status() -> dict:
        return json.loads(_run(["dvc", "status", "--json"], root, env).stdout)

    before = status()  # rows never run in this copy show their missing outputs; compare with that

    def newly_changed() -> set[str]:
        now = status()
        return {stage for stage in now if now[stage] != before.get(stage)}

    try:
        recipe.write_text(saved.replace("  lr: 0.05\n", "  lr: 0.07\n", 1))
        change = json.loads(_run(["dvc", "params", "diff", "--json"], root, env).stdout)[f"params/embedded/{ROW}.yaml"]["train.lr"]
        assert (change["old"], change["new"]) == (0.05, 0.07)
        assert newly_changed() == {f"train_{ROW}"}  # eval and the table follow once the model changes
        recipe.write_text(saved.replace("  num_overlays: 2\n", "  num_overlays: 3\n", 1))  # read by eval and by training's overlays
        assert newly_changed() == {f"train_{ROW}", f"eval_{ROW}"}
        recipe.write_text(saved.replace("  flip: false\n", "  flip: true\n", 1))  # eval.flip: evaluation only
        assert newly_changed() == {f"eval_{ROW}"}
        recipe.write_text(saved)
        full.write_text(saved_full.replace("  lr: 0.01\n", "  lr: 0.02\n", 1))  # the other profile: nothing
        assert newly_changed() == set()
    finally:
        recipe.write_text(saved)
        full.write_text(saved_full)


def test_exp_run_set_param_and_file_key_exp_show_and_mlflow(project):
    root, env = project
    if not (root / "mlflow.db").is_file():
        _run(["dvc", "repro", f"eval_{ROW}"], root, env)
    # --temp: the experiment runs in a copy under .dvc/tmp/exps, yet must log to this store
    file_key = f"params/embedded/{ROW}.yaml:train.head_lr_mult=2.0"
    _run(["dvc", "exp", "run", "--temp", "-n", "short", "-S", "epochs=2", "-S", file_key, f"eval_{ROW}"], root, env)
    shown = json.loads(_run(["dvc", "exp", "show", "--json"], root, env).stdout)
    rows = {}
    for commit in shown:
        for rev in [commit] + [e for exp in commit.get("experiments") or [] for e in exp.get("revs", [])]:
            data = rev.get("data") or {}
            params = data.get("params", {})
            recipe = params.get(f"params/embedded/{ROW}.yaml", {}).get("data", {})
            miou = data.get("metrics", {}).get(f"results/eval/{ROW}/metrics.json", {}).get("data", {}).get("miou")
            rows[rev.get("name") or rev.get("rev")] = (params.get("params.yaml", {}).get("data", {}).get("epochs"), recipe.get("train", {}).get("head_lr_mult"), miou)
    assert rows["short"][:2] == (2, 2.0) and rows["short"][2] is not None  # the recipe values, next to the metrics
    assert any(e is None and m == 1.0 and miou is not None for name, (e, m, miou) in rows.items() if name != "short")
    runs = [r for r in _mlflow_runs(root) if r.data.tags.get("hrseg.stage") == "train" and r.data.tags.get("dvc.exp_name") == "short"]
    assert len(runs) == 1 and runs[0].data.params["train.epochs"] == "2" and runs[0].info.run_name == f"train {ROW} epochs=2"


def test_dvc_push_to_a_local_remote_and_pull_in_a_fresh_clone(project, tmp_path):
    root, env = project
    if not (root / "mlflow.db").is_file():
        _run(["dvc", "repro", f"eval_{ROW}"], root, env)
    remote = tmp_path / "remote"
    _run(["dvc", "remote", "add", "-f", "-d", "shared", str(remote)], root, env)
    _run(["git", "add", "-A"], root, env)  # the remote, and dvc.lock if the repro changed it
    _run(["git", "commit", "-qm", "remote", "--allow-empty"], root, env)
    _run(["dvc", "push", "--with-deps", f"eval_{ROW}"], root, env)
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(root), str(clone)], tmp_path, env)
    _run(["dvc", "pull", "--with-deps", f"eval_{ROW}"], clone, env)
    assert (clone / f"models/{ROW}/model.pth").read_bytes() == (root / f"models/{ROW}/model.pth").read_bytes()
    again = _run(["dvc", "repro", f"eval_{ROW}"], clone, env)
    assert "Running stage" not in again.stdout, again.stdout
    metrics = lambda repo: json.loads(_run(["dvc", "metrics", "show", "--json"], repo, env).stdout)  # noqa: E731
    assert metrics(clone) == metrics(root)


def test_adding_a_row_is_one_line_plus_its_recipe(project):
    root, env = project
    rows = root / "stages/rows.yaml"
    saved = rows.read_text()
    try:
        for profile in ("embedded", "full"):
            shutil.copy(root / f"params/{profile}/lip_hrnet.yaml", root / f"params/{profile}/lip_hrnet_long.yaml")
        rows.write_text(saved + "  - lip_hrnet_long\n")
        _run([sys.executable, "stages/dvc_yaml.py"], root, env)
        stages = _run(["dvc", "stage", "list"], root, env).stdout
        assert "train_lip_hrnet_long" in stages and "eval_lip_hrnet_long" in stages
        assert "train_lip_hrnet_long" in json.loads(_run(["dvc", "status", "--json"], root, env).stdout)
        dag = _run(["dvc", "dag", "--md", "results_table"], root, env).stdout
        assert "train_lip_hrnet_long" in dag and "eval_lip_hrnet_long" in dag
        assert "lip_hrnet_long" in _run([sys.executable, "-c", "import sys; sys.path.insert(0, 'stages'); import results_table, common; "
                                         "print([r.name for r in results_table.table_rows(common.read_params())])"], root, env).stdout
    finally:
        rows.write_text(saved)
        for profile in ("embedded", "full"):
            (root / f"params/{profile}/lip_hrnet_long.yaml").unlink(missing_ok=True)
        _run([sys.executable, "stages/dvc_yaml.py"], root, env)


def test_results_table_regenerates_readme_byte_identically(project):
    root, env = project
    _run(["dvc", "repro", "-f", "-s", "results_table"], root, env)
    first = (root / "README.md").read_bytes()
    assert b"| Cityscapes | HRNetV2-W48+OCR | train -> val | single scale | 81.60 |" in first
    _run(["dvc", "repro", "-f", "-s", "results_table"], root, env)
    assert (root / "README.md").read_bytes() == first
    assert (root / "results/results_table.md").read_text() in first.decode()
    assert first == (REPO / "README.md").read_bytes(), "the README table is stale: run `dvc repro results_table`"
    assert "results_table" not in json.loads(_run(["dvc", "status", "--json"], root, env).stdout)  # README is a declared output


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
