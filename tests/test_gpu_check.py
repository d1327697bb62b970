"""benchmarks/gpu_check.sh in its dry run (CPU, tiny sizes, gloo): everything but the CUDA parts."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _gpu_check_module():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gpu_check", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_dry_run_writes_the_report_and_the_results_section(tmp_path):
    results_md = tmp_path / "RESULTS.md"
    results_md.write_text("# Benchmark results\n\nkept above\n")
    out = tmp_path / "gpu.json"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry", "--out", str(out), "--results-md", str(results_md)],
        env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] is True and report["environment"]["device"] == "cpu"

    rows = {r["path"]: r for r in report["inference"]["rows"]}
    assert list(rows) == ["eager", "channels_last", "folded_cl", "cuda_fp16", "cuda_bf16"]
    assert rows["cuda_fp16"] == {"path": "cuda_fp16", "skipped": "needs CUDA"}
    assert rows["eager"]["max_abs_logit_diff"] == 0.0  # the reference is the eager forward itself
    for path in ("eager", "channels_last", "folded_cl"):
        row = rows[path]
        assert row["images_per_s"] > 0 and row["peak_memory_mib"] > 0
        # fp32 paths: float32 rounding only (tests/test_fast.py bounds them on the parity fixture)
        assert row["max_abs_logit_diff"] <= 1e-4 * max(1.0, row["max_abs_logit"])
        assert row["argmax_agreement"] >= 0.999

    train = report["train"]
    assert train["backend"] == "gloo" and train["world_size"] == 1 and train["sync_bn"] is False
    runs = {r["amp"]: r for r in train["runs"]}
    assert list(runs) == ["fp32", "fp16", "bf16"]
    assert all(r["losses_finite"] and len(r["losses"]) == 2 for r in runs.values())
    assert runs["fp32"]["steps_skipped_on_overflow"] == 0 and runs["fp32"]["final_grad_scale"] is None
    assert runs["fp16"]["final_grad_scale"] is not None  # the GradScaler was in use
    # same weights and batches: the first half-precision loss is the fp32 one to ~1 %
    assert all(abs(r["losses"][0] - runs["fp32"]["losses"][0]) <= 0.03 * runs["fp32"]["losses"][0] for r in runs.values())

    text = results_md.read_text()
    assert text.startswith("# Benchmark results\n\nkept above\n")
    assert text.count("<!-- gpu-check:start -->") == 1 and text.rstrip().endswith("<!-- gpu-check:end -->")
    assert "Dry run on the CPU" in text and "not yet measured" in text and "MMSegmentation OCR-HR48" in text
    assert "| cuda_bf16 | skipped: needs CUDA |" in text


def test_the_section_is_replaced_in_place(tmp_path):
    gpu_check = _gpu_check_module()
    path = tmp_path / "RESULTS.md"
    path.write_text(f"before\n\n{gpu_check.START}\nold\n{gpu_check.END}\n\nafter\n")
    gpu_check.replace_section(path, f"{gpu_check.START}\nnew\n{gpu_check.END}")
    assert path.read_text() == f"before\n\n{gpu_check.START}\nnew\n{gpu_check.END}\n\nafter\n"
