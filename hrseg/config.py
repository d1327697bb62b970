"""Typed configuration: frozen dataclasses filled from plain dicts (YAML), strictly.

One converter, ``from_dict``, turns nested dicts into nested frozen dataclasses. An unknown
key (with a did-you-mean suggestion), a missing required key, a value of the wrong type or
out of its range (``bounded`` fields) raises ``ConfigError`` naming the source file, the line
when known and the full dotted key path. ``to_dict`` goes back to plain data (for MLflow
params and the resolved-config artifact). ``apply_overrides`` implements ``--set a.b=value``.

YAML is read with PyYAML's safe loader plus the YAML 1.2 float rule, so ``1e-3`` is a number
(YAML 1.1 wants ``1.0e-3``; DVC, which writes params files, reads them as YAML 1.2).

The library never reads ``params.yaml``; callers pass dicts or recipe files explicitly.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from hrseg.errors import HrsegError

T = TypeVar("T")


class ConfigError(HrsegError):
    """A configuration value is unknown, missing, of the wrong type or out of range.

    ``key`` is the dotted path of the offending value when there is one (``train.lr``), so a
    caller that knows where each key came from can name the file and line."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats: ``1e-3`` and ``5E+4`` are numbers, not strings."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_choice(choices: Any, text: str, what: str) -> Any:
    """``text`` when it is one of the ``Literal`` type ``choices``'s values (a command-line
    option's text, say), else a ``ConfigError`` naming ``what``, the value and the valid ones."""
    allowed = get_args(choices)
    if text not in allowed:
        raise ConfigError(f"unknown {what} {text!r}; expected one of {', '.join(map(str, allowed))}")
    return text


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` with YAML 1.2 floats (``1e-3``)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def bounded(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None, lt: float | None = None) -> Any:
    """A dataclass field whose numeric value (or each value of a tuple) must lie in a range;
    ``from_dict`` checks it and names the key: ``batch_size: int = bounded(3, ge=1)``."""
    return dataclasses.field(default=default, metadata={"range": (ge, gt, le, lt)})


def _check_range(value: Any, limits: tuple, where: str) -> None:
    ge, gt, le, lt = limits
    for i, item in enumerate(value if isinstance(value, (tuple, list)) else [value]):
        if item is None or isinstance(item, bool) or not isinstance(item, (int, float)):
            continue
        at = f"{where}[{i}]" if isinstance(value, (tuple, list)) else where
        for bound, ok, text in ((ge, item >= (ge or 0), ">="), (gt, item > (gt or 0), ">"), (le, item <= (le or 0), "<="), (lt, item < (lt or 0), "<")):
            if bound is not None and not ok:
                raise ConfigError(f"{at}: must be {text} {bound:g}, got {item!r}", key=where)


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {_describe(value)}", key=where)
        return _from_mapping(tp, value, where)
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed or type(value) is not type(allowed[allowed.index(value)]):
            raise ConfigError(f"{where}: expected one of {', '.join(map(repr, allowed))}, got {_describe(value)}", key=where)
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {_describe(value)} matches none of {tp}", key=where)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {_describe(value)}", key=where)
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}", key=where)
            items = [_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value))]
        else:
            item_type = args[0] if args else Any
            items = [_convert(item_type, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {_describe(value)}", key=where)
        key_type, value_type = get_args(tp) or (Any, Any)
        return {_convert(key_type, k, where): _convert(value_type, v, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {_describe(value)}", key=where)
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {_describe(value)}", key=where)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {_describe(value)}", key=where)
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {_describe(value)}", key=where)
        return value
    if tp is Path:
        if not isinstance(value, (str, os.PathLike)):
            raise ConfigError(f"{where}: expected a path, got {_describe(value)}", key=where)
        return Path(value)
    raise TypeError(f"unsupported config type {tp!r} at {where}")  # a programming error


def unknown_keys_error(unknown: typing.Sequence[Any], valid: typing.Sequence[str], where: str = "") -> ConfigError:
    """The error for keys that are not fields: names them (under section ``where``), suggests
    the closest valid key for the first and lists the valid ones."""
    prefix = f"{where}." if where else ""
    first = str(unknown[0])
    close = difflib.get_close_matches(first, list(valid), n=1, cutoff=0.6)
    hint = f" (did you mean {prefix + close[0]}?)" if close else ""
    return ConfigError(
        f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(prefix + str(k) for k in unknown)}{hint}; "
        f"valid keys{' under ' + where if where else ''}: {', '.join(valid)}",
        key=prefix + first,
    )


def _from_mapping(cls: type[T], data: dict, where: str) -> T:
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    prefix = f"{where}." if where else ""
    unknown = sorted(set(data) - set(fields), key=str)
    if unknown:
        raise unknown_keys_error(unknown, list(fields), where)
    kwargs = {}
    for name, field in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], prefix + name)
            if "range" in field.metadata:
                _check_range(kwargs[name], field.metadata["range"], prefix + name)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required key {prefix + name}", key=prefix + name)
    return cls(**kwargs)


def from_dict(cls: type[T], data: dict, *, source: str | os.PathLike | None = None, where: typing.Callable[[str], str | None] | None = None) -> T:
    """Build the dataclass ``cls`` from ``data``; errors name ``source`` and the key path.

    ``where(key)``, when given, names the origin of a dotted key (``"params.yaml:12"``); an
    error about that key is then prefixed with it instead of ``source``."""
    try:
        if not isinstance(data, dict):
            raise ConfigError(f"expected a mapping at the top level, got {_describe(data)}")
        return _from_mapping(cls, data, "")
    except ConfigError as exc:
        origin = where(exc.key) if where is not None and exc.key else None
        if origin is None and source is None:
            raise
        raise ConfigError(f"{origin or source}: {exc}", key=exc.key) from None


def to_dict(obj: Any) -> Any:
    """Dataclasses -> dicts, tuples -> lists, paths -> strings (YAML/JSON friendly)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def load_yaml(path: str | os.PathLike) -> dict:
    """Read a YAML mapping; a syntax error names the file and line."""
    return load_yaml_with_lines(path)[0]


def load_yaml_with_lines(path: str | os.PathLike) -> tuple[dict, dict[str, int]]:
    """Read a YAML mapping and the line (1-based) of every dotted key in it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        data = parse_yaml(text)
        lines = _key_lines(yaml.compose(text, Loader=_Loader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{line} invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data, lines


def _key_lines(node: yaml.Node | None, prefix: str = "") -> dict[str, int]:
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = f"{prefix}{key.value}"
            lines[name] = key.start_mark.line + 1
            lines.update(_key_lines(value, name + "."))
    return lines


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.lr=0.02"`` -> (``"train.lr"``, ``0.02``); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form key=value")
    try:
        value = parse_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def apply_overrides(data: dict, overrides: typing.Iterable[str] | dict[str, Any]) -> dict:
    """Return a copy of ``data`` with dotted-key overrides applied (``--set train.lr=0.02``).

    Missing intermediate sections are created; validating the keys is ``from_dict``'s job, so a
    typo fails there with the full key path and the valid keys."""
    result = copy.deepcopy(data)
    items = overrides.items() if isinstance(overrides, dict) else (parse_override(o) for o in overrides)
    for key, value in items:
        node = result
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"cannot override {key!r}: {'.'.join(parts[: depth + 1])!r} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return result
