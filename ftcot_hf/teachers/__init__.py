"""Teacher backends, one module each: ``replay`` (recorded completions), ``transformers`` (a local model),
``openai`` (any OpenAI-compatible server). :func:`build_teacher` turns a teach config into a teacher."""

from __future__ import annotations

from typing import Any

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
    "text-davinci-002": {"backend": "replay", "source": "kojima", "trigger": "kojima"},
}
"""Named teachers. ``text-davinci-002`` replays Kojima et al.'s recorded Zero-shot-CoT completions; those were made
with task-specific stage-2 triggers, so the preset sets them (a user need not know)."""


def build_teacher(config: Any) -> tuple[Teacher, str]:
    """(teacher, trigger style) for a config with ``teacher``, ``model``, ``base_url``, ``max_concurrency``,
    ``replay_file``, ``tasks``, ``data_dir`` and ``trigger`` fields (see ``ftcot_hf.teach.TeachConfig``)."""
    preset = PRESETS.get(config.teacher, {})
    backend = preset.get("backend", config.teacher)
    trigger = config.trigger or preset.get("trigger", "generic")
    if backend == "replay":
        from ftcot_hf.teachers.replay import ReplayTeacher

        if config.replay_file:
            if config.replay_file.endswith(".jsonl"):
                return ReplayTeacher.from_jsonl(config.replay_file), trigger
            if len(config.tasks) != 1:
                raise ValueError("A completion-data JSON holds one task: pass exactly one task with it.")
            return ReplayTeacher.from_completion_data(config.replay_file, config.tasks[0]), trigger
        return ReplayTeacher.from_kojima_logs(config.tasks, data_dir=config.data_dir), trigger
    if backend == "transformers":
        from ftcot_hf.teachers.hf import TransformersTeacher

        if not config.model:
            raise ValueError("The transformers teacher needs --model (a Hub id or a local folder).")
        return TransformersTeacher(config.model), trigger
    if backend == "openai":
        from ftcot_hf.teachers.openai_backend import OpenAITeacher

        if not config.model or not config.base_url:
            raise ValueError("The openai teacher needs --model and --base_url (one or more).")
        return OpenAITeacher(config.model, config.base_url, max_concurrency=config.max_concurrency), trigger
    known = sorted({*TEACHERS, "replay", "transformers", "openai", *PRESETS})
    raise ValueError(f"Unknown teacher {config.teacher!r}: use one of {', '.join(known)}.")


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
    "register_teacher",
]
