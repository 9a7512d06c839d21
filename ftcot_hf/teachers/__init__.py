"""Teacher backends, one module each: ``replay`` (recorded completions), ``transformers`` (a local model),
``openai`` (any OpenAI-compatible server: vLLM, SGLang, llama.cpp, an API), ``openai_batch`` / ``anthropic_batch``
(the providers' batch APIs: ``batch/``). :func:`build_teacher` turns a teach
config into a teacher through the backend registry (:data:`TEACHERS`) and the named presets (:data:`PRESETS`).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from typing import Any

from ftcot_hf.errors import FtcotError
from ftcot_hf.scrub import REDACTED, register_in
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
from ftcot_hf.utils.types import check_options

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
    and ``trigger`` (see ``ftcot_hf.teach.TeachConfig``), or a teacher name alone (``"text-davinci-002"``: its
    defaults); ``tasks`` are the :class:`~ftcot_hf.Task` objects (or names) taught (the replay backend reads their
    recordings)."""
    if isinstance(config, str):
        from ftcot_hf.teach import TeachConfig  # teach imports this module

        config = TeachConfig(teacher=config)
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
    backend, preset = resolve_teacher(config.teacher)
    trigger = config.trigger or preset.get("trigger", "generic")
    kwargs = {**preset.get("kwargs", {}), **teacher_kwargs_of(config)}
    register_in([kwargs, getattr(config, "base_url", None)])  # before anything could echo them
    left_out = [k for k, v in kwargs.items() if REDACTED in json.dumps(v, default=str)]
    if left_out:
        raise FtcotError(f"teacher_kwargs {', '.join(left_out)}: {REDACTED!r} is what a config written by ftcot "
                         "(run_config.yaml, yield_report.json) holds in place of a secret; give the secret again "
                         "(--teacher_kwargs, or the key in $OPENAI_API_KEY).")  # fmt: skip
    cls = TEACHERS[backend]
    accepted = inspect.signature(cls.from_config).parameters
    open_ended = any(p.kind is p.VAR_KEYWORD for p in accepted.values())  # its options are its constructor's
    if not open_ended:
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            known = sorted(k for k in accepted if k not in ("model", "base_url", "tasks", "data_dir", "cls"))
            raise FtcotError(f"The {backend} teacher takes no option {', '.join(unknown)} (teacher_kwargs); it takes: "
                             f"{', '.join(known) or 'none'}.")  # fmt: skip
    # a value of the wrong type fails here, named, not as a bare TypeError deep in the backend
    where = f"--teacher_kwargs of the {backend} teacher"
    check_options(kwargs, cls.__init__ if open_ended else cls.from_config, where)
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
