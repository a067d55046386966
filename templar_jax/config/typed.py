"""Frozen dataclasses as a config schema: read nested mappings into them, checking every key and
type, write them back, and describe their fields for the generated docs.

Types understood: int, float (ints accepted), str, bool, `Literal[...]` (a closed set of values),
`X | None`, unions of those, `tuple[T, T]` / `tuple[T, ...]` (from a YAML list), `dict` /
`Mapping[str, Any]`, `Any`, and nested dataclasses (a nested section). A field's doc is its
`metadata["doc"]` (see `doc`) or, for dataclasses owned elsewhere, a `name: text` line of the
class docstring.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from dataclasses import MISSING, dataclass
from typing import Any, Callable, Literal, Mapping, get_args, get_origin

from templar_jax.config.errors import RunConfigError


def doc(text: str, default: Any = MISSING, *, default_factory: Callable[[], Any] | Any = MISSING) -> Any:
    """A dataclass field documented by `text` (shown in docs/run-config.md)."""
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"doc": text})


@dataclass(frozen=True)
class FieldInfo:
    """One documented leaf key of a schema."""

    key: str  # dotted, e.g. "inner.lr"
    type_name: str
    required: bool
    default: Any
    doc: str


def is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def has_default(f: dataclasses.Field) -> bool:
    return f.default is not MISSING or f.default_factory is not MISSING


def field_doc(cls: type, f: dataclasses.Field) -> str:
    if "doc" in f.metadata:
        return f.metadata["doc"]
    owner = next((k for k in cls.__mro__ if f.name in k.__dict__.get("__annotations__", {})), cls)
    text = inspect.getdoc(owner) or ""
    match = re.search(rf"^\s*{re.escape(f.name)}:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else ""


def type_name(tp: Any) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args if a is not type(None))
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {type_name(args[0])}"
        return f"list of {len(args)} {type_name(args[0])}"
    if origin is not None and issubclass(origin, Mapping) or tp is dict:
        return "mapping"
    if tp is Any:
        return "any"
    return getattr(tp, "__name__", str(tp))


def read(cls: type, data: Any, *, path: str = "", source: str = "config") -> Any:
    """Build `cls` from a nested mapping; `RunConfigError` names the first bad key."""
    where = f"section '{path}'" if path else "top level"
    if not isinstance(data, Mapping):
        raise RunConfigError(f"{source}: {where} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            if not path:
                raise RunConfigError(f"{source}: unknown section '{key}' (known: {sorted(fields)})")
            raise RunConfigError(f"{source}: unknown key '{path}.{key}'")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in fields.items():
        key = f"{path}.{name}" if path else name
        if name in data:
            kwargs[name] = convert(hints[name], data[name], key=key, source=source)
        elif not has_default(f):
            if not is_section(hints[name]):
                raise RunConfigError(f"{source}: missing required key '{key}'")
            kwargs[name] = read(hints[name], {}, path=key, source=source)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:  # a section's own consistency check
        raise RunConfigError(f"{source}: {where}: {err}") from None


def convert(tp: Any, value: Any, *, key: str, source: str) -> Any:
    """`value` as type `tp`, or `RunConfigError` naming `key`."""
    ok, out = _try(tp, value, key=key, source=source)
    if ok:
        return out
    got = "bool" if isinstance(value, bool) else type(value).__name__
    raise RunConfigError(f"{source}: '{key}' must be {type_name(tp)}, got {got} {value!r}")


def _try(tp: Any, value: Any, *, key: str, source: str) -> tuple[bool, Any]:
    origin, args = get_origin(tp), get_args(tp)
    if is_section(tp):
        return True, read(tp, value, path=key, source=source)
    if tp is Any:
        return True, value
    if origin is Literal:
        return (not isinstance(value, bool) or bool in map(type, args)) and value in args, value
    if origin in (typing.Union, types.UnionType):
        for arm in args:
            ok, out = _try(arm, value, key=key, source=source)
            if ok:
                return True, out
        return False, None
    if tp is type(None):
        return value is None, None
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False, None
        arms = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(arms) != len(value):
            return False, None
        items = [_try(a, v, key=key, source=source) for a, v in zip(arms, value)]
        return all(ok for ok, _ in items), tuple(out for _, out in items)
    if tp is dict or (origin is not None and issubclass(origin, Mapping)):
        return isinstance(value, Mapping), dict(value) if isinstance(value, Mapping) else None
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else None
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    return isinstance(value, tp), value


def to_dict(obj: Any) -> Any:
    """Plain nested dicts/lists of a config dataclass (what YAML would hold)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def describe(cls: type, path: str = "") -> list[FieldInfo]:
    """Every leaf key of `cls` (nested sections flattened), in declaration order (a subclass's
    own keys before the inherited ones)."""
    hints = typing.get_type_hints(cls)
    out: list[FieldInfo] = []
    own = cls.__dict__.get("__annotations__", {})
    for f in sorted(dataclasses.fields(cls), key=lambda f: f.name not in own):  # own keys first
        if not f.init:
            continue
        key = f"{path}.{f.name}" if path else f.name
        if is_section(hints[f.name]):
            out += describe(hints[f.name], key)
            continue
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else MISSING)
        out.append(FieldInfo(key, type_name(hints[f.name]), not has_default(f), default, field_doc(cls, f)))
    return out
