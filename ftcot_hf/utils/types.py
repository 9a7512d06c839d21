"""Field types of a config dataclass checked at construction: a value of the wrong type (``TeachConfig(degree="4")``,
``tasks: 5`` in a YAML, which no argparse type converts) is refused in one line naming the field, instead of failing
later, far away, as a bare ``TypeError``."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from ftcot_hf.errors import FtcotError


def _kinds(hint: Any) -> list[Any]:
    """The alternatives of a type hint (``int | None`` -> [int, None])."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [k for arg in typing.get_args(hint) for k in _kinds(arg)]
    return [None if hint is type(None) else hint]


def _accepts(kind: Any, value: Any) -> bool | None:
    """Whether ``value`` is a ``kind``; None when this checker does not know the kind (no opinion)."""
    origin = typing.get_origin(kind) or kind
    if kind is None:
        return value is None
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is str:
        return isinstance(value, str)
    if origin is list:
        (item,) = typing.get_args(kind) or (Any,)
        return isinstance(value, list | tuple) and all(_accepts(item, v) is not False for v in value)
    if origin is dict:
        return isinstance(value, dict)
    return None


_NAMES = {None: "null", bool: "true or false", int: "an integer", float: "a number", str: "a string",
          dict: "a mapping"}  # fmt: skip


def _name(kind: Any) -> str:
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind) or (Any,)
        return f"a list of {_name(item).removeprefix('a ').removeprefix('an ')}s"
    return _NAMES.get(typing.get_origin(kind) or kind, getattr(kind, "__name__", str(kind)))


def type_problem(value: Any, hint: Any) -> str | None:
    """What ``value`` should be instead (``"an integer or null"``) when it is not of type ``hint``, else None."""
    verdicts = [_accepts(k, value) for k in _kinds(hint)]
    if any(verdicts) or None in verdicts:
        return None
    return " or ".join(_name(k) for k in _kinds(hint))


def check_options(options: dict[str, Any], function: Any, where: str) -> None:
    """Raise :class:`FtcotError` naming the first of ``options`` (keyword arguments for ``function``, or a mapping
    name -> type) whose value is not of the type declared for it (``{"timeout": "abc"}`` for ``timeout: float``);
    ``where`` says where the options were given (``"--teacher_kwargs"``)."""
    if isinstance(function, dict):  # the hints already: {name: type}
        hints = function
    else:
        try:
            hints = typing.get_type_hints(function)
        except Exception:  # noqa: BLE001 -- a hint naming a type imported only for type checkers: no opinion
            return
    for name, value in options.items():
        expected = type_problem(value, hints[name]) if name in hints else None
        if expected is not None:
            raise FtcotError(f"{where}: {name} must be {expected}, got {value!r} ({type(value).__name__}).")


def check_field_types(config: Any, names: typing.Iterable[str] | None = None) -> None:
    """Raise :class:`FtcotError` naming the first field of ``config`` (a dataclass instance) whose value is not of its
    declared type. Fields whose type this checker does not know are left alone; ``names`` limits the check."""
    cls = type(config)
    hints = typing.get_type_hints(cls)
    wanted = None if names is None else set(names)
    for f in dataclasses.fields(cls):
        if wanted is not None and f.name not in wanted or f.name not in hints:
            continue
        value = getattr(config, f.name)
        expected = type_problem(value, hints[f.name])
        if expected is None:
            continue
        raise FtcotError(
            f"{cls.__name__}.{f.name} (--{f.name}) must be {expected}, got {value!r} ({type(value).__name__}); "
            f"fix it where it is set (a --config YAML, or {cls.__name__}({f.name}=...))."
        )
