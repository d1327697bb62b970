"""Package attributes that load their module at first use (PEP 562), for the package
``__init__``s that keep torch and friends out of light imports (``hrseg.data``,
``hrseg.models``, ``hrseg.evaluation``).

A package declares ``_LAZY = {"public name": "hrseg.package.module", ...}`` (a dict literal
that ``tests/test_layers.py`` reads as the package's imports and checks against its
``if TYPE_CHECKING:`` imports and ``__all__``) and ends with::

    __getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, table: Mapping[str, str], namespace: dict[str, Any]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package``: a name of ``table`` is taken
    from its module on first use and then kept in ``namespace`` (the next use is a plain
    attribute); any other missing name is the usual AttributeError."""

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(table[name]), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *table})

    return __getattr__, __dir__
