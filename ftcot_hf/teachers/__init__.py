"""Teacher backends, one module each: ``replay`` (recorded completions), ``transformers`` (a local model),
``openai`` (any OpenAI-compatible server: vLLM, SGLang, llama.cpp, an API). :func:`build_teacher` turns a teach
config into a teacher through the backend registry (:data:`TEACHERS`) and the named presets (:data:`PRESETS`).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
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
)

PRESETS: dict[str, dict[str, Any]] = {
    "text-davinci-002": {
        "backend": "replay",
        "kwargs": {"source": "kojima"},
        "trigger": "kojima",
        "keep_truncated": True,
    },
}
"""Named teachers. ``text-davinci-002`` replays Kojima et al.'s recorded Zero-shot-CoT completions; those were made
with task-specific stage-2 triggers, so the preset sets them (a user need not know). Their finish reasons are not
recorded (``length`` is guessed from the text), and the paper's filter kept every correct rationale: the preset
keeps truncated ones."""


def teacher_names() -> list[str]:
    return [*PRESETS, *TEACHERS]


def resolve_teacher(name: str) -> tuple[str, dict[str, Any]]:
    """(backend name, preset settings) of ``--teacher name``; an unknown name is an FtcotError listing the valid
    ones. Checks names only: nothing is imported or loaded."""
    if name in PRESETS:
        return PRESETS[name]["backend"], PRESETS[name]
    if name in TEACHERS:
        return name, {}
    import difflib

    close = difflib.get_close_matches(str(name), teacher_names(), n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise FtcotError(f"Unknown teacher {name!r}.{hint} Use one of: {', '.join(teacher_names())}.")


LIVE_TEACHER_EXAMPLE = (
    "--teacher openai --model NAME --base_url http://localhost:8000/v1 (any OpenAI-compatible server: vLLM, "
    "llama.cpp, transformers serve) or --teacher transformers --model HUB_ID_OR_FOLDER"
)
"""The teacher flags a user's own dataset needs (the same in `ftcot teach` and `ftcot run`)."""


def check_recorded_tasks(config: Any, tasks: Sequence[Any]) -> None:
    """A recorded teacher without a recording file (``text-davinci-002``, ``replay``) replays Kojima et al.'s logs:
    a task they do not cover (your own dataset) is an FtcotError naming the live teachers, before any data is
    read."""
    backend, preset = resolve_teacher(config.teacher)
    replay_file = getattr(config, "replay_file", None) or teacher_kwargs_of(config).get("replay_file")
    if backend != "replay" or replay_file:
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
    and ``trigger`` (see ``ftcot_hf.teach.TeachConfig``); ``tasks`` are the :class:`~ftcot_hf.Task` objects taught
    (the replay backend reads their recordings)."""
    check_recorded_tasks(config, tasks)
    backend, preset = resolve_teacher(config.teacher)
    trigger = config.trigger or preset.get("trigger", "generic")
    kwargs = {**preset.get("kwargs", {}), **teacher_kwargs_of(config)}
    cls = TEACHERS[backend]
    accepted = inspect.signature(cls.from_config).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            known = sorted(k for k in accepted if k not in ("model", "base_url", "tasks", "data_dir", "cls"))
            raise FtcotError(f"The {backend} teacher takes no option {', '.join(unknown)} (teacher_kwargs); it takes: "
                             f"{', '.join(known) or 'none'}.")  # fmt: skip
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
    "PRESETS",
    "TEACHERS",
    "Generation",
    "MissingRecordingError",
    "Request",
    "SamplingParams",
    "Teacher",
    "TeacherError",
    "build_teacher",
    "check_recorded_tasks",
    "register_teacher",
    "resolve_teacher",
]
