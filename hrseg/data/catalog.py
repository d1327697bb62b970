"""The dataset catalogue: ``DATASETS`` (specs by name) and ``LAYOUTS`` (on-disk readers used by
``hrseg prepare``, by dataset name)."""

from __future__ import annotations

from types import MappingProxyType, ModuleType

from hrseg.data import ade20k, cityscapes, cocostuff, lip, pascal_ctx
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


def get_spec(name: str) -> DatasetSpec:
    """The spec called ``name``; an unknown name raises ``DatasetError`` listing the valid ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}") from None


def get_layout(name: str) -> ModuleType:
    """The layout module for ``hrseg prepare NAME``; unknown names raise ``DatasetError``."""
    try:
        return LAYOUTS[name]
    except KeyError:
        hint = " (pascal_ctx lists serve both pascal_ctx and pascal_ctx60)" if name == "pascal_ctx60" else ""
        raise DatasetError(f"unknown dataset {name!r} for prepare; expected one of {', '.join(LAYOUTS)}{hint}") from None
