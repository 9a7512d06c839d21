"""One lazy registry type for every kind of plug-in: tasks, teacher backends, student formats, answer types.

An entry is an object or a ``"module:attr"`` string imported on first use (so listing names never imports a task
module or a backend's dependencies). Unknown names raise the registry's error with the closest match and the valid
names; registering a name twice is an error unless ``replace=True``. A registry knows the base type of what it holds
(``Task``, ``StudentFormat``: instances; ``Teacher``, ``AnswerParser``: subclasses) and refuses anything else with
one error, whether it is registered directly or loaded from a ``"module:attr"`` string.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar

from ftcot_hf.errors import FtcotError, PluginTypeError

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """name -> object, filled by ``register`` (or lazily from ``"module:attr"`` strings)."""

    def __init__(
        self,
        kind: str,
        entries: Mapping[str, Any] | None = None,
        *,
        error: type[Exception] = FtcotError,
        base: type | None = None,
        classes: bool = False,
    ):
        """``base``: what every entry must be, an instance of it (or with ``classes=True`` a subclass); it is
        exported from the package (``ftcot_hf.<base name>``), which is how the error names it."""
        self.kind = kind
        self.error = error
        self.base = base
        self.classes = classes
        self._entries: dict[str, Any] = dict(entries or {})

    def check(self, obj: Any, name: str | None = None) -> None:
        """Raise :class:`PluginTypeError` unless ``obj`` is what this registry holds."""
        if self.base is None:
            return
        if self.classes:
            fits, what = isinstance(obj, type) and issubclass(obj, self.base), "a subclass"
        else:
            fits, what = isinstance(obj, self.base), "an instance"
        if not fits:
            named = f" {name!r}" if name else ""
            raise PluginTypeError(
                f"The {self.kind}{named} must be {what} of ftcot_hf.{self.base.__name__}, not {obj!r}."
            )

    def register(self, name: str, obj: T | str, *, replace: bool = False) -> T | str:
        if not isinstance(obj, str):  # a "module:attr" string is checked when it is loaded
            self.check(obj, name if isinstance(name, str) else None)
        if not isinstance(name, str) or not name:
            raise ValueError(f"A {self.kind} name must be a non-empty string, not {name!r}.")
        if name in self._entries and not replace:
            raise FtcotError(
                f"A {self.kind} named {name!r} is already registered; choose another name (or pass replace=True)."
            )
        self._entries[name] = obj
        return obj

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def pop(self, name: str, default: Any = None) -> Any:
        """Remove ``name`` and return what it held (dict-style, for code that cleans up after itself)."""
        return self._entries.pop(name, default)

    def get(self, name: str, default: Any = None) -> T | None:  # type: ignore[override]
        return self[name] if name in self._entries else default

    def __getitem__(self, name: str) -> T:
        if not isinstance(name, str) or name not in self._entries:
            raise self.error(self.unknown_message(name)) from None
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            entry = getattr(importlib.import_module(module), attr)
            self.check(entry, name)
            self._entries[name] = entry
        return entry

    def unknown_message(self, name: Any) -> str:
        close = difflib.get_close_matches(str(name), list(self._entries), n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return f"Unknown {self.kind} {name!r}.{hint} Valid {self.kind}s: {', '.join(self._entries)}."

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._entries)})"
