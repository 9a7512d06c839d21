"""Readers of recorded completions (other than Kojima's logs): our JSONL format and the reference implementation's
completion data, plus what every recording carries (:class:`RecordingInfo`) and the finish-reason heuristic for
recordings that did not keep the API's finish reason.

* **Our JSONL format** (:func:`read_ftcot_jsonl`; :meth:`ReplayTeacher.to_jsonl` writes it), one object per line::

      {"prompt": str, "completion": str, "finish_reason": "stop" | "length",
       "sample_index": int,        # optional: sample number j of this prompt (NOT the question's index), default 0
       "prompt_tokens": int,       # optional
       "completion_tokens": int,   # optional
       "task": str,                # optional: only used in error messages
       "question_index": int}      # optional: the question's sample_index, only used in error messages

  Other keys are ignored. A malformed line raises :class:`SourceFormatError` naming the file and line.
* **The reference implementation's completion data** (:func:`read_completion_data`), the
  ``{"metadata": ..., "data": {"<sample_index>": [sample, ...]}}`` JSON of itsnamgyu/reasoning-teacher's
  ``CompletionDataset`` (``reasoning_completion`` = rationale, ``completion`` = stage-2 answer,
  ``completion_index`` = sample number j), re-keyed by our prompts like the Kojima logs.

Finish reasons that were not recorded (:func:`guess_finish_reason`): Kojima's stage 1 ran without a stop string and
with ``max_tokens=128`` (stage 2: 32), so a completion ended either at the model's end-of-text or at the token limit.
We mark a recording ``"length"`` when it does not end like finished text (``. ! ? ) " '``) AND an approximate GPT-2
token count (:func:`approx_tokens`; no tokenizer download) reaches 86% of the limit; otherwise ``"stop"``. On the
12 Kojima logs this marks about 1,500 of 9,706 rationales ``"length"``; a rationale cut exactly at a sentence end is
indistinguishable from a finished one and stays ``"stop"``. Token counts are left ``None`` (unknown).
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftcot_hf.errors import SourceFormatError
from ftcot_hf.tasks.prompts import GENERIC_ANSWER_TRIGGER, stage1_prompt, stage2_prompt
from ftcot_hf.tasks.sources import read_json, read_jsonl
from ftcot_hf.teachers.base import Generation

logger = logging.getLogger(__name__)

FINISH_REASONS = ("stop", "length")
"""The finish reasons a recording may have (OpenAI's completion API values)."""

_FINISHED_ENDINGS = tuple(".!?)\"'")
_LENGTH_FRACTION = 0.86


# --------------------------------------------------------------------------------------------------------------------
# Finish-reason heuristic
# --------------------------------------------------------------------------------------------------------------------

_PRETOKEN = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?\d+| ?[^\sA-Za-z\d]+|\s+(?!\S)|\s+")


def approx_tokens(text: str) -> int:
    """A rough GPT-2/p50k token count without the tokenizer: GPT-2's pre-tokenisation, then long words and numbers
    split in chunks (5 letters, 3 digits) and every punctuation character counted. Good enough to tell a completion
    that ran into the token limit from one that is far below it; not exact."""
    n = 0
    for piece in _PRETOKEN.findall(text):
        s = piece.strip()
        if not s:
            n += 1
        elif s[0].isdigit():
            n += math.ceil(len(s) / 3)
        elif s[0].isascii() and s[0].isalpha():
            n += 1 if len(s) <= 7 else math.ceil(len(s) / 5)
        else:
            n += len(s)
    return n


def guess_finish_reason(text: str, max_tokens: int) -> str:
    """``"length"`` when ``text`` stops mid-sentence close to ``max_tokens`` (see the module docstring), else
    ``"stop"``. For recordings that did not keep the API's finish reason."""
    if text.rstrip().endswith(_FINISHED_ENDINGS):
        return "stop"
    return "length" if approx_tokens(text) >= _LENGTH_FRACTION * max_tokens else "stop"


# --------------------------------------------------------------------------------------------------------------------
# What a recording is
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordingInfo:
    """Where a recording came from, for error messages and reports."""

    task: str | None = None
    sample_indices: tuple[int, ...] = ()
    """Our question index(es) whose prompt this is (several for duplicated questions)."""
    stage: int | None = None
    """1 (rationale) or 2 (answer) of Zero-shot-CoT, when known."""
    source: str = ""

    def describe(self) -> str:
        parts = [f"task={self.task or '?'}"]
        if self.sample_indices:
            parts.append("sample_index=" + "/".join(str(i) for i in self.sample_indices))
        if self.stage:
            parts.append(f"stage {self.stage}")
        if self.source:
            parts.append(f"from {self.source}")
        return ", ".join(parts)

    def merged(self, other: RecordingInfo) -> RecordingInfo:
        """This info with ``other``'s question indices added (the same prompt recorded for several questions);
        the other fields keep this one's value where it has one."""
        indices = self.sample_indices + tuple(i for i in other.sample_indices if i not in self.sample_indices)
        return RecordingInfo(self.task or other.task, indices, self.stage or other.stage, self.source or other.source)


@dataclass(frozen=True)
class Recording:
    """One recorded sample as a reader yields it: sample number ``sample`` of ``prompt``."""

    prompt: str
    generation: Generation
    sample: int = 0
    info: RecordingInfo | None = None
    where: str = ""
    """File and line/entry it was read from (for error messages)."""


# --------------------------------------------------------------------------------------------------------------------
# Our JSONL format
# --------------------------------------------------------------------------------------------------------------------


def read_ftcot_jsonl(path: str | os.PathLike) -> Iterator[Recording]:
    """The recordings of a JSONL file in our format (see the module docstring), in file order.

    Raises:
        SourceFormatError: a malformed line or a missing or mistyped field (names the file and line).
    """
    path = Path(path)
    for lineno, row in _numbered(read_jsonl(path), path):
        where = f"{path}:{lineno}"
        if not isinstance(row, dict):
            raise SourceFormatError(f"{where}: expected a JSON object, got {type(row).__name__}.")
        prompt = _typed(row, "prompt", str, where)
        completion = _typed(row, "completion", str, where)
        finish = _typed(row, "finish_reason", str, where)
        if finish not in FINISH_REASONS:
            raise SourceFormatError(f"{where}: finish_reason is {finish!r}; use 'stop' or 'length'.")
        sample = _typed(row, "sample_index", int, where, default=0)
        if sample < 0:
            raise SourceFormatError(f"{where}: sample_index must be >= 0 (got {sample}).")
        gen = Generation(
            completion,
            finish,
            _typed(row, "prompt_tokens", int, where, default=None),
            _typed(row, "completion_tokens", int, where, default=None),
        )
        task = _typed(row, "task", str, where, default=None)
        q_index = _typed(row, "question_index", int, where, default=None)
        info = RecordingInfo(task, (q_index,) if q_index is not None else (), None, where)
        yield Recording(prompt, gen, sample, info, where)


# --------------------------------------------------------------------------------------------------------------------
# The reference implementation's completion data
# --------------------------------------------------------------------------------------------------------------------


def read_completion_data(
    path: str | os.PathLike,
    task: str,
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    dataset: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
    trigger: str = GENERIC_ANSWER_TRIGGER,
    cot_max_tokens: int = 128,
) -> tuple[dict[str, Any], list[Recording]]:
    """Read a completion-data JSON of the reference implementation (itsnamgyu/reasoning-teacher).

    Each sample ``{"sample_index", "completion_index", "question", "reasoning_completion", "completion",
    "finish_reason", "reasoning_finish_reason"?...}`` is matched to our record by ``sample_index`` (its
    ``question`` must agree with ours up to whitespace) and keyed by our prompts: stage 1 -> the rationale,
    stage 2 (with ``trigger``; the reference's is the generic ``"\\nTherefore, the answer is"``) -> the answer.
    ``completion_index`` is the sample number j. A sample without ``completion`` (stage 2 not run) gives a
    stage-1 recording only. The stage-1 finish reason is ``reasoning_finish_reason`` where present, else
    guessed with :func:`guess_finish_reason` for ``cot_max_tokens``.

    Returns:
        The file's ``metadata`` (``{}`` if none) and its recordings, in file order.

    Raises:
        SourceFormatError: malformed JSON, a missing field, an unknown sample_index, or a question that is not
            ours (names the file and the sample).
    """
    path = Path(path)
    raw = read_json(path)
    meta = _completion_metadata(raw, path, task)
    if dataset is None:
        from ftcot_hf.tasks.builder import load_task  # heavy: imports datasets

        dataset = load_task(task, data_dir=data_dir, cache_dir=cache_dir)
    ours = {int(row["sample_index"]): row for _, row in ((s, r) for s, rows in dataset.items() for r in rows)}
    recordings: list[Recording] = []
    for key, samples in raw["data"].items():
        where = f"{path}: data[{key!r}]"
        try:
            index = int(key)
        except ValueError:
            raise SourceFormatError(f"{where}: the key is not a sample index.") from None
        if index not in ours:
            raise SourceFormatError(f"{where}: task {task!r} has no record with sample_index {index}.")
        if not isinstance(samples, list):
            raise SourceFormatError(f"{where}: expected a list of completion samples.")
        question = ours[index]["question"]
        for k, sample in enumerate(samples):
            recordings += _sample_recordings(sample, f"{where}[{k}]", k, index, question, task=task, source=path.name,
                                             trigger=trigger, cot_max_tokens=cot_max_tokens)  # fmt: skip
    return meta, recordings


def _completion_metadata(raw: Any, path: Path, task: str) -> dict[str, Any]:
    """The file's ``metadata``, once its shape and its task are checked."""
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), dict):
        raise SourceFormatError(f"{path}: expected {{'metadata': {{...}}, 'data': {{sample_index: [...]}}}}.")
    meta = raw.get("metadata") or {}
    if meta.get("dataset_key") not in (None, task):
        raise SourceFormatError(f"{path}: its metadata.dataset_key is {meta['dataset_key']!r}, not {task!r}.")
    if meta.get("prediction_template") not in (None, "zs_cot"):
        logger.warning(
            "%s: prediction_template is %r, not 'zs_cot': replaying it as Zero-shot-CoT anyway.",
            path,
            meta["prediction_template"],
        )
    return meta


def _sample_recordings(
    sample: Any,
    here: str,
    k: int,
    index: int,
    question: str,
    *,
    task: str,
    source: str,
    trigger: str,
    cot_max_tokens: int,
) -> list[Recording]:
    """The stage-1 recording of completion sample ``k`` of question ``index`` (and its stage-2 one, when the file
    has its answer), once the sample is checked to be about our question."""
    if not isinstance(sample, dict):
        raise SourceFormatError(f"{here}: expected an object.")
    j = _typed(sample, "completion_index", int, here, default=k)
    if _typed(sample, "sample_index", int, here, default=index) != index:
        raise SourceFormatError(f"{here}: its sample_index {sample['sample_index']} is not {index}.")
    theirs = _typed(sample, "question", str, here, default=None)
    if theirs is not None and " ".join(theirs.split()) != " ".join(question.split()):
        raise SourceFormatError(
            f"{here}: its question {theirs[:60]!r} is not our sample {index} ({question[:60]!r}): "
            "was the file made for another task or version of the dataset?"
        )
    rationale = _typed(sample, "reasoning_completion", str, here)
    finish1 = _typed(sample, "reasoning_finish_reason", str, here, default=None)
    src = f"{source} sample {index} completion {j}"
    stage1 = Generation(rationale, finish1 or guess_finish_reason(rationale, cot_max_tokens))
    recordings = [Recording(stage1_prompt(question), stage1, j, RecordingInfo(task, (index,), 1, src), here)]
    answer = _typed(sample, "completion", str, here, default=None)
    if answer is not None:
        finish2 = _typed(sample, "finish_reason", str, here, default=None) or "stop"
        # Stage 2 is greedy on each sampled rationale: one answer per stage-2 prompt (sample 0).
        recordings.append(Recording(stage2_prompt(question, rationale, trigger), Generation(answer, finish2), 0,
                                    RecordingInfo(task, (index,), 2, src), here))  # fmt: skip
    return recordings


# --------------------------------------------------------------------------------------------------------------------
# Typed rows
# --------------------------------------------------------------------------------------------------------------------


def _numbered(rows: Iterator[dict], path: Path) -> Iterator[tuple[int, Any]]:
    # read_jsonl skips blank lines, so recover the line numbers by reading alongside it.
    with open(path, encoding="utf-8") as f:
        numbers = (n for n, line in enumerate(f, start=1) if line.strip())
        for row in rows:
            yield next(numbers), row


_MISSING = object()


def _typed(row: Mapping[str, Any], key: str, kind: type, where: str, default: Any = _MISSING) -> Any:
    """``row[key]`` checked to be a ``kind`` (bool is not an int); a SourceFormatError naming ``where`` otherwise."""
    if key not in row or row[key] is None:
        if default is _MISSING:
            raise SourceFormatError(f"{where}: missing field {key!r} (fields: {sorted(row)}).")
        return default
    value = row[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SourceFormatError(f"{where}: field {key!r} must be {kind.__name__}, got {type(value).__name__}.")
    return value


__all__ = [
    "FINISH_REASONS",
    "Recording",
    "RecordingInfo",
    "approx_tokens",
    "guess_finish_reason",
    "read_completion_data",
    "read_ftcot_jsonl",
]
