"""Accuracy of generated completions: the paper's metrics over a list of predictions.

:func:`compute_accuracy` is the one implementation; the ``evaluate`` module (``ftcot_hf/metrics/ftcot_accuracy``)
and :func:`ftcot_hf.evaluation.evaluate_student` call it. Parsing is ``ftcot_hf.tasks.answers`` (paper mode bit-exact
with the reference's ``Evaluator``); this module only picks the answer prefix of a format and aggregates.

Metrics (fractions in [0, 1]; None when there is nothing to average):
    accuracy         mean of ``correct`` (the parsed prediction equals the cleansed gold answer)
    contains_answer  mean of "some candidate in the completion equals the gold answer"
    no_answer        fraction with no parsed prediction ("no answer found", e.g. a Math-Verify timeout), kept apart
                     from wrong answers: wrong = 1 - accuracy - no_answer
    correct_format   mean of "the format's prefix occurs in the completion" (1.0 for formats without one)
    complete         mean of "generation ended by the stop phrase or EOS, not the token limit" (needs
                     ``finish_reasons``; None without them)
    n                number of predictions
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ftcot_hf.errors import FtcotError
from ftcot_hf.evaluation.baselines import PROMPT_FORMATS, evaluation_format
from ftcot_hf.students.formats import FORMATS, UnknownFormatError
from ftcot_hf.tasks import resolve_task
from ftcot_hf.tasks.answers import MODES, require_math_verify, score_with_parser

if TYPE_CHECKING:
    from ftcot_hf.tasks import Task

COMPLETE_REASONS = frozenset({"stop", "eos"})
"""Finish reasons that count as a completed generation (the reference counts OpenAI's ``"stop"``)."""


def resolve_prefix(format: str | None) -> str | None:
    """The answer prefix of a student format (``ftcot_hf.students.formats``) or of a prompt format
    (``evaluation.baselines.PROMPT_FORMATS``: ``zero_shot_cot``, ``few_shot_cot``); None (or ``"none"``) means no
    prefix.

    Raises:
        UnknownFormatError: the name is in neither registry (lists the known names).
    """
    if format is None or format == "none":
        return None
    fmt = evaluation_format(format)
    if fmt is None:
        known = sorted({*FORMATS, *PROMPT_FORMATS})
        raise UnknownFormatError(f"Unknown format {format!r}: use one of {', '.join(known)} (or None for no prefix).")
    return fmt.prefix


class _Prefixes(Mapping[str, "str | None"]):
    """Format name -> answer prefix, read from the formats themselves on every lookup (a format registered later
    is in it; there is no table to keep in step)."""

    def __getitem__(self, name: str) -> str | None:
        if evaluation_format(name) is None:
            raise KeyError(name)
        return resolve_prefix(name)

    def __iter__(self) -> Iterator[str]:
        return iter([*FORMATS, *PROMPT_FORMATS])

    def __len__(self) -> int:
        return len(FORMATS) + len(PROMPT_FORMATS)


PREDICTION_PREFIXES: Mapping[str, str | None] = _Prefixes()
"""The answer prefix of every student and prompt format (``ftcot_hf.PREDICTION_PREFIXES``): a view of
``StudentFormat.prefix`` / ``PromptFormat.prefix``."""


def _mean(values: Sequence[bool]) -> float | None:
    return sum(values) / len(values) if values else None


def compute_accuracy(
    predictions: Sequence[str],
    references: Sequence[str],
    *,
    task: str | Task,
    format: str | None = "ft_cot",
    mode: str = "paper",
    finish_reasons: Sequence[str | None] | None = None,
    return_details: bool = False,
) -> dict[str, Any]:
    """Score generated completions against gold answers.

    Args:
        predictions: the raw generated texts (without the stop phrase, as :func:`generate_completions` returns them).
        references: the gold answers, as in the task's ``answer`` column.
        task: a :class:`~ftcot_hf.Task` or a registered task's name: chooses the answer parser.
        format: the format whose answer prefix applies (``"ft_cot"`` -> ``-->``, ``"few_shot_cot"`` ->
            ``The answer is``, ``"vanilla"``/``"zero_shot"``/None -> no prefix).
        mode: ``"paper"`` (bit-exact with the reference), ``"robust"`` or ``"math_verify"`` (number answers through
            Math-Verify, bounded per answer; other answer types in robust mode; needs the ``math`` extra).
        finish_reasons: per prediction ``"stop"``/``"eos"``/``"length"`` (for ``complete``).
        return_details: add ``details``: one dict per prediction (prediction, candidates, correct,
            contains_answer, correct_format, complete).

    Returns:
        ``accuracy``, ``no_answer``, ``contains_answer``, ``correct_format``, ``complete``, ``n`` (+ ``details``),
        plus ``task``, ``format``, ``prefix`` and ``mode`` so a stored result says how it was computed.

    Raises:
        ValueError: lengths differ, or an unknown mode. FtcotError: a gold answer the task's parser cannot read
        (names its position). UnknownFormatError / UnknownTaskError: unknown names.

    Example:
        >>> compute_accuracy([" heads, flipped: tails --> no "], ["no"], task="coin_flip")["accuracy"]
        1.0
    """
    if mode not in MODES:
        raise ValueError(f"Unknown answer-parsing mode {mode!r}: use one of {', '.join(MODES)}.")
    if mode == "math_verify":
        require_math_verify()
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references: they must pair up.")
    if finish_reasons is not None and len(finish_reasons) != len(predictions):
        raise ValueError(f"{len(finish_reasons)} finish_reasons for {len(predictions)} predictions.")
    prefix = resolve_prefix(format)
    task = resolve_task(task)
    parser = task.answer
    details: list[dict[str, Any]] = []
    for i, (prediction, gold) in enumerate(zip(predictions, references, strict=True)):
        if prediction is not None and not isinstance(prediction, str):
            raise ValueError(f"predictions[{i}] is a {type(prediction).__name__}, not a string.")
        try:
            scored = score_with_parser(parser, prediction or "", str(gold), prefix=prefix, mode=mode)  # type: ignore[arg-type]
        except ValueError as e:
            raise FtcotError(f"references[{i}] ({gold!r}) cannot be read as a {task.name} answer: {e}") from None
        scored["complete"] = None if finish_reasons is None else finish_reasons[i] in COMPLETE_REASONS
        details.append(scored)
    result: dict[str, Any] = {
        "accuracy": _mean([d["correct"] for d in details]),
        "no_answer": _mean([d["prediction"] is None for d in details]),
        "contains_answer": _mean([d["contains_answer"] for d in details]),
        "correct_format": _mean([d["correct_format"] for d in details]),
        "complete": None if finish_reasons is None else _mean([d["complete"] for d in details]),
        "n": len(details),
        "task": task.name,
        "format": format,
        "prefix": prefix,
        "mode": mode,
    }
    if return_details:
        result["details"] = details
    return result
