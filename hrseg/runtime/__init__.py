"""What a running job takes from its machine: CPU numerics pinning (``cpu``), processes and
devices (``distributed``), progress display (``progress``) and the tracker interface the
library logs through (``tracker``).

Only ``cpu`` is re-exported: the stages call ``pin_cpu_numerics`` first thing, before any
tensor operation (the instruction set is chosen at the first one).
"""

from hrseg.runtime.cpu import CpuIsa, parse_isa, pin_cpu_numerics

__all__ = ["CpuIsa", "parse_isa", "pin_cpu_numerics"]
