"""Nested dicts (YAML, JSON, ``key=value`` overrides) checked against dataclass annotations.

The typed-record machinery behind :mod:`xdlm_vision.config`: every key must be a field, every
value must match the field's annotation (ints are accepted for floats), and a wrong one raises
:class:`~xdlm_vision.errors.UserError` naming the dotted key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from xdlm_vision.errors import UserError


def field_types(cls: type) -> dict[str, Any]:
    """Field name -> resolved annotation of dataclass ``cls``."""
    return typing.get_type_hints(cls)


def dataclass_keys(cls: type, prefix: str = "") -> list[str]:
    """All dotted keys of the (nested) dataclass ``cls``."""
    keys = []
    for name, tp in field_types(cls).items():
        if dataclasses.is_dataclass(tp):
            keys.extend(dataclass_keys(tp, f"{prefix}{name}."))
        else:
            keys.append(f"{prefix}{name}")
    return keys


def _type_name(tp: Any) -> str:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return f"{_type_name(args[0])} or null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, key)
    ok = False
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        if isinstance(value, str):  # PyYAML reads "1e-3" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value, ok = float(value), True
    elif tp is str:
        ok = isinstance(value, str)
    elif tp is list:
        ok = isinstance(value, (list, tuple))
        value = list(value) if ok else value
    elif tp is dict:
        ok = isinstance(value, dict)
    if not ok:
        raise UserError(f"config key {key} expects {_type_name(tp)}, got {value!r}")
    return value


def build_dataclass(cls: type, raw: Any, prefix: str = "", root: type | None = None) -> Any:
    """Dataclass ``cls`` from a (possibly partial) nested dict, defaults filling the gaps.

    UserError names the dotted key of an unknown key (listing the valid keys of ``root``) or of a
    value of the wrong type.
    """
    root = root or cls
    if not isinstance(raw, dict):
        raise UserError(f"config section {prefix.rstrip('.') or '<root>'} must be a mapping, got {raw!r}")
    hints = field_types(cls)
    kwargs = {}
    for name, value in raw.items():
        key = f"{prefix}{name}"
        if name not in hints:
            raise UserError(f"unknown config key {key!r}; valid keys: {', '.join(dataclass_keys(root))}")
        tp = hints[name]
        kwargs[name] = (build_dataclass(tp, value, key + ".", root) if dataclasses.is_dataclass(tp)
                        else _coerce(value, tp, key))
    return cls(**kwargs)
