"""Teacher backends, one module each: ``replay`` (recorded completions), ``transformers`` (a local model),
``openai`` (any OpenAI-compatible server: vLLM, SGLang, llama.cpp, an API), ``openai_batch`` / ``anthropic_batch``
(the providers' batch APIs: ``batch/``). :func:`build_teacher` turns a teach
config into a teacher through the backend registry (:data:`TEACHERS`, plus ``module:Class`` names and the
``ftcot_hf.teachers`` entry point group) and the named presets (:data:`PRESETS`); :func:`teacher_spec` is what a
teacher name means (its :class:`TeacherSpec`), for the code outside this package.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from ftcot_hf.errors import FtcotError
from ftcot_hf.teachers.base import (
    TEACHERS,
    Generation,
    MissingRecordingError,
    Request,
    SamplingParams,
    Teacher,
    TeacherError,
    register_teacher,
    unknown_options,
)
from ftcot_hf.teachers.replay.kojima import KOJIMA_MODEL  # light: names only
from ftcot_hf.utils.scrub import REDACTED, register_in
from ftcot_hf.utils.types import check_options


@dataclass(frozen=True)
class TeacherSpec:
    """What ``--teacher NAME`` means, resolved once (:func:`teacher_spec`): the code outside this package reads these
    fields instead of comparing teacher names."""

    name: str = field(metadata={"help": "What --teacher said: a preset, a backend, 'module:Class' or an entry point."})
    backend: str = field(metadata={"help": "The backend's name in TEACHERS."})
    options: Mapping[str, Any] = field(default_factory=dict, metadata={"help": "Backend options the preset sets."})
    trigger: str = field(default="generic", metadata={"help": "Stage-2 trigger style when --trigger is not given."})
    keep_truncated: bool = field(default=False, metadata={"help": "Keep rationales cut by the token limit."})
    label: str = field(default="", metadata={"help": "How cards name the teacher (default: its name)."})
    model: str | None = field(default=None, metadata={"help": "The model identity the preset's teacher reports."})
    preset: bool = field(default=False, metadata={"help": "A named preset (not a backend named directly)."})

    @property
    def cls(self) -> type[Teacher]:
        """The backend class (imported now)."""
        return _teacher_class(self.backend)

    @property
    def recorded(self) -> bool:
        """Replays completions recorded earlier (no model is asked)."""
        return bool(self.cls.recorded)


PRESETS: dict[str, TeacherSpec] = {
    "text-davinci-002": TeacherSpec(
        name="text-davinci-002",
        backend="replay",
        options={"source": "kojima"},
        trigger="kojima",
        keep_truncated=True,
        label="recorded text-davinci-002 completions (Kojima et al. 2022), replayed offline",
        model=KOJIMA_MODEL,
        preset=True,
    ),
}
"""Named teachers. ``text-davinci-002`` replays Kojima et al.'s recorded Zero-shot-CoT completions; those were made
with task-specific stage-2 triggers, so the preset sets them (a user need not know). Their finish reasons are not
recorded (``length`` is guessed from the text), and the paper's filter kept every correct rationale: the preset
keeps truncated ones."""

PAPER_TEACHER = PRESETS["text-davinci-002"]
"""The paper's teacher (the recorded Zero-shot-CoT completions of Kojima et al.)."""

ENTRY_POINT_GROUP = "ftcot_hf.teachers"
"""Installed packages add backends here (``[project.entry-points."ftcot_hf.teachers"] name = "pkg.mod:Class"``)."""

_entry_points_read = False


def _read_entry_points() -> None:
    """Add the backends that installed packages declare (lazily: ``"module:attr"``), once; a built-in name wins."""
    global _entry_points_read
    if _entry_points_read:
        return
    _entry_points_read = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in TEACHERS:
            TEACHERS.register(ep.name, ep.value)


def _teacher_class(backend: str) -> type[Teacher]:
    """The class of a backend: a registered name, or ``module:Class`` (imported and registered under that name)."""
    if backend not in TEACHERS and ":" in backend:
        import importlib

        module, _, attr = backend.partition(":")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise FtcotError(
                f"--teacher {backend}: cannot import {attr!r} from module {module!r} ({e}); give 'module:Class' of a "
                "Teacher subclass importable here (on PYTHONPATH, or installed)."
            ) from None
        TEACHERS.check(obj, backend)  # before `backend` is set on it
        obj.backend = obj.backend or backend
        TEACHERS.register(backend, obj, replace=True)
    cls = TEACHERS[backend]  # a Teacher subclass: the registry checks what it holds
    if not hasattr(cls, "from_config"):
        raise FtcotError(f"The teacher backend {backend!r} is {cls!r}, a Teacher subclass without a from_config "
                         "classmethod (see ftcot_hf/teachers/base.py).")  # fmt: skip
    return cls


def teacher_names() -> list[str]:
    _read_entry_points()
    return [*PRESETS, *TEACHERS]


def preset(name: Any) -> TeacherSpec | None:
    """The preset called ``name``, or None (``ftcot eval --model text-davinci-002`` scores the recorded teacher)."""
    return PRESETS.get(name) if isinstance(name, str) else None


def teacher_spec(name: str) -> TeacherSpec:
    """The :class:`TeacherSpec` of ``--teacher name``; an unknown name is an FtcotError listing the valid ones.
    Checks names only: nothing is imported or loaded, except a ``module:Class`` (imported to be found)."""
    if name in PRESETS:
        return PRESETS[name]
    _read_entry_points()
    if name in TEACHERS:
        return TeacherSpec(name=name, backend=name, label=name)
    if isinstance(name, str) and ":" in name:
        _teacher_class(name)
        return TeacherSpec(name=name, backend=name, label=name)
    import difflib

    close = difflib.get_close_matches(str(name), teacher_names(), n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise FtcotError(f"Unknown teacher {name!r}.{hint} Use one of: {', '.join(teacher_names())}, or "
                     "'module:Class' (a Teacher subclass of yours).")  # fmt: skip


LIVE_TEACHER_EXAMPLE = (
    "--teacher openai --model NAME --base_url http://localhost:8000/v1 (any OpenAI-compatible server: vLLM, "
    "llama.cpp, transformers serve) or --teacher transformers --model HUB_ID_OR_FOLDER"
)
"""The teacher flags a user's own dataset needs (the same in `ftcot teach` and `ftcot run`)."""


def check_recorded_tasks(config: Any, tasks: Sequence[Any]) -> None:
    """A recorded teacher without a recording file (``text-davinci-002``, ``replay``) replays Kojima et al.'s logs:
    a task they do not cover (your own dataset) is an FtcotError naming the live teachers, before any data is
    read."""
    spec = teacher_spec(config.teacher)
    replay_file = getattr(config, "replay_file", None) or teacher_kwargs_of(config).get("replay_file")
    if not spec.recorded or replay_file:
        return
    from ftcot_hf.teachers.replay.kojima import KOJIMA_LOG_NAMES  # light: names only

    uncovered = [getattr(t, "name", t) for t in tasks if getattr(t, "name", t) not in KOJIMA_LOG_NAMES]
    if uncovered:
        raise FtcotError(
            f"--teacher {config.teacher} replays Kojima et al.'s recorded Zero-shot-CoT completions, which cover only "
            f"the paper's 12 tasks, not {', '.join(map(repr, uncovered))}: teach it with a live teacher, e.g. "
            f"{LIVE_TEACHER_EXAMPLE}."
        )


def build_teacher(config: Any, tasks: Sequence[Any] = ()) -> tuple[Teacher, str]:
    """(teacher, stage-2 trigger style) for a config with ``teacher``, ``model``, ``base_url``, ``teacher_kwargs``
    and ``trigger`` (see ``ftcot_hf.teach.TeachConfig``), or a teacher name alone (``"text-davinci-002"``: its
    defaults); ``tasks`` are the :class:`~ftcot_hf.Task` objects (or names) taught (the replay backend reads their
    recordings)."""
    if isinstance(config, str):  # a name alone: every other flag of `ftcot teach` left at its default
        config = SimpleNamespace(teacher=config, model=None, base_url=None, teacher_kwargs=None, trigger=None,
                                 data_dir=None)  # fmt: skip
    if not all(hasattr(config, name) for name in ("teacher", "model", "base_url", "trigger", "data_dir")):
        raise FtcotError(
            f"build_teacher takes a TeachConfig (or a teacher name such as 'text-davinci-002'), not {config!r}."
        )
    if isinstance(tasks, str):
        tasks = [tasks]
    if any(isinstance(t, str) for t in tasks):
        from ftcot_hf.tasks import resolve_task

        tasks = [resolve_task(t) if isinstance(t, str) else t for t in tasks]
    check_recorded_tasks(config, tasks)
    spec = teacher_spec(config.teacher)
    trigger = config.trigger or spec.trigger
    kwargs = {**spec.options, **teacher_kwargs_of(config)}
    register_in([kwargs, getattr(config, "base_url", None)])  # before anything could echo them
    left_out = [k for k, v in kwargs.items() if REDACTED in json.dumps(v, default=str)]
    if left_out:
        raise FtcotError(f"teacher_kwargs {', '.join(left_out)}: {REDACTED!r} is what a config written by ftcot "
                         "(run_config.yaml, yield_report.json) holds in place of a secret; give the secret again "
                         "(--teacher_kwargs, or the key in $OPENAI_API_KEY).")  # fmt: skip
    cls = spec.cls
    declared = cls.option_types()  # None: open-ended, the backend checks its options itself
    if declared is not None:
        unknown = unknown_options(spec.backend, kwargs, list(declared), " (--teacher_kwargs)")
        if unknown:
            raise FtcotError(unknown)
        # a value of the wrong type fails here, named, not as a bare TypeError deep in the backend
        check_options(kwargs, declared, f"--teacher_kwargs of the {spec.backend} teacher")
    teacher = cls.from_config(
        model=config.model, base_url=config.base_url, tasks=list(tasks), data_dir=config.data_dir, **kwargs
    )
    return teacher, trigger


def teacher_kwargs_of(config: Any) -> dict[str, Any]:
    """The backend options of a teach config: ``teacher_kwargs`` plus the shortcut flags that are set."""
    kwargs = dict(getattr(config, "teacher_kwargs", None) or {})
    for name in ("max_concurrency", "replay_file"):
        value = getattr(config, name, None)
        if value is not None:
            kwargs.setdefault(name, value)
    return kwargs


__all__ = [
    "ENTRY_POINT_GROUP",
    "PAPER_TEACHER",
    "PRESETS",
    "TEACHERS",
    "Generation",
    "MissingRecordingError",
    "Request",
    "SamplingParams",
    "Teacher",
    "TeacherError",
    "TeacherSpec",
    "build_teacher",
    "check_recorded_tasks",
    "preset",
    "register_teacher",
    "teacher_spec",
]
