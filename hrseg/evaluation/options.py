"""What ``hrseg evaluate``, ``predict`` and ``export`` need before any tensor work: the help of
``--align-corners/--no-align-corners``, the ``--scales`` parser and the error both raise.

This module imports no torch, and nothing that does: the command modules import it at their
top, so ``hrseg evaluate --help`` (and typer's checking of the options) costs no torch import
(about 2 s); the modules that do the work import it too (``evaluation.evaluate`` raises
``EvaluationError``).
"""

from __future__ import annotations

import math

from hrseg.errors import HrsegError

#: The help text of ``--align-corners/--no-align-corners`` (``hrseg evaluate``, ``predict``,
#: ``export``); what it describes is ``evaluation.alignment.decide_align_corners``.
ALIGN_CORNERS_HELP = (
    "align_corners of the model's bilinear resizes. Default: the value stored in an hrseg checkpoint, "
    "else the weight catalogue's for an official release (matched by file name, else by sha256), else the "
    "given recipe's; with none of these the command stops and asks for this flag. The flag overrides them "
    "all (with a warning where it contradicts the checkpoint or the catalogue). The log names the source used."
)


class EvaluationError(HrsegError):
    """Evaluation settings that cannot work."""


def parse_scales(text: str) -> tuple[float, ...]:
    """``"0.5,0.75,1.0"`` (commas and/or spaces) -> ``(0.5, 0.75, 1.0)``."""
    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        scales = tuple(float(p) for p in parts)
    except ValueError:
        raise EvaluationError(f"--scales {text!r}: expected numbers separated by commas, e.g. 0.5,0.75,1.0") from None
    if not scales or any(not (s > 0) or not math.isfinite(s) for s in scales):
        raise EvaluationError(f"--scales {text!r}: expected one or more positive numbers")
    return scales
