#!/usr/bin/env bash
# The GPU check, at most 8 minutes on one GPU: CUDA tests, AMP training steps under DDP +
# SyncBatchNorm, W48+OCR inference at 1024x2048 per path. See benchmarks/gpu_check.py.
#
#   bash benchmarks/gpu_check.sh            # on a CUDA machine: writes benchmarks/results/gpu.json
#                                           # and the gpu-check section of benchmarks/RESULTS.md
#   bash benchmarks/gpu_check.sh --dry [--out FILE] [--results-md FILE]
#                                           # CPU, tiny sizes (automatic without CUDA); used by
#                                           # tests/test_gpu_check.py
#
# PYTHON selects the interpreter (default: .venv/bin/python if present, else python3).
# Time limits: CUDA tests 150 s, the rest 330 s (its own budget; the hard timeout adds 60 s).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

dry=0
for arg in "$@"; do [[ "$arg" == "--dry" ]] && dry=1; done
if [[ $dry == 0 ]] && ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: no CUDA GPU visible; running the dry run on the CPU" >&2
    dry=1
    set -- --dry "$@"
fi

summary="not run (dry run: they need CUDA)"
if [[ $dry == 0 ]]; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    log=$(mktemp)
    # the tests that run only with CUDA (the others skip themselves where a GPU is present)
    set +e
    timeout 150 "$PYTHON" -m pytest -q -rs -p no:cacheprovider tests/test_fast.py -k cuda 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    summary="$(grep -E '(passed|failed|error|skipped)' "$log" | tail -n 1) (exit status $rc; \`pytest tests/test_fast.py -k cuda\`)"
    rm -f "$log"
fi

timeout 390 "$PYTHON" benchmarks/gpu_check.py --budget-s 330 --cuda-tests "$summary" "$@"
