"""Host memory policy: keep freed memory in the process, so that CPU tensors are reused
without page faults (glibc's allocator).

Why: PyTorch allocates every CPU tensor with ``malloc`` and frees it when the last reference
goes. With glibc's default policy a block larger than the mmap threshold (128 KiB at first,
adapting up to 32 MiB) gets its own ``mmap`` and goes back to the kernel with ``munmap`` when
freed, and the heap's top is trimmed whenever more than the trim threshold is free there. A
segmentation model's activations are mostly such blocks (one 512-channel 1/4-resolution map of
a 256x512 batch of two is 32 MiB), so every forward and every training step asks the kernel for
the same memory again, and the kernel zeroes each 4 KiB page at its first touch: measured on
the 2-core development machine, a W18-Small-v2+OCR training step (256x512, batch 2) took
290-390 thousand minor page faults and 1.2-1.7 s of system time per step, a W48+OCR 512x1024
forward 630-780 thousand (``benchmarks/bench_host_memory.py``).

``keep`` (the default of ``hrseg train/evaluate/predict`` and of the pipeline) tells glibc not
to ``mmap`` large blocks (``M_MMAP_MAX = 0``: they come from the heap) and never to trim the
heap (``M_TRIM_THRESHOLD = -1``), so freed blocks are reused by the next allocations: after the
first step or forward there are next to no page faults. It is what PyTorch's CUDA caching
allocator does for GPU memory, at the same price: the resident size stays near the run's peak
instead of falling between steps. It changes where tensors live, never what is computed: the
results are bit-identical (tested; the pipeline's outputs reproduced unchanged).

``release`` leaves glibc's policy as the process started with it. Other C libraries (macOS,
musl) are left alone in either mode, with a debug log line.

The setting belongs to the process, like ``torch.set_num_threads``: entry points (the CLI
commands, the stage scripts) set it once, first thing; the library never sets it by itself.
"""

from __future__ import annotations

import ctypes
import logging
import platform
from typing import Literal

from hrseg.config import parse_choice

log = logging.getLogger(__name__)

HostMemory = Literal["keep", "release"]

#: the ``--host-memory`` option's text (``hrseg train``, ``evaluate``, ``predict``)
HOST_MEMORY_HELP = (
    "CPU memory policy: keep (freed tensor memory is reused without page faults, faster on CPU; "
    "the resident size stays near the run's peak) or release (the C library's default). Results are identical."
)

#: glibc's ``mallopt`` parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4


def parse_host_memory(text: str) -> HostMemory:
    """A ``--host-memory`` value, checked (an unknown one names the valid ones)."""
    return parse_choice(HostMemory, text, "host memory policy")


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    libc = ctypes.CDLL(None)
    return libc if hasattr(libc, "mallopt") else None


def set_host_memory(policy: HostMemory | str = "keep") -> bool:
    """Apply ``policy`` (checked by :func:`parse_host_memory`) to this process's allocator;
    True when the allocator was changed (``keep`` under glibc), False when it was left as it is."""
    policy = parse_host_memory(policy)
    if policy == "release":
        return False
    libc = _glibc()
    if libc is None:
        log.debug("host memory policy 'keep' needs glibc's mallopt; this C library's own policy stays")
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; the two settings are independent, so check both
    ok = libc.mallopt(M_MMAP_MAX, 0) == 1
    ok = libc.mallopt(M_TRIM_THRESHOLD, -1) == 1 and ok
    if not ok:
        log.warning("glibc refused the host memory policy 'keep' (mallopt): large CPU tensors may be re-faulted on every step")
    return ok
