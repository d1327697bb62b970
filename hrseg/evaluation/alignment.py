"""Which ``align_corners`` a checkpoint is run with, and why: one decision for ``evaluate``,
``predict`` and ``export``.

The model is the one carrier of ``align_corners`` (``model.align_corners``, fixed when it is
built; every resize of its logits reads it there). This module decides the value a model is
built with for a checkpoint, from what is known about the file (``decide_align_corners``):

1. an explicit ``--align-corners/--no-align-corners`` (``flag``) wins; where it contradicts the
   file's own value (2.) a warning names both;
2. the file's own value: an hrseg checkpoint stores it (``model_config.align_corners``); an
   official release is looked up in the weight catalogue (``hrseg.weights.catalogue``: by file
   name, else by sha256). A recipe that contradicts it is overruled, with a warning naming both;
3. the recipe the user gave;
4. none of these: an error that says which flag to pass.

The decision is logged as one INFO line, e.g.
``align_corners=False (weight catalogue: hrnet_cs_8090_torch11.pth)``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hrseg.errors import HrsegError
from hrseg.models.checkpoint import detect_kind, read_checkpoint
from hrseg.recipe import Recipe
from hrseg.weights.catalogue import find_weight_file

log = logging.getLogger(__name__)


class AlignCornersError(HrsegError):
    """Nothing says which ``align_corners`` a checkpoint was trained with."""


@dataclass(frozen=True)
class AlignCorners:
    """A decided ``align_corners`` and the source that decided it."""

    value: bool
    source: str  # "flag --no-align-corners", "weight catalogue: <file>", "stored in checkpoint <file>", "recipe <name>"

    def __str__(self) -> str:
        return f"align_corners={self.value} ({self.source})"


@dataclass(frozen=True)
class _FileValue:
    value: bool
    source: str  # for the INFO line
    whose: str  # for warnings: "<file>'s catalogue entry", "<file>'s stored model_config"


def flag_name(value: bool) -> str:
    return "--align-corners" if value else "--no-align-corners"


def _file_value(checkpoint: Path, data: Mapping[str, Any]) -> tuple[_FileValue | None, str]:
    """What the file itself says (``None`` if nothing), and, if nothing, why (for the error)."""
    if detect_kind(data) == "hrseg":
        stored = data.get("model_config")
        if isinstance(stored, Mapping) and isinstance(stored.get("align_corners"), bool):
            return _FileValue(stored["align_corners"], f"stored in checkpoint {checkpoint.name}", f"{checkpoint.name}'s stored model_config"), ""
        return None, "it is an hrseg checkpoint without model_config.align_corners"
    found = find_weight_file(checkpoint)
    if found is None:
        return None, "it is not an hrseg checkpoint and the weight catalogue does not know it (by file name or sha256)"
    entry, how = found
    if entry.align_corners is None:
        return None, f"its weight catalogue entry {entry.name!r} is an ImageNet backbone, with no align_corners"
    by = "" if how == "file name" else f", matched by sha256 to {checkpoint.name}"
    return _FileValue(entry.align_corners, f"weight catalogue: {entry.filename}{by}", f"{checkpoint.name}'s catalogue entry {entry.name!r}"), ""


def decide_align_corners(
    checkpoint: str | os.PathLike,
    *,
    flag: bool | None = None,
    recipe: Recipe | None = None,
    data: Mapping[str, Any] | None = None,
) -> AlignCorners:
    """The ``align_corners`` to run ``checkpoint`` with (rules in the module docstring),
    logged as one INFO line. ``flag`` is the user's ``--align-corners/--no-align-corners``;
    ``recipe`` the recipe the user gave (``None`` when the settings come from elsewhere);
    ``data`` the already-read checkpoint (read here when not given)."""
    checkpoint = Path(checkpoint)
    if data is None:
        data = read_checkpoint(checkpoint)
    own, why_not = _file_value(checkpoint, data)
    if flag is not None:
        if own is not None and own.value != flag:
            log.warning("%s contradicts %s (trained with align_corners=%s); using the flag", flag_name(flag), own.whose, own.value)
        decided = AlignCorners(bool(flag), f"flag {flag_name(flag)}")
    elif own is not None:
        if recipe is not None and recipe.model.align_corners != own.value:
            log.warning(
                "recipe %s says align_corners=%s but %s says %s (trained with it); using %s (pass %s to override)",
                recipe.name, recipe.model.align_corners, own.whose, own.value, own.value, flag_name(recipe.model.align_corners),
            )  # fmt: skip
        decided = AlignCorners(own.value, own.source)
    elif recipe is not None:
        decided = AlignCorners(bool(recipe.model.align_corners), f"recipe {recipe.name}")
    else:
        raise AlignCornersError(
            f"{checkpoint}: cannot tell which align_corners the model was trained with: {why_not}, and no recipe was given. "
            "Pass --align-corners or --no-align-corners (the official HRNetV2 FCN models of Cityscapes, LIP and "
            "PASCAL-Context were trained with --no-align-corners, the other released models with --align-corners)"
        )
    log.info("%s", decided)
    return decided


def with_align_corners(recipe: Recipe, decided: AlignCorners) -> Recipe:
    """``recipe`` with ``model.align_corners`` set to the decided value."""
    if recipe.model.align_corners == decided.value:
        return recipe
    return dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, align_corners=decided.value))
