"""Answer parsing: candidate extraction, gold cleansing and scoring, in two named modes.

``paper`` mode is bit-exact with the reference implementation of Fine-tune-CoT (itsnamgyu/reasoning-teacher,
``Evaluator``), quirks included: e.g. for multiple-choice tasks every capital letter in the allowed range is a
candidate, so the "A" of "Answer" counts. ``robust`` mode fixes those quirks (numeric equality, ``$``/``%``/unit
stripping, word-bounded choice letters, case-insensitive yes/no). The two are never mixed: a mode is chosen per call
and every result says which one produced it.

Scoring follows the reference: with no prefix the FIRST candidate is the prediction; with a prefix found, the FIRST
candidate after its first occurrence; with a prefix defined but missing, the LAST candidate of the whole text.
The completion is expected without its stop string (`` END``), as generation with a stop string returns it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from ftcot_hf.tasks.spec import TaskSpec

Mode = Literal["paper", "robust"]
MODES: tuple[str, ...] = ("paper", "robust")

PREDICTION_PREFIXES: dict[str, str | None] = {
    "ft_cot": "-->",
    "natural": "Therefore, the answer is",
    "zero_shot_cot": "Therefore, the answer is",
    "few_shot_cot": "The answer is",
    "zero_shot": None,
    "vanilla": None,
}
"""The answer prefix of each prompt/completion format (SPEC §5)."""

ANSWER_TYPES: dict[str, type[AnswerParser]] = {}


def register_answer_type(cls: type[AnswerParser]) -> type[AnswerParser]:
    ANSWER_TYPES[cls.name] = cls
    return cls


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"Unknown answer-parsing mode {mode!r}: use one of {', '.join(MODES)}.")


@dataclass(frozen=True)
class AnswerParser:
    """How one kind of answer is extracted from text, cleansed and compared."""

    name: ClassVar[str] = ""

    def candidates(self, text: str, mode: Mode = "paper") -> list[str]:
        raise NotImplementedError

    def cleanse_gold(self, gold: str, mode: Mode = "paper") -> Any:
        return gold

    def equal(self, candidate: str, gold: Any, mode: Mode = "paper") -> bool:
        return candidate == gold

    def describe(self) -> str:
        return self.name


_NUMBER_PAPER = re.compile(r"-?\d+(?:\.\d+)?")
_NUMBER_ROBUST = re.compile(r"-?(?:\d+(?:\.\d+)?|\.\d+)")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def _robust_number_text(text: str) -> str:
    return _THOUSANDS.sub("", text.replace("\u2212", "-")).replace("$", " ").replace("%", " ")


def _to_float(value: str, what: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{what} {value!r} is not a number.") from None


@register_answer_type
@dataclass(frozen=True)
class NumberAnswer(AnswerParser):
    """Arithmetic answers. ``exact_string=True`` (gsm8k, multiarith) compares strings in paper mode ("18.0" != "18");
    otherwise (addsub, svamp, single_eq) floats within 1e-6. Robust mode always compares numerically."""

    name: ClassVar[str] = "number"
    exact_string: bool = False

    def describe(self) -> str:
        return "number (string match)" if self.exact_string else "number"

    def candidates(self, text: str, mode: Mode = "paper") -> list[str]:
        if mode == "paper":
            return _NUMBER_PAPER.findall(text.replace(",", ""))
        return _NUMBER_ROBUST.findall(_robust_number_text(text))

    def cleanse_gold(self, gold: str, mode: Mode = "paper") -> Any:
        if mode == "paper":
            gold = gold.replace(",", "")
            return gold if self.exact_string else _to_float(gold, "Gold answer")
        cleaned = _robust_number_text(str(gold)).strip().rstrip(".")
        found = _NUMBER_ROBUST.findall(cleaned)
        if not found:
            raise ValueError(f"Gold answer {gold!r} holds no number.")
        return float(found[0])

    def equal(self, candidate: str, gold: Any, mode: Mode = "paper") -> bool:
        if mode == "paper" and self.exact_string:
            return candidate == gold
        value = float(candidate)
        return abs(value - gold) <= 1e-6 or (mode == "robust" and math.isclose(value, gold, rel_tol=1e-9))


@register_answer_type
@dataclass(frozen=True)
class ChoiceAnswer(AnswerParser):
    """Multiple-choice letters. Paper mode: any of the letters anywhere; robust mode: letters standing alone
    (``(B)``, ``B.``, ``B``), preferring parenthesised ones."""

    name: ClassVar[str] = "choice"
    letters: str = "ABCDE"

    def describe(self) -> str:
        return f"choice ({self.letters[0]}-{self.letters[-1]})"

    def candidates(self, text: str, mode: Mode = "paper") -> list[str]:
        if mode == "paper":
            return re.findall(f"[{self.letters}]", text)
        found = re.findall(rf"\(([{self.letters}])\)", text)
        return found or re.findall(rf"(?<![A-Za-z])([{self.letters}])(?![A-Za-z])", text)

    def cleanse_gold(self, gold: str, mode: Mode = "paper") -> Any:
        return gold if mode == "paper" else gold.strip().strip("()").upper()


@register_answer_type
@dataclass(frozen=True)
class YesNoAnswer(AnswerParser):
    """Yes/no answers (coin_flip, strategy_qa). ``lower_gold`` mirrors the reference, which lowercases the gold
    answer of strategy_qa only; robust mode lowercases always."""

    name: ClassVar[str] = "yes_no"
    lower_gold: bool = False

    def candidates(self, text: str, mode: Mode = "paper") -> list[str]:
        if mode == "paper":
            tokens = re.sub(r"\"|\'|\n|\.|\s|\:|\,", " ", text.lower()).split(" ")
            return [t for t in tokens if t in ("yes", "no")]
        return re.findall(r"(?<![a-z])(yes|no)(?![a-z])", text.lower())

    def cleanse_gold(self, gold: str, mode: Mode = "paper") -> Any:
        return gold.lower() if (self.lower_gold or mode == "robust") else gold


@register_answer_type
@dataclass(frozen=True)
class LettersAnswer(AnswerParser):
    """Last-letter concatenation. Paper mode: the whole text minus quotes, periods and whitespace is the one
    candidate (case-sensitive). Robust mode: each alphabetic word is a candidate, compared case-insensitively."""

    name: ClassVar[str] = "letters"

    def candidates(self, text: str, mode: Mode = "paper") -> list[str]:
        if mode == "paper":
            return [re.sub(r"\"|\'|\n|\.|\s", "", text)]
        return re.findall(r"[A-Za-z]+", text)

    def cleanse_gold(self, gold: str, mode: Mode = "paper") -> Any:
        return gold if mode == "paper" else gold.strip().lower()

    def equal(self, candidate: str, gold: Any, mode: Mode = "paper") -> bool:
        return candidate == gold if mode == "paper" else candidate.lower() == gold


def score_with_parser(
    parser: AnswerParser, completion: str, gold: str, *, prefix: str | None = None, mode: Mode = "paper"
) -> dict[str, Any]:
    """Score one completion against its gold answer with an explicit parser (see :func:`score_completion`)."""
    _check_mode(mode)
    completion = completion or ""
    if prefix is None:
        candidates, first = parser.candidates(completion, mode), True
    else:
        at = completion.find(prefix)
        if at == -1:
            candidates, first = parser.candidates(completion, mode), False
        else:
            candidates, first = parser.candidates(completion[at + len(prefix) :], mode), True
    prediction = (candidates[0] if first else candidates[-1]) if candidates else None
    cleaned = parser.cleanse_gold(gold, mode)
    return {
        "prediction": prediction,
        "candidates": candidates,
        "correct": prediction is not None and parser.equal(prediction, cleaned, mode),
        "contains_answer": any(parser.equal(c, cleaned, mode) for c in candidates),
        "correct_format": prefix is None or prefix in completion,
        "mode": mode,
    }


def score_completion(
    task: str | TaskSpec,
    completion: str,
    gold: str,
    *,
    prefix: str | None = None,
    mode: Mode = "paper",
) -> dict[str, Any]:
    """Parse ``completion`` for ``task`` and compare it with ``gold``.

    Args:
        task: a task name (see ``ftcot_hf.TASKS``) or a task definition.
        completion: the generated text, without its stop string.
        gold: the gold answer as stored in the task's ``answer`` column.
        prefix: the literal answer prefix of the format (``"-->"`` for Fine-tune-CoT, see
            ``PREDICTION_PREFIXES``), or None when the format has none.
        mode: ``"paper"`` (bit-exact with the reference) or ``"robust"``.

    Returns:
        ``prediction`` (the chosen candidate text, or None), ``candidates``, ``correct``, ``contains_answer``
        (any candidate is correct), ``correct_format`` (prefix present, or no prefix defined) and ``mode``.

    Example:
        >>> score_completion("coin_flip", "The coin was flipped twice. --> yes", "yes", prefix="-->")["correct"]
        True
    """
    from ftcot_hf.tasks import get_task

    spec = get_task(task) if isinstance(task, str) else task
    return score_with_parser(spec.answer, completion, gold, prefix=prefix, mode=mode)
