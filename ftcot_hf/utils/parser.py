"""Flags and YAML from config dataclasses, for every ``ftcot`` command that has them.

:class:`ConfigParser` is TRL's ``TrlParser`` (every flag is also a key of ``--config file.yaml``) plus what a command
with many options needs:

- **our options first, in groups**: each dataclass (or :func:`view` of one) is a titled group, in order; options a
  class inherits from transformers/TRL can be put in a last group that ``--help`` folds away (``--help-all`` shows it),
  so ``ftcot train --help`` does not open with 750 lines of ``TrainingArguments``;
- **YAML sections**: a view may belong to a section (``teach:``, ``train:``...) whose keys are the original class's
  field names (``teach: {model: ...}``), mapped to the view's flags (``--teacher_model``); flat keys work too;
- ``--config`` is listed in the help, and ``--no_x`` says what it does instead of repeating ``--x``'s sentence;
- **what the command acts on first**: ``lead`` names the flags (``--student``, ``--dataset``, ``--task``...) shown in
  a first group, ahead of the hyper-parameters;
- **one set of names**: a config class's ``FLAG_ALIASES`` (``{"teacher_model": "model"}``) and the original name of a
  field a view renamed (``ftcot run --model`` for ``--teacher_model``) are accepted as aliases; a name two fields of
  the command could claim (``ftcot run --limit``) is refused, naming both;
- **mistakes in our words**: no prefix abbreviations (``--num_train_epoch`` is not ``--num_train_epochs``), and an
  unknown flag or YAML key (top level or in a section) is one line with the closest names (:class:`FtcotError`).

:func:`view` copies a dataclass's fields (some renamed, some with other defaults) into a new dataclass without the
original's ``__post_init__``, so a combined config (``RunConfig``) can hold the same fields as each command's own
config and build that config when a stage runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
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
                 show_all: bool = False, lead: Sequence[str] = ()) -> None:  # fmt: skip
        hidden = [t for t in dataclass_types if getattr(t, "_ftcot_hidden", False)]
        epilog = None
        if hidden and not show_all:
            count = sum(len(dataclasses.fields(t)) for t in hidden)
            titles = "; ".join(t._argument_group_name for t in hidden)
            epilog = f"{count} more options ({titles}): see `{prog} {HELP_ALL}`."
        super().__init__(
            tuple(dataclass_types), prog=prog, usage=f"{prog} [--config FILE.yaml] [options]", description=description,
            epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
        )  # fmt: skip
        self._prog = prog
        self._config_path: str | None = None
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
        hidden_flags -= {f"--{name}" for name in lead}  # an inherited flag the command acts on (--output_dir) shows
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
        self._aliases = self._add_aliases(dataclass_types)
        self._lead_group(lead)

    def _add_aliases(self, dataclass_types: Sequence[type]) -> dict[str, str]:
        """Register each alias as another option string of its field's flag; returns {alias: dest}. An alias two
        fields could claim becomes a flag that refuses itself, naming both (a guess would set the wrong stage)."""
        claims: dict[str, set[str]] = {}
        for t in dataclass_types:
            source = getattr(t, "_ftcot_source", t)
            flags = getattr(t, "_ftcot_flags", None) or {f.name: f.name for f in dataclasses.fields(t)}
            for name, flag in flags.items():
                if name != flag:  # a view renamed it (`ftcot run`): the command's own name still works
                    claims.setdefault(name, set()).add(flag)
            for alias, name in getattr(source, "FLAG_ALIASES", {}).items():
                if name in flags and flags[name] != alias:
                    claims.setdefault(alias, set()).add(flags[name])
        aliases: dict[str, str] = {}
        for alias, dests in sorted(claims.items()):
            option = f"--{alias}"
            if option in self._option_string_actions:
                continue  # a flag of its own here
            if len(dests) > 1:
                choices = " or ".join(f"--{d}" for d in sorted(dests))
                self.add_argument(option, action=_Ambiguous, nargs="?", default=argparse.SUPPRESS,
                                  help=argparse.SUPPRESS, choices_text=f"{self._prog}: {option} could be {choices} "
                                  "here: give one of them.")  # fmt: skip
                continue
            (dest,) = dests
            action = self._option_string_actions[f"--{dest}"]
            action.option_strings.append(option)
            self._option_string_actions[option] = action
            if action.nargs == "?" and f"--no_{dest}" in self._option_string_actions:  # a boolean: --no_alias too
                negation = self._option_string_actions[f"--no_{dest}"]
                negation.option_strings.append(f"--no_{alias}")
                self._option_string_actions[f"--no_{alias}"] = negation
            aliases[alias] = dest
        return aliases

    def _lead_group(self, lead: Sequence[str]) -> None:
        """Move the ``lead`` flags (what the command acts on) to a first group, ahead of the hyper-parameters."""
        known = self._option_string_actions
        actions = [known[f"--{name}"] for name in lead if f"--{name}" in known]
        if not actions:
            return
        group = self.add_argument_group("What it acts on")
        self._action_groups.remove(group)
        self._action_groups.insert(2, group)  # after argparse's "positional arguments" and "options" (-h, --config)
        for action in actions:
            negation = self._option_string_actions.get(f"--no_{action.dest}")
            for moved in (action, negation) if negation is not None else (action,):
                for other in self._action_groups:
                    if moved in other._group_actions:
                        other._group_actions.remove(moved)
                group._group_actions.append(moved)

    @staticmethod
    def _closest(name: str, names: Iterable[str], quote: str = "") -> str:
        """'; did you mean X?' for the nearest of ``names`` (a name it abbreviates counts: abbreviations are not
        taken), or ''."""
        names = sorted(set(names))
        matches = [n for n in names if n.startswith(name) and len(name) >= 5][:3] or difflib.get_close_matches(
            name, names, n=3, cutoff=0.6
        )
        return f"; did you mean {' or '.join(f'{quote}{m}{quote}' for m in matches)}?" if matches else ""

    def _flag_names(self) -> list[str]:
        return [o for o in self._option_string_actions if o.startswith("--") and "-" not in o[2:]]

    def unknown_argument(self, token: str) -> FtcotError:
        """The one line for a command-line word no option takes."""
        help_hint = f"`{self._prog} --help` lists the options"
        if not token.startswith("-"):
            return FtcotError(f"{self._prog}: unexpected argument {token!r}: every option is a flag ({help_hint}).")
        name = "--" + token.split("=", 1)[0].lstrip("-").replace("-", "_")
        hint = self._closest(name, self._flag_names())
        return FtcotError(f"{self._prog}: unknown option {token.split('=', 1)[0]}{hint} ({help_hint}; abbreviations "
                          "are not accepted).")  # fmt: skip

    def set_defaults_with_config(self, **kwargs: Any) -> list[str]:
        flat = self.flatten(kwargs)
        dests = {a.dest for a in self._actions if a.dest not in (argparse.SUPPRESS, "help")}
        for key in flat:
            if key not in dests:
                hint = self._closest(key, dests | set(self._aliases), quote="`")
                raise FtcotError(f"{self._where()}: unknown key `{key}`{hint} (the keys are the flags of "
                                 f"`{self._prog} --help`, without the --).")  # fmt: skip
        return super().set_defaults_with_config(**flat)

    def _where(self) -> str:
        return f"--config {self._config_path}" if self._config_path else "--config"

    def flatten(self, values: dict[str, Any]) -> dict[str, Any]:
        """YAML sections (``teach: {model: m}``) to flags (``teacher_model: m``); flat keys pass as they are."""
        flat: dict[str, Any] = {}
        for key, value in values.items():
            if key in self._sections and isinstance(value, dict):
                flags = self._sections[key]
                for name, item in value.items():
                    if name not in flags:
                        if name in self._owned.get(key, ()):
                            raise FtcotError(f"{self._where()}: `{key}.{name}` is set by the run itself (or at the "
                                             f"top level of the file), not in the {key}: section.")  # fmt: skip
                        others = [s for s, f in self._sections.items() if name in f]
                        hint = (f"; it belongs in the {others[0]}: section" if others
                                else self._closest(name, flags, quote="`"))  # fmt: skip
                        raise FtcotError(
                            f"{self._where()}: unknown key `{key}.{name}`{hint} (the {key}: section takes the field "
                            f"names of `{self._prog} --help`'s {key}: groups)."
                        )
                    flat[flags[name]] = item
            else:
                flat[self._aliases.get(key, key)] = value
        return flat

    def parse(self, argv: Sequence[str]) -> tuple[Any, ...]:
        argv = list(argv)
        if "--config" in argv[:-1]:
            self._config_path = argv[argv.index("--config") + 1]
        *parts, _, rest = self.parse_args_and_config(argv, return_remaining_strings=True,
                                                     separate_remaining_strings=True)  # fmt: skip
        if rest:
            raise self.unknown_argument(rest[0])
        return tuple(parts)


class _Ambiguous(argparse.Action):
    """An alias two flags of the command could mean: refused when given, naming both."""

    def __init__(self, *args: Any, choices_text: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.choices_text = choices_text

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:  # fmt: skip
        raise FtcotError(self.choices_text)


def parser_for(dataclass_types: Sequence[type], argv: Sequence[str], *, prog: str, description: str | None = None,
               lead: Sequence[str] = ()) -> ConfigParser:  # fmt: skip
    """The parser of one command; ``--help-all`` in ``argv`` unfolds the hidden groups; ``lead`` flags come first."""
    return ConfigParser(dataclass_types, prog=prog, description=description, show_all=HELP_ALL in argv, lead=lead)


def _title(cls: type) -> str:
    """A group title from the class docstring's first line (``Configuration of ``ftcot teach``.``)."""
    doc = (cls.__doc__ or "").strip().splitlines()
    first = doc[0].rstrip(".") if doc and not doc[0].startswith(cls.__name__ + "(") else ""
    first = re.sub(r":\w+:`", "`", first).replace("``", "`")
    return f"{first} ({cls.__name__})" if first else cls.__name__


def command_parser(dataclass_types: Sequence[type], argv: Sequence[str], *, prog: str,
                   description: str | None = None, lead: Sequence[str] = ()) -> CommandParser:  # fmt: skip
    """The parser of a command whose configs may inherit transformers/TRL options (``FineTuneCoTConfig``): each such
    class shows its own fields in its group and the inherited ones in a last group behind ``--help-all``; the
    ``lead`` flags (what the command acts on) open the help."""
    return CommandParser(dataclass_types, argv, prog=prog, description=description, lead=lead)


class CommandParser:
    """Parses flags and ``--config`` into one instance of each of ``dataclass_types`` (their ``__post_init__`` runs
    once, on the whole set of values), with our options first in ``--help``."""

    def __init__(self, dataclass_types: Sequence[type], argv: Sequence[str], *, prog: str,
                 description: str | None = None, lead: Sequence[str] = ()) -> None:  # fmt: skip
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
        self.parser = parser_for(ordered, argv, prog=prog, description=description, lead=lead)

    def parse(self, argv: Sequence[str]) -> tuple[Any, ...]:
        parsed = dict(zip(self._order, self.parser.parse(argv), strict=True))
        out = []
        for cls, views in self.parts:
            values: dict[str, Any] = {}
            for v in views:
                values.update({name: getattr(parsed[v], flag) for name, flag in v._ftcot_flags.items()})
            out.append(cls(**values))
        return tuple(out)
