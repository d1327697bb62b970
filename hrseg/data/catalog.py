"""The dataset catalogue: ``DATASETS`` (specs by name) and ``LAYOUTS`` (on-disk readers used by
``hrseg prepare``, by dataset name), plus ``custom``: your own dataset, whose spec comes from
its classes file (``get_spec("custom", classes)``; see ``hrseg.data.custom``)."""

from __future__ import annotations

import os
from types import MappingProxyType, ModuleType

import hrseg.data.ade20k as ade20k
import hrseg.data.cityscapes as cityscapes
import hrseg.data.cocostuff as cocostuff
import hrseg.data.custom as custom
import hrseg.data.lip as lip
import hrseg.data.pascal_ctx as pascal_ctx
from hrseg.data.errors import DatasetError
from hrseg.data.spec import DatasetSpec

DATASETS: MappingProxyType[str, DatasetSpec] = MappingProxyType(
    {
        "cityscapes": cityscapes.SPEC,
        "lip": lip.SPEC,
        "pascal_ctx": pascal_ctx.SPEC_59,
        "pascal_ctx60": pascal_ctx.SPEC_60,
        "cocostuff": cocostuff.SPEC,
        "ade20k": ade20k.SPEC,
    }
)

#: dataset name -> layout module (``discover``, ``format_line``, ``RAW_VALUES``, ``LAYOUT``...)
LAYOUTS: MappingProxyType[str, ModuleType] = MappingProxyType(
    {"cityscapes": cityscapes, "lip": lip, "pascal_ctx": pascal_ctx, "cocostuff": cocostuff, "ade20k": ade20k}
)


#: the dataset described by a classes file instead of a table here
CUSTOM = custom.NAME


def get_spec(name: str, classes: str | os.PathLike | None = None) -> DatasetSpec:
    """The spec called ``name``; for ``custom`` the one read from the classes file ``classes``.
    An unknown name raises ``DatasetError`` listing the valid ones."""
    if name == CUSTOM:
        if classes is None:
            raise DatasetError(f"dataset {CUSTOM!r} is described by its classes file: set data.classes in the recipe (default <data.root>/classes.yaml); hrseg predict: pass --recipe")
        return custom.custom_spec(classes)
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r}; expected one of {', '.join([*DATASETS, CUSTOM])}") from None


def datasets_of_layout(layout: str) -> list[str]:
    """The datasets that read the lists ``hrseg prepare <layout>`` writes (``DatasetSpec.layout``):
    ``pascal_ctx`` -> pascal_ctx and pascal_ctx60."""
    return [name for name, spec in DATASETS.items() if spec.layout == layout]


def get_layout(name: str) -> ModuleType:
    """The layout module for ``hrseg prepare NAME``; unknown names raise ``DatasetError``."""
    try:
        return LAYOUTS[name]
    except KeyError:
        spec = DATASETS.get(name)
        hint = f" ({spec.layout} lists serve both {' and '.join(datasets_of_layout(spec.layout))})" if spec is not None else ""
        raise DatasetError(f"unknown dataset {name!r} for prepare; expected one of {', '.join([*LAYOUTS, CUSTOM])}{hint}") from None
