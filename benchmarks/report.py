"""The last step of a benchmark script's ``main``: print its Markdown report and write the
report and the raw result where asked. No torch import, so workers that must set process-wide
state before torch loads (``bench_host_memory.py``) can import it."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path


def write_report(script: str, argv: list[str] | None, result: dict, markdown_of: Callable[[dict, str], str], json_path: Path | None, md_path: Path | None) -> str:
    """``markdown_of(result, command)`` printed, and written to ``md_path``; ``result`` as JSON
    to ``json_path``. ``command`` is how the script was run (``python benchmarks/<script> ...``)."""
    command = f"python benchmarks/{script} " + " ".join(argv if argv is not None else sys.argv[1:])
    markdown = markdown_of(result, command.strip())
    print(markdown)
    if json_path:
        json_path.write_text(json.dumps(result, indent=2) + "\n")
    if md_path:
        md_path.write_text(markdown)
    return markdown
