"""The ``replay`` teacher: serves recorded completions instead of calling a model.

Why: the paper's teacher (text-davinci-002 / GPT-3 175B) can no longer be called, but Kojima et al. published its
Zero-shot-CoT outputs for every question of the 12 test files, and the reference implementation's completion data
(when one has it) holds the paper's own teacher samples. Replaying them keeps the whole pipeline (stage 1 -> stage 2
-> filter -> fine-tune) identical to a live run, deterministic, free and offline, and the request cache treats a
replayed teacher like any other backend.

Modules:

* :mod:`~ftcot_hf.teachers.replay.teacher`: :class:`ReplayTeacher` (prompt -> recorded samples; its
  ``from_config`` is what ``ftcot teach --teacher replay`` calls).
* :mod:`~ftcot_hf.teachers.replay.kojima`: Kojima et al.'s raw logs (``log/*_zero_shot_cot.log``, pinned by
  sha256), parsed, matched to our records by question stem, option letters translated to our order
  (:meth:`ReplayTeacher.from_kojima_logs`).
* :mod:`~ftcot_hf.teachers.replay.recordings`: our JSONL format (:meth:`ReplayTeacher.from_jsonl`, written by
  :meth:`ReplayTeacher.to_jsonl`), the reference implementation's completion-data JSON
  (:meth:`ReplayTeacher.from_completion_data`) and the finish-reason heuristic for recordings that lack it.

Every public name of the submodules is importable from here (``from ftcot_hf.teachers.replay import X``).
"""

from __future__ import annotations

from ftcot_hf.teachers.replay.kojima import (
    KOJIMA_ANSWER_MAX_TOKENS,
    KOJIMA_COMMIT,
    KOJIMA_COT_MAX_TOKENS,
    KOJIMA_LOG_LICENSE,
    KOJIMA_LOG_NAMES,
    KOJIMA_LOG_SHA256,
    KOJIMA_MODEL,
    KOJIMA_REPO,
    KojimaLog,
    KojimaLogEntry,
    KojimaRecord,
    kojima_log_source,
    kojima_options,
    kojima_records,
    kojima_teacher_accuracy,
    letter_map,
    match_kojima_log,
    parse_kojima_log,
    question_stem,
    read_kojima_log,
    translate_answer,
    translate_rationale,
)
from ftcot_hf.teachers.replay.recordings import (
    FINISH_REASONS,
    Recording,
    RecordingInfo,
    approx_tokens,
    guess_finish_reason,
    read_completion_data,
    read_ftcot_jsonl,
)
from ftcot_hf.teachers.replay.teacher import REPLAY_FORMAT_VERSION, ReplayTeacher

__all__ = [
    "FINISH_REASONS",
    "KOJIMA_ANSWER_MAX_TOKENS",
    "KOJIMA_COMMIT",
    "KOJIMA_COT_MAX_TOKENS",
    "KOJIMA_LOG_LICENSE",
    "KOJIMA_LOG_NAMES",
    "KOJIMA_LOG_SHA256",
    "KOJIMA_MODEL",
    "KOJIMA_REPO",
    "REPLAY_FORMAT_VERSION",
    "KojimaLog",
    "KojimaLogEntry",
    "KojimaRecord",
    "Recording",
    "RecordingInfo",
    "ReplayTeacher",
    "approx_tokens",
    "guess_finish_reason",
    "kojima_log_source",
    "kojima_options",
    "kojima_records",
    "kojima_teacher_accuracy",
    "letter_map",
    "match_kojima_log",
    "parse_kojima_log",
    "question_stem",
    "read_completion_data",
    "read_ftcot_jsonl",
    "read_kojima_log",
    "translate_answer",
    "translate_rationale",
]
