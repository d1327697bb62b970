"""What a running job takes from its machine: CPU numerics pinning (``cpu``), processes and
devices (``distributed``), progress display (``progress``) and the tracker interface the
library logs through (``tracker``).

Only ``cpu`` and ``host_memory`` are re-exported: the stages and the CLI commands call
``set_host_memory`` and ``pin_cpu_numerics`` first thing, before any tensor operation (the
instruction set is chosen at the first one; the allocator policy applies to what is
allocated after it).
"""

from hrseg.runtime.cpu import CpuIsa, parse_isa, pin_cpu_numerics
from hrseg.runtime.host_memory import HOST_MEMORY_HELP, HostMemory, parse_host_memory, set_host_memory

__all__ = ["HOST_MEMORY_HELP", "CpuIsa", "HostMemory", "parse_host_memory", "parse_isa", "pin_cpu_numerics", "set_host_memory"]
