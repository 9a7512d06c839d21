"""What to generate and how to score it, per evaluation format: the student formats and the paper's baselines.

A student format of ``ftcot_hf.students.formats`` (``ft_cot``, ``vanilla``, ``natural``, ``zero_shot`` and their
``_t5`` variants) is used as registered. Two baselines need more than a record and live here:

* ``few_shot_cot`` (Wei et al., 2022): the task's exemplars from the reference repository's
  ``data/few_shot_cot_prompts.json`` (pinned source: fetched or read from the offline mirror, sha256 checked)
  followed by ``"\\nQ: {question}\\nA:"`` (the reference's ``fs_cot`` template, decoder and encoder-decoder alike).
  Scored with the prefix ``"The answer is"``. Generation has no stop phrase (the reference generated to EOS / the
  length limit). The reference publishes no exemplars for ``tracking_shuffled_objects`` (the paper's table has "-").
* ``zero_shot_cot`` (Kojima et al., 2022), two stages: ``"Q: {q}\\nA: Let's think step by step."`` -> rationale
  (``max_new_tokens``), then ``"{stage 1}{rationale}\\nTherefore, the answer is"`` -> answer
  (:data:`ZERO_SHOT_COT_ANSWER_TOKENS` tokens, greedy), both without a stop phrase as in Kojima's runs. The answer
  text is scored with no prefix, as the reference's ``zs_cot`` template is. Decoder-only (as in the reference).

Vanilla fine-tuning is the student format ``vanilla`` (``vanilla_t5``); zero-shot is ``zero_shot``
(``zero_shot_t5``). For an encoder-decoder model a format with a ``_t5`` variant is switched to it.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ftcot_hf.errors import FtcotError, SourceFormatError
from ftcot_hf.students.formats import FORMATS, StudentFormat, get_format
from ftcot_hf.tasks.prompts import ANSWER_MAX_TOKENS, GENERIC_ANSWER_TRIGGER, stage1_prompt
from ftcot_hf.tasks.sources import REFERENCE_COMMIT, REFERENCE_REPO, SourceFile, read_json, resolve

logger = logging.getLogger(__name__)

FEW_SHOT_COT_SOURCE = SourceFile(
    REFERENCE_REPO,
    REFERENCE_COMMIT,
    "data/few_shot_cot_prompts.json",
    "72bb973daf1ab1217ec5bc1cc95a8be8ab78d05ff42356a3176341d848956d19",
    "MIT",
)
"""The reference's few-shot-CoT exemplars (adapted from Wei et al., 2022), one prompt per task (11 tasks)."""

ZERO_SHOT_COT_ANSWER_TOKENS = ANSWER_MAX_TOKENS
"""Stage-2 token budget of zero-shot-CoT (Kojima et al.'s ``max_length_direct``)."""

@dataclass(frozen=True)
class PromptFormat:
    """An evaluation-only format that needs more than a record (a task's exemplars, a second pass), so it is no
    :class:`~ftcot_hf.students.formats.StudentFormat`; it carries what a student format carries for scoring and
    reports."""

    name: str
    prefix: str | None
    """The answer prefix its completions are scored with (``StudentFormat.prefix``)."""
    paper_method: str | None
    """The paper's method name (``StudentFormat.paper_method``); None: not in the students' tables."""


PROMPT_FORMATS: dict[str, PromptFormat] = {
    f.name: f
    for f in (
        PromptFormat("zero_shot_cot", prefix="Therefore, the answer is", paper_method=None),
        PromptFormat("few_shot_cot", prefix="The answer is", paper_method="Few-shot-CoT"),
    )
}
"""The baselines that are not student formats (see the module docstring)."""


def evaluation_format(name: str | None) -> StudentFormat | PromptFormat | None:
    """The student format or prompt format called ``name`` (None: neither)."""
    if name is None:
        return None
    return FORMATS.get(name) or PROMPT_FORMATS.get(name)


BASELINES: dict[str, str] = {
    "zero_shot": "Zero-shot: 'Q: {q}\\n\\nA:' (T5: 'question: {q}'), first candidate",
    "zero_shot_cot": "Zero-shot-CoT, two stages (rationale, then '\\nTherefore, the answer is')",
    "few_shot_cot": "Few-shot-CoT: the reference's exemplars + '\\nQ: {q}\\nA:', prefix 'The answer is'",
    "vanilla": "Vanilla fine-tune: '{q} ###' -> ' {answer} END' (T5: '{q}' -> '{answer}')",
}
"""The paper's baselines runnable through :func:`ftcot_hf.evaluation.evaluate_student`."""


@functools.lru_cache(maxsize=8)
def _few_shot_cot_file(path: str) -> dict[str, Any]:
    data = read_json(path)
    if not isinstance(data, dict):
        raise SourceFormatError(f"{path}: expected a JSON object of task -> {{prompt, ...}}.")
    return data


def few_shot_cot_exemplars(task: str, *, data_dir: str | os.PathLike | None = None) -> str:
    """The exemplar block of ``task`` (ends with the last exemplar's answer, no trailing newline).

    Raises:
        FtcotError: the reference has no exemplars for the task. MissingSourceError / ChecksumMismatchError: the
        file is absent from the mirror / not the pinned one.
    """
    path = resolve(FEW_SHOT_COT_SOURCE, data_dir=data_dir)
    data = _few_shot_cot_file(str(path))
    if task not in data:
        raise FtcotError(
            f"The reference publishes no few-shot-CoT exemplars for task {task!r} ({FEW_SHOT_COT_SOURCE.path} has: "
            f"{', '.join(sorted(data))}); the paper reports no few-shot-CoT figure for it either."
        )
    prompt = data[task].get("prompt") if isinstance(data[task], dict) else None
    if not isinstance(prompt, str):
        raise SourceFormatError(f"{path}: task {task!r} has no string field 'prompt'.")
    return prompt


def few_shot_cot_prompt(exemplars: str, question: str) -> str:
    """The reference's ``fs_cot`` input: exemplars + ``"\\nQ: {question}\\nA:"`` (question stripped)."""
    return f"{exemplars}\nQ: {question.strip()}\nA:"


@dataclass(frozen=True)
class EvalPlan:
    """How one format is evaluated: prompt of a record, stop phrase, what is scored with which prefix."""

    name: str
    prompt: Callable[[Mapping[str, Any]], str]
    score_format: str | None
    """Format name whose prefix scores the completion (None: no prefix)."""
    stop: str | None
    two_stage: bool = False
    answer_trigger: str = GENERIC_ANSWER_TRIGGER
    answer_max_new_tokens: int = ZERO_SHOT_COT_ANSWER_TOKENS


def eval_plan(
    format: str, task: str, *, encoder_decoder: bool = False, data_dir: str | os.PathLike | None = None
) -> EvalPlan:
    """The :class:`EvalPlan` of ``format`` for ``task`` and a decoder-only / encoder-decoder model.

    Raises:
        UnknownFormatError: an unknown name. FtcotError: the format does not fit the model kind, or a baseline
        cannot run for the task.
    """
    if format == "few_shot_cot":
        exemplars = few_shot_cot_exemplars(task, data_dir=data_dir)
        return EvalPlan(
            "few_shot_cot", lambda r: few_shot_cot_prompt(exemplars, r["question"]), "few_shot_cot", stop=None
        )
    if format == "zero_shot_cot":
        if encoder_decoder:
            raise FtcotError(
                "zero_shot_cot is a two-stage prompt for decoder-only models (the reference has no encoder-decoder "
                "version); use zero_shot or few_shot_cot for an encoder-decoder model."
            )
        return EvalPlan("zero_shot_cot", lambda r: stage1_prompt(r["question"].strip()), None, None, two_stage=True)
    fmt = get_format(format)
    if encoder_decoder and not fmt.encoder_decoder:
        sibling = fmt.encoder_decoder_variant
        if sibling is None:
            raise FtcotError(
                f"Format {fmt.name!r} is for decoder-only models and has no encoder-decoder variant; the model is an "
                f"encoder-decoder. Use one of: {', '.join(n for n, f in FORMATS.items() if f.encoder_decoder)}."
            )
        logger.info("Encoder-decoder model: format %s -> %s.", fmt.name, sibling)
        fmt = FORMATS[sibling]
    elif not encoder_decoder and fmt.encoder_decoder:
        decoder = next((repr(n) for n, f in FORMATS.items() if f.encoder_decoder_variant == fmt.name), None)
        raise FtcotError(
            f"Format {fmt.name!r} is for encoder-decoder models but the model is decoder-only: use "
            f"{decoder or 'a decoder-only format'}."
        )
    return EvalPlan(fmt.name, fmt.prompt, fmt.name, fmt.stop)
