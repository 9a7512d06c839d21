"""The task's answer parser as TRL reward functions: RL from verifiable rewards (``GRPOTrainer``) with the parser
that filters the teacher's rationales and scores ``ftcot eval``, so the three can never disagree.

    >>> from trl import GRPOConfig, GRPOTrainer
    >>> rewards = [accuracy_reward("coin_flip"), format_reward("ft_cot")]
    >>> trainer = GRPOTrainer(model=student, reward_funcs=rewards, args=GRPOConfig(...), train_dataset=prompts)

``prompts`` holds a ``prompt`` column in the student's format (``"{question} ###"`` for ``ft_cot``) and the gold
``answer`` column; TRL passes every dataset column to the reward functions by name. TRL logs each function's mean
and spread as ``rewards/accuracy_reward/mean`` and ``rewards/format_reward/mean``.

A GRPO completion is generated until EOS or ``max_completion_length``, not until the format's stop phrase, so both
functions first cut it where ``ftcot eval``'s generation stops: before the first `` END`` (the OpenAI ``stop``
semantics the parser expects). What is scored is then exactly the text ``ftcot eval`` would have scored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ftcot_hf.errors import FtcotError
from ftcot_hf.students.formats import StudentFormat, get_format
from ftcot_hf.tasks import Task, resolve_task, score_completion
from ftcot_hf.tasks.answers import MODES, Mode, require_math_verify

logger = logging.getLogger(__name__)

__all__ = ["AccuracyReward", "FormatReward", "accuracy_reward", "completion_text", "format_reward"]


def completion_text(completion: Any) -> str:
    """The generated text of one TRL completion: a string (standard format), or a list of messages
    (conversational format, the answer is in the last assistant message; its content a string or text parts)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        for message in reversed(completion):
            if isinstance(message, dict) and message.get("role") == "assistant":
                content = message.get("content")
                if isinstance(content, list):  # multimodal-style parts: [{"type": "text", "text": ...}]
                    return "".join(
                        p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
                    )
                return content or ""
        return ""
    raise FtcotError(
        f"A reward function got a completion of type {type(completion).__name__}: TRL passes a string or a list of "
        "chat messages per completion; call it as reward(prompts=..., completions=[...], answer=[...])."
    )


def until_stop(text: str, stop: str | None) -> str:
    """``text`` up to, not including, the first ``stop`` (what ``ftcot eval``'s generation returns)."""
    if stop:
        at = text.find(stop)
        if at >= 0:
            return text[:at]
    return text


class AccuracyReward:
    """1.0 when a completion's parsed answer equals the row's gold answer, else 0.0 (see :func:`accuracy_reward`).

    Callable as TRL calls a reward function: ``reward(prompts=..., completions=..., answer=[...], **other_columns)``.
    Its ``__name__`` (``accuracy_reward``) names it in TRL's logs. Picklable (a module-level class), as TRL's
    parallel reward paths need."""

    def __init__(
        self,
        task: str | Task,
        *,
        mode: Mode = "paper",
        fmt: str | StudentFormat = "ft_cot",
        answer_column: str = "answer",
    ) -> None:
        if mode not in MODES:
            raise FtcotError(f"accuracy_reward: unknown answer-parsing mode {mode!r}: use one of {', '.join(MODES)}.")
        if mode == "math_verify":
            require_math_verify()
        self.task = resolve_task(task)
        self.format = get_format(fmt)
        self.mode = mode
        self.answer_column = answer_column
        self.__name__ = "accuracy_reward"

    def __repr__(self) -> str:
        return f"accuracy_reward({self.task.name!r}, mode={self.mode!r}, fmt={self.format.name!r})"

    def score(self, completion: Any, gold: str) -> dict[str, Any]:
        """The parser's full result for one completion (``prediction``, ``correct``, ...): ``score_completion`` on
        the text before the format's stop phrase, with the format's answer prefix."""
        text = until_stop(completion_text(completion), self.format.stop)
        return score_completion(self.task, text, str(gold), prefix=self.format.prefix, mode=self.mode)

    def __call__(
        self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **columns: Any
    ) -> list[float]:
        golds = columns.get(self.answer_column)
        if golds is None:
            passed = sorted(
                k for k in columns if k not in ("completion_ids", "trainer_state", "log_extra", "log_metric")
            )
            raise FtcotError(
                f"accuracy_reward({self.task.name!r}) needs the gold answers in the {self.answer_column!r} column, "
                f"which the training dataset lacks (its columns here: {', '.join(passed) or 'none'}). Keep the task's "
                "'answer' column beside 'prompt' (ftcot_hf.students.formats.format_dataset keeps it), or pass "
                "answer_column=."
            )
        if len(golds) != len(completions):
            raise ValueError(f"accuracy_reward: {len(completions)} completions but {len(golds)} gold answers.")
        rewards, predictions = [], []
        for i, (completion, gold) in enumerate(zip(completions, golds, strict=True)):
            try:
                scored = self.score(completion, gold)
            except ValueError as e:
                raise FtcotError(
                    f"accuracy_reward: gold answer {gold!r} (row {i} of the batch) cannot be read as a "
                    f"{self.task.name} answer: {e}. Check the dataset's {self.answer_column!r} column."
                ) from None
            rewards.append(1.0 if scored["correct"] else 0.0)
            predictions.append(scored["prediction"])
        log_extra = columns.get("log_extra")
        if callable(log_extra):  # TRL's completions table shows what the parser read, beside the reward
            log_extra("parsed_answer", [None if p is None else str(p) for p in predictions])
        return rewards


class FormatReward:
    """1.0 when a completion is shaped as the format's completions are, else 0.0 (see :func:`format_reward`)."""

    def __init__(self, fmt: str | StudentFormat = "ft_cot") -> None:
        self.format = get_format(fmt)
        if self.format.prefix is None and self.format.stop is None:
            raise FtcotError(
                f"format_reward: format {self.format.name!r} has neither an answer marker nor a stop phrase, so no "
                "completion is better shaped than another: use accuracy_reward alone, or a format such as ft_cot."
            )
        layout = self.format.layout
        # A tail layout writes its annotations after the stop phrase: text there is the trained shape, not a fault.
        self.text_after_stop = layout is not None and layout.placement == "tail"
        self.__name__ = "format_reward"

    def __repr__(self) -> str:
        return f"format_reward({self.format.name!r})"

    def well_formed(self, completion: Any) -> bool:
        text = completion_text(completion)
        stop, prefix = self.format.stop, self.format.prefix
        if stop:
            at = text.find(stop)
            if at < 0 or (not self.text_after_stop and text[at + len(stop) :].strip()):
                return False
            text = text[:at]
        if prefix is None:
            return bool(text.strip())
        # exactly one marker: the parser reads after the first one, so a second is a malformed answer
        if text.count(prefix) != 1:
            return False
        return bool(text.split(prefix, 1)[1].strip())

    def __call__(
        self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **columns: Any
    ) -> list[float]:
        return [1.0 if self.well_formed(c) else 0.0 for c in completions]


def accuracy_reward(
    task: str | Task, *, mode: Mode = "paper", fmt: str | StudentFormat = "ft_cot", answer_column: str = "answer"
) -> AccuracyReward:
    """A TRL reward function: 1.0 when the completion's answer, parsed as ``ftcot eval`` parses it, equals the gold.

    Args:
        task: a task name or :class:`~ftcot_hf.Task`: its answer type chooses the parser.
        mode: ``"paper"`` (bit-exact with the reference), ``"robust"`` or ``"math_verify"`` (number answers through
            Math-Verify, bounded per answer; other answer types in robust mode; needs the ``math`` extra): the same
            modes as ``ftcot eval --mode`` and ``ftcot teach --mode``.
        fmt: the student format the policy writes in: its answer prefix (``-->``) and stop phrase (``END``).
        answer_column: the dataset column holding the gold answer (TRL passes columns to reward functions by name).

    Raises:
        FtcotError: an unknown task, format or mode, or Math-Verify mode without the ``math`` extra; when called, a
        dataset without the gold column or a gold answer the parser cannot read.

    Example:
        >>> reward = accuracy_reward("coin_flip")
        >>> reward(prompts=["Is it heads? ###"] * 2, completions=[" It was flipped. --> no END", " --> yes END"],
        ...        answer=["no", "no"])
        [1.0, 0.0]
    """
    return AccuracyReward(task, mode=mode, fmt=fmt, answer_column=answer_column)


def format_reward(fmt: str | StudentFormat = "ft_cot") -> FormatReward:
    """A TRL reward function: 1.0 when the completion ends as the format's completions end: its answer marker once,
    a non-empty answer after it, then the stop phrase with nothing after it (``" ... --> yes END"`` for ``ft_cot``).

    Formats without a marker (``vanilla``) need a non-empty answer and the stop phrase; formats without a stop phrase
    (``ft_cot_t5``) the marker and an answer; tail layouts may write their annotations after the stop phrase.

    Example:
        >>> format_reward("ft_cot")(completions=[" It was flipped. --> no END", " It was flipped. no", " --> END"])
        [1.0, 0.0, 0.0]
    """
    return FormatReward(fmt)
