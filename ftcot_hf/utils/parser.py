"""Flags and YAML from config dataclasses, for every ``ftcot`` command that has them.

:class:`ConfigParser` is TRL's ``TrlParser`` (every flag is also a key of ``--config file.yaml``) plus what a command
with many options needs:

- **our options first, in groups**: each dataclass (or :func:`view` of one) is a titled group, in order; options a
  class inherits from transformers/TRL can be put in a last group that ``--help`` folds away (``--help-all`` shows it),
  so ``ftcot train --help`` does not open with 750 lines of ``TrainingArguments``;
- **YAML sections**: a view may belong to a section (``teach:``, ``train:``...) whose keys are the original class's
  field names (``teach: {model: ...}``), mapped to the view's flags (``--teacher_model``); flat keys work too;
- ``--config`` is listed in the help, and ``--no_x`` says what it does instead of repeating ``--x``'s sentence.

:func:`view` copies a dataclass's fields (some renamed, some with other defaults) into a new dataclass without the
original's ``__post_init__``, so a combined config (``RunConfig``) can hold the same fields as each command's own
config and build that config when a stage runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import typing
from collections.abc import Iterable, Sequence
from typing import Any

from trl import TrlParser

from ftcot_hf.errors import FtcotError

HELP_ALL = "--help-all"


def declared_fields(cls: type, package: str = "ftcot_hf") -> set[str]:
    """The names of ``cls``'s fields declared by classes of ``package`` (``FineTuneCoTConfig``'s own and the
    ``SFTConfig``/``TrainingArguments`` fields it re-declares with the paper's defaults), not merely inherited."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass.__module__.startswith(package):
            names.update(inspect.get_annotations(klass))
    return names & {f.name for f in dataclasses.fields(cls)}


def view(
    cls: type,
    *,
    title: str,
    section: str | None = None,
    only: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    rename: dict[str, str] | None = None,
    defaults: dict[str, Any] | None = None,
    types: dict[str, Any] | None = None,
    hidden: bool = False,
) -> type:
    """A dataclass with (some of) ``cls``'s fields: same types, help and defaults unless ``defaults``/``types`` say
    otherwise, flags renamed by ``rename`` (field name -> flag). ``section`` is the YAML key its values may sit under
    (by their field names); ``hidden`` folds the group away from ``--help``."""
    rename, defaults, types = rename or {}, defaults or {}, types or {}
    hints = typing.get_type_hints(cls)
    keep = set(only) if only is not None else None
    spec = []
    for f in dataclasses.fields(cls):
        if not f.init or f.name.startswith("_") or f.name in exclude or (keep is not None and f.name not in keep):
            continue
        meta = f.metadata  # the help (and choices) argparse shows
        if f.name in defaults:
            value = defaults[f.name]
            new = (dataclasses.field(default_factory=lambda v=value: list(v), metadata=meta) if isinstance(value, list)
                   else dataclasses.field(default=value, metadata=meta))  # fmt: skip
        elif f.default_factory is not dataclasses.MISSING:
            new = dataclasses.field(default_factory=f.default_factory, metadata=meta)
        else:
            new = dataclasses.field(default=f.default, metadata=meta)
        spec.append((rename.get(f.name, f.name), types.get(f.name, hints[f.name]), new))
    made = dataclasses.make_dataclass(f"{cls.__name__}View", spec)
    made.__module__ = __name__
    made._argument_group_name = title  # HfArgumentParser: one titled group per dataclass
    made._ftcot_source = cls
    made._ftcot_section = section
    made._ftcot_flags = {name: rename.get(name, name) for name in (f.name for f in dataclasses.fields(cls))
                         if rename.get(name, name) in {s[0] for s in spec}}  # fmt: skip
    made._ftcot_hidden = hidden
    return made


def section_values(config: Any, views: Sequence[type]) -> dict[str, Any]:
    """The values of ``config`` (a combined config holding the views' flags) under the original field names."""
    return {name: getattr(config, flag) for v in views for name, flag in v._ftcot_flags.items()}


def view_defaults(views: Sequence[type]) -> dict[str, Any]:
    """Each view field's default, by original field name."""
    out = {}
    for v in views:
        by_flag = {f.name: f for f in dataclasses.fields(v)}
        for name, flag in v._ftcot_flags.items():
            f = by_flag[flag]
            out[name] = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return out


class ConfigParser(TrlParser):
    """``TrlParser`` with grouped help (hidden groups behind ``--help-all``), YAML sections and honest ``--no_x``
    help. ``parse(argv)`` returns one instance per dataclass, as ``parse_args_and_config`` does."""

    def __init__(self, dataclass_types: Sequence[type], *, prog: str, description: str | None = None,
                 show_all: bool = False) -> None:  # fmt: skip
        hidden = [t for t in dataclass_types if getattr(t, "_ftcot_hidden", False)]
        epilog = None
        if hidden and not show_all:
            count = sum(len(dataclasses.fields(t)) for t in hidden)
            titles = "; ".join(t._argument_group_name for t in hidden)
            epilog = f"{count} more options ({titles}): see `{prog} {HELP_ALL}`."
        super().__init__(
            tuple(dataclass_types), prog=prog, usage=f"{prog} [--config FILE.yaml] [options]", description=description,
            epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter,
        )  # fmt: skip
        self._sections: dict[str, dict[str, str]] = {}
        self._owned: dict[str, set[str]] = {}
        for t in dataclass_types:
            section = getattr(t, "_ftcot_section", None)
            if section:
                self._sections.setdefault(section, {}).update(t._ftcot_flags)
                src = {f.name for f in dataclasses.fields(t._ftcot_source)}
                self._owned.setdefault(section, set()).update(src - set(t._ftcot_flags))
        for owned in self._owned.values():
            owned -= {name for flags in self._sections.values() for name in flags}
        hidden_flags = {f"--{f.name}" for t in hidden for f in dataclasses.fields(t)} if not show_all else set()
        for action in self._actions:
            long = next((s for s in action.option_strings if s.startswith("--")), "")
            if long.startswith("--no_") and action.nargs == 0 and action.const is False:  # HfArgumentParser's negation
                action.help = f"Turn off --{action.dest}."
            if long in hidden_flags or (long.startswith("--no") and f"--{action.dest}" in hidden_flags):
                action.help = argparse.SUPPRESS
        self.add_argument(
            "--config", metavar="FILE.yaml", default=argparse.SUPPRESS,
            help="Read options from a YAML file (flag names as keys" + (", or sections: " + ", ".join(
                f"{s}:" for s in self._sections) if self._sections else "") + "); flags given beside it win.",
        )  # fmt: skip
        self.add_argument(HELP_ALL, action="help", help="Show every option, the inherited ones too.")

    def set_defaults_with_config(self, **kwargs: Any) -> list[str]:
        return super().set_defaults_with_config(**self.flatten(kwargs))

    def flatten(self, values: dict[str, Any]) -> dict[str, Any]:
        """YAML sections (``teach: {model: m}``) to flags (``teacher_model: m``); flat keys pass as they are."""
        flat: dict[str, Any] = {}
        for key, value in values.items():
            if key in self._sections and isinstance(value, dict):
                flags = self._sections[key]
                for name, item in value.items():
                    if name not in flags:
                        if name in self._owned.get(key, ()):
                            raise FtcotError(f"--config: `{key}.{name}` is set by the run itself (or at the top "
                                             f"level of the file), not in the {key}: section.")  # fmt: skip
                        raise FtcotError(
                            f"--config: unknown key `{key}.{name}`; the {key}: section takes "
                            f"{', '.join(sorted(flags))}."
                        )
                    flat[flags[name]] = item
            else:
                flat[key] = value
        return flat

    def parse(self, argv: Sequence[str]) -> tuple[Any, ...]:
        return tuple(self.parse_args_and_config(list(argv)))


def parser_for(dataclass_types: Sequence[type], argv: Sequence[str], *, prog: str,
               description: str | None = None) -> ConfigParser:  # fmt: skip
    """The parser of one command; ``--help-all`` in ``argv`` unfolds the hidden groups."""
    return ConfigParser(dataclass_types, prog=prog, description=description, show_all=HELP_ALL in argv)


def _title(cls: type) -> str:
    """A group title from the class docstring's first line (``Configuration of ``ftcot teach``.``)."""
    doc = (cls.__doc__ or "").strip().splitlines()
    first = doc[0].rstrip(".") if doc and not doc[0].startswith(cls.__name__ + "(") else ""
    first = re.sub(r":\w+:`", "`", first).replace("``", "`")
    return f"{first} ({cls.__name__})" if first else cls.__name__


def command_parser(dataclass_types: Sequence[type], argv: Sequence[str], *, prog: str,
                   description: str | None = None) -> CommandParser:  # fmt: skip
    """The parser of a command whose configs may inherit transformers/TRL options (``FineTuneCoTConfig``): each such
    class shows its own fields in its group and the inherited ones in a last group behind ``--help-all``."""
    return CommandParser(dataclass_types, argv, prog=prog, description=description)


class CommandParser:
    """Parses flags and ``--config`` into one instance of each of ``dataclass_types`` (their ``__post_init__`` runs
    once, on the whole set of values), with our options first in ``--help``."""

    def __init__(self, dataclass_types: Sequence[type], argv: Sequence[str], *, prog: str,
                 description: str | None = None) -> None:  # fmt: skip
        self.parts: list[tuple[type, list[type]]] = []
        for cls in dataclass_types:
            fields = {f.name for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")}
            own = declared_fields(cls) & fields
            title = getattr(cls, "_argument_group_name", None) or _title(cls)
            if own == fields:
                self.parts.append((cls, [view(cls, title=title)]))
                continue
            inherited = view(
                cls,
                only=fields - own,
                hidden=True,
                title=f"Inherited options of {cls.__name__} (transformers TrainingArguments, TRL)",
            )
            self.parts.append((cls, [view(cls, only=own, title=title), inherited]))  # fmt: skip
        ordered = [views[0] for _, views in self.parts] + [views[1] for _, views in self.parts if len(views) > 1]
        self._order = ordered
        self.parser = parser_for(ordered, argv, prog=prog, description=description)

    def parse(self, argv: Sequence[str]) -> tuple[Any, ...]:
        parsed = dict(zip(self._order, self.parser.parse(argv), strict=True))
        out = []
        for cls, views in self.parts:
            values: dict[str, Any] = {}
            for v in views:
                values.update({name: getattr(parsed[v], flag) for name, flag in v._ftcot_flags.items()})
            out.append(cls(**values))
        return tuple(out)
