"""Generate dvc.yaml: `python stages/dvc_yaml.py` (a test checks the committed file is current).

Stage names are explicit because users type them (`dvc repro eval_cityscapes_ocr`); DVC's
foreach/matrix would name them `eval@...`. The rows come from stages/rows.yaml; every stage
declares exactly the code, data and params it reads: the recipe keys a train/eval stage uses
are declared per key of `params/${profile}/<row>.yaml` (DVC interpolates the profile), so
`dvc params diff` / `dvc exp show` show them, `dvc exp run -S params/embedded/<row>.yaml:train.lr=0.1`
works, and editing the other profile's recipes (or keys a stage does not read) re-runs nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import pipeline_rows  # noqa: E402

from hrseg.data.catalog import CUSTOM, LAYOUTS  # noqa: E402
from hrseg.recipe import EVAL_KEYS, TRAIN_KEYS, dataset_folder, resolve_recipe  # noqa: E402

#: the dataset folders ``hrseg prepare`` writes lists for (pascal_ctx60 reads pascal_ctx's)
DATASETS = (*LAYOUTS, CUSTOM)
PROFILES = ("embedded", "full")
#: library code whose changes change what a stage computes
CORE = ["hrseg/models", "hrseg/data", "hrseg/lazy.py", "hrseg/recipe.py", "hrseg/config.py", "hrseg/io.py", "hrseg/runtime", "hrseg/metrics.py", "hrseg/visualize.py"]
#: params.yaml keys of how a train/eval stage runs (processes, device, CPU numerics)
RUNTIME = ["nproc_per_node", "device", "cpu_threads", "cpu_isa"]


def recipe_params(row: str, keys) -> dict:
    return {f"params/${{profile}}/{row}.yaml": list(keys)}


def row_folder(row: str) -> str:
    """The dataset folder a row reads (the same in every profile; a test checks it)."""
    return dataset_folder(resolve_recipe(row, profile=PROFILES[0]).recipe.data.dataset)


def stages() -> dict:
    rows = pipeline_rows()
    out: dict = {
        "synth": {
            "desc": "Miniature synthetic copies of the datasets (the embedded profile's data)",
            "cmd": "python stages/synth.py --out data/synth",
            "deps": ["stages/synth.py", "stages/common.py", "hrseg/data", "hrseg/lazy.py"],
            "params": ["synth_seed"],
            "outs": ["data/synth"],
        }
    }
    for ds in DATASETS:
        out[f"prepare_{ds}"] = {
            "desc": f"Verify {ds} under data_root and write its .lst files",
            "cmd": f"python stages/prepare.py {ds} --root ${{data_root}}/{ds} --out data/lists/{ds}",
            "deps": ["stages/prepare.py", "stages/common.py", "hrseg/data", "hrseg/lazy.py", f"${{data_root}}/{ds}"],
            "params": ["data_root"],
            "outs": [f"data/lists/{ds}"],
        }
    out["fetch_pretrained"] = {
        "desc": "ImageNet weights the rows' recipes start from (none for the embedded profile)",
        "cmd": "python stages/fetch_pretrained.py --dest pretrained",
        "deps": ["stages/fetch_pretrained.py", "stages/common.py", "stages/rows.yaml", "hrseg/weights/catalogue.py", "hrseg/weights/download.py"],
        "params": ["profile", "pretrained_mirror", *[recipe_params(row, ["train.pretrained"]) for row in rows]],
        "outs": ["pretrained"],
    }
    for row in rows:
        ds = row_folder(row)
        data = [f"data/lists/{ds}", f"${{data_root}}/{ds}"]
        out[f"train_{row}"] = {
            "desc": f"Train {row} (params/${{profile}}/{row}.yaml)",
            "cmd": f"python stages/train.py {row} --model-dir models/{row} --results results/train/{row}",
            "deps": ["stages/train.py", "stages/common.py", *CORE, "hrseg/engine", *data, "pretrained"],
            "params": ["profile", "data_root", "lr", "epochs", "batch_size", "crop", "seed", *RUNTIME, "nnodes", "node_rank", "rdzv_endpoint",
                       recipe_params(row, TRAIN_KEYS)],  # fmt: skip
            "outs": [f"models/{row}", f"results/train/{row}/curve.png"],
            "metrics": [{f"results/train/{row}/metrics.json": {"cache": False}}],
            "plots": [{f"results/train/{row}/log.csv": {"cache": False, "x": "epoch", "y": "val_miou"}}],
        }
        res = f"results/eval/{row}"
        labelled = resolve_recipe(row, profile=PROFILES[0]).recipe.eval.split != "test"
        out[f"eval_{row}"] = {
            "desc": f"Evaluate {row} with its official test protocol",
            "cmd": f"python stages/evaluate.py {row} --model models/{row}/model.pth --out {res}",
            "deps": ["stages/evaluate.py", "stages/common.py", *CORE, "hrseg/evaluation", "hrseg/weights/catalogue.py", *data, f"models/{row}"],
            "params": ["profile", "data_root", "scales", "flip", *RUNTIME, recipe_params(row, EVAL_KEYS)],
            "outs": [{f"{res}/per_class.csv": {"cache": False}}, f"{res}/confusion_matrix.png", f"{res}/overlays"]
            if labelled
            else [f"{res}/overlays", f"{res}/test_results"],
            "metrics": [{f"{res}/metrics.json": {"cache": False}}],
        }
    out["results_table"] = {
        "desc": "The README results table, next to the published numbers",
        "cmd": "python stages/results_table.py --results results/eval --out results/results_table.md --readme README.md",
        "deps": ["stages/results_table.py", "stages/common.py", "stages/rows.yaml", "hrseg/tracking/results_table.py", "hrseg/weights/catalogue.py", *[f"results/eval/{row}/metrics.json" for row in rows]],
        "params": ["profile", *[recipe_params(row, ["data.dataset", "data.train_split", "model.backbone", "model.head", "eval.split"]) for row in rows]],
        "outs": [{"results/results_table.md": {"cache": False}}, {"README.md": {"cache": False, "persist": True}}],
    }
    return out


HEADER = "# Generated by `python stages/dvc_yaml.py` from stages/rows.yaml; edit the rows there.\n"


def render() -> str:
    return HEADER + yaml.safe_dump({"stages": stages()}, sort_keys=False, width=200)


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "dvc.yaml")
    target.write_text(render(), encoding="utf-8")
    print(f"wrote {target} ({len(stages())} stages)")
