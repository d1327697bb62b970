"""CPU numerics that make a run reproduce on another machine.

On the CPU, PyTorch's results depend on two things besides the code and the data: the number
of intra-op threads (it decides how reductions are split) and the SIMD instruction set that
ATen and oneDNN dispatch to (AVX2 and AVX-512 kernels round differently). The same training
run with 1 thread or with oneDNN limited to SSE4.1 ends at a different loss after one epoch,
and a few epochs later at a different mIoU. ``pin_cpu_numerics`` fixes both, so a pipeline
result computed on a 2-core AVX2 machine is reproduced bit for bit on a 16-core AVX-512 one.

It must run before the process's first tensor operation (the instruction set is chosen once);
the DVC stages that run tensor work (train, evaluate) call it first thing, ``hrseg
train/evaluate`` through ``--cpu-threads`` / ``--cpu-isa``. It does not affect CUDA kernels.
"""

from __future__ import annotations

import logging
import os
from typing import Literal

from hrseg.config import parse_choice

log = logging.getLogger(__name__)

CpuIsa = Literal["native", "avx2", "avx512", "default"]

#: instruction set -> environment read by ATen, oneDNN and MKL at their first use
_ISA_ENV: dict[str, dict[str, str]] = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "MKL_CBWR": "AVX2"},
    "avx512": {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "MKL_ENABLE_INSTRUCTIONS": "AVX512", "MKL_CBWR": "AVX512"},
    "default": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "MKL_CBWR": "COMPATIBLE"},
}


def parse_isa(text: str) -> CpuIsa:
    """A ``--cpu-isa`` value, checked (an unknown one names the valid ones)."""
    return parse_choice(CpuIsa, text, "CPU instruction set")


def pin_cpu_numerics(threads: int = 0, isa: CpuIsa = "native") -> None:
    """Use ``threads`` intra-op threads (0: leave torch's default) and the instruction set
    ``isa`` (``native``: whatever this CPU has best). Variables already set in the
    environment win, so a user can still override one. Warns when the CPU cannot provide
    ``isa`` (results may then differ from runs that had it).

    torch is imported here, not at the top, so that ``CpuIsa`` and ``parse_isa`` (read by the
    stages' params and the CLI's options) cost no torch import; the environment is still set
    before torch's first tensor operation, which is what the instruction set depends on."""
    import torch

    for key, value in _ISA_ENV.get(isa, {}).items():
        os.environ.setdefault(key, value)
    if threads > 0:
        torch.set_num_threads(threads)
    if isa != "native":
        got = torch.backends.cpu.get_cpu_capability().lower()
        if got != isa:
            log.warning("cpu_isa %s requested but this CPU runs %s kernels: results may differ from runs on %s machines", isa, got, isa)
