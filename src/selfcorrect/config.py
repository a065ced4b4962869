"""Typed configuration: dataclasses loaded from YAML or dicts, with validation.

Every field problem is reported as one line naming the file and the dotted field path.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import SelfCorrectError

T = TypeVar("T")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotation `tp`; return it converted (lists -> tuples)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        alternatives = [a for a in args if a is not type(None)]
        for inner in alternatives[:-1]:  # the first alternative that accepts the value wins
            try:
                return _convert(value, inner, where)
            except SelfCorrectError:
                pass
        return _convert(value, alternatives[-1], where)
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise SelfCorrectError(f"{where}: expected one of {list(choices)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise SelfCorrectError(f"{where}: expected a list, got {value!r}")
        (inner, _ellipsis) = typing.get_args(tp)
        return tuple(_convert(v, inner, f"{where}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise SelfCorrectError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if tp is float:
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SelfCorrectError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SelfCorrectError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp in (bool, str):
        if not isinstance(value, tp):
            raise SelfCorrectError(f"{where}: expected {_type_name(tp)}, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {where}")


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def from_dict(cls: type[T], data: dict, where: str = "") -> T:
    """Build dataclass `cls` from a mapping; unknown keys, missing required keys and wrong
    types are errors. A nested mapping changes only the keys it names of the field's default
    (`train: {sampling: {max_new_tokens: 64}}` keeps the training default top_p).

    `where` is the dotted path of this mapping, used in messages ("train.lr: ...").
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields))
        raise SelfCorrectError(f"{_join(where, unknown[0])}: unknown key (known here: {known})")
    missing = [n for n, f in fields.items() if n not in data and _default(f) is dataclasses.MISSING]
    if missing:
        raise SelfCorrectError(f"{_join(where, missing[0])}: required key missing")
    kwargs = {}
    for k, v in data.items():
        default = _default(fields[k])
        if isinstance(v, dict) and dataclasses.is_dataclass(default):
            v = {**dataclasses.asdict(default), **v}
        kwargs[k] = _convert(v, hints[k], _join(where, k))
    try:
        return cls(**kwargs)
    except SelfCorrectError as e:
        # __post_init__ checks name the field relative to their own dataclass.
        raise SelfCorrectError(f"{_join(where, str(e))}" if where else str(e)) from None


def read_yaml(path: str | Path) -> dict:
    """The top-level mapping of a YAML file; every error names the file (and line)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise SelfCorrectError(f"{path}: cannot read config ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise SelfCorrectError(f"{path}: not UTF-8 text (byte {e.start})") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise SelfCorrectError(f"{path}:{line} invalid YAML") from None
    if not isinstance(data, dict):
        raise SelfCorrectError(f"{path}: top level must be a mapping")
    return data


def load_yaml(cls: type[T], path: str | Path) -> T:
    """Load `cls` from a YAML file; every error names the file."""
    data = read_yaml(path)
    try:
        return from_dict(cls, data)
    except SelfCorrectError as e:
        raise SelfCorrectError(f"{path}: {e}") from None


def to_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj)


def check(condition: bool, name: str, message: str) -> None:
    """Validation helper for __post_init__: raise an error that names the field."""
    if not condition:
        raise SelfCorrectError(f"{name}: {message}")


__all__ = ["from_dict", "read_yaml", "load_yaml", "to_dict", "check"]
