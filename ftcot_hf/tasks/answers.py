"""Answer parsing: candidate extraction, gold cleansing and scoring, in three named modes.

``paper`` mode is bit-exact with the reference implementation of Fine-tune-CoT (itsnamgyu/reasoning-teacher,
``Evaluator``), quirks included: e.g. for multiple-choice tasks every capital letter in the allowed range is a
candidate, so the "A" of "Answer" counts. ``robust`` mode fixes those quirks (numeric equality, ``$``/``%``/unit
stripping, word-bounded choice letters, case-insensitive yes/no). The two are never mixed: a mode is chosen per call
and every result says which one produced it. ``math_verify`` mode (number answers only; the ``math`` extra) hands
the text after the prefix to Hugging Face's Math-Verify (``math_verify.parse`` + ``math_verify.verify``), each call
bounded by our own wall-clock limit (`math_verify.MATH_VERIFY_TIMEOUT_S`); other answer types fall back to robust mode.

Scoring follows the reference: with no prefix the FIRST candidate is the prediction; with a prefix found, the FIRST
candidate after its first occurrence; with a prefix defined but missing, the LAST candidate of the whole text.
The completion is expected without its stop string (`` END``), as generation with a stop string returns it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from ftcot_hf.registry import Registry
from ftcot_hf.tasks.math_verify import math_verify_worker, require_math_verify

Mode = Literal["paper", "robust", "math_verify"]
MODES: tuple[str, ...] = ("paper", "robust", "math_verify")

def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"Unknown answer-parsing mode {mode!r}: use one of {', '.join(MODES)}.")
    if mode == "math_verify":
        require_math_verify()


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

    def vote_key(self, prediction: str | None, mode: Mode = "paper") -> str | None:
        """The form a parsed prediction votes in for self-consistency: answers equal under ``equal`` vote together."""
        return prediction

    def canonical_gold(self, value: Any, choices: list[dict[str, str]] | None = None) -> str:
        """A user dataset's gold answer as this type stores it in the ``answer`` column; ValueError (saying why)
        when ``value`` cannot be read as such an answer."""
        text = "" if value is None else str(value).strip()
        if not text:
            raise ValueError("the gold answer is empty")
        return text

    @classmethod
    def for_dataset(cls, choices: int = 0) -> AnswerParser:
        """The parser of a user dataset with this answer type (``choices``: the most options a question has)."""
        return cls()


LETTERS = "ABCDEFGHIJ"
"""Option labels of multiple-choice questions, in order."""

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


ANSWER_TYPES: Registry[type[AnswerParser]] = Registry("answer type", base=AnswerParser, classes=True)
"""answer type name -> parser class (``number``, ``choice``, ``yes_no``, ``letters``, ``text``)."""


def register_answer_type(cls: type[AnswerParser]) -> type[AnswerParser]:
    """Class decorator: make an :class:`AnswerParser` subclass available by its ``name`` (``--answer_type``)."""
    ANSWER_TYPES.check(cls)
    ANSWER_TYPES.register(cls.name, cls)
    return cls


@register_answer_type
@dataclass(frozen=True)
class NumberAnswer(AnswerParser):
    """Arithmetic answers. ``exact_string=True`` (gsm8k, multiarith) compares strings in paper mode ("18.0" != "18");
    otherwise (addsub, svamp, single_eq) floats within 1e-6. Robust mode always compares numerically. Math-Verify
    mode: ``math_verify.parse`` picks the answer of the text (after the prefix) and ``math_verify.verify`` compares
    it with the gold number, within `math_verify.MATH_VERIFY_TIMEOUT_S` (a timeout: no answer)."""

    name: ClassVar[str] = "number"
    exact_string: bool = False

    def describe(self) -> str:
        return "number (string match)" if self.exact_string else "number"

    def candidates(self, text: str, mode: Mode = "paper") -> list[str]:
        if mode == "paper":
            return _NUMBER_PAPER.findall(text.replace(",", ""))
        if mode == "math_verify":
            prediction = math_verify_worker()(text, "0")["prediction"]
            return [] if prediction is None else [prediction]
        return _NUMBER_ROBUST.findall(_robust_number_text(text))

    def score_math_verify(self, text: str, gold: str) -> dict[str, Any]:
        """Math-Verify's prediction for ``text`` and whether it verifies against ``gold`` (one bounded call)."""
        return math_verify_worker()(text, self.canonical_gold(gold))

    def cleanse_gold(self, gold: str, mode: Mode = "paper") -> Any:
        if mode == "math_verify":
            return self.canonical_gold(gold)
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
        if mode == "math_verify":
            return bool(math_verify_worker()(candidate, str(gold))["correct"])
        value = float(candidate)
        return abs(value - gold) <= 1e-6 or (mode == "robust" and math.isclose(value, gold, rel_tol=1e-9))

    def vote_key(self, prediction: str | None, mode: Mode = "paper") -> str | None:
        # Numbers compared as numbers pool their votes ("18" and "18.0"); string-matched ones do not.
        if prediction is None or (mode == "paper" and self.exact_string):
            return prediction
        try:
            return repr(float(prediction))
        except ValueError:
            return prediction

    def canonical_gold(self, value: Any, choices: list[dict[str, str]] | None = None) -> str:
        if isinstance(value, bool):
            raise ValueError("a boolean is not a number")
        text = _robust_number_text(str(value if value is not None else "")).strip().rstrip(".")
        found = _NUMBER_ROBUST.findall(text)
        if len(found) != 1:
            raise ValueError("no number in it" if not found else f"{len(found)} numbers in it, expected one")
        number = float(found[0])
        if not math.isfinite(number):
            raise ValueError("not a finite number")
        return str(int(number)) if number.is_integer() else repr(number)


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

    @classmethod
    def for_dataset(cls, choices: int = 0) -> AnswerParser:
        if not 2 <= choices <= len(LETTERS):
            raise ValueError(f"a choice task needs 2 to {len(LETTERS)} options per question, found {choices}")
        return cls(LETTERS[:choices])

    def canonical_gold(self, value: Any, choices: list[dict[str, str]] | None = None) -> str:
        """A letter (``B``, ``(b)``, ``B)``), or the text of one of the choices (case-insensitive)."""
        text = "" if value is None else str(value).strip()
        if not choices:
            raise ValueError("the question has no choices")
        labels = [c["label"] for c in choices]
        letter = re.fullmatch(r"\(?([A-Za-z])[).:]?", text)
        if letter and letter.group(1).upper() in labels:
            return letter.group(1).upper()
        matches = [c["label"] for c in choices if c["text"].strip().casefold() == text.casefold()]
        if len(matches) == 1:
            return matches[0]
        raise ValueError(f"neither a choice label ({', '.join(labels)}) nor the text of exactly one choice")


_YES = {"yes", "true", "1", "y"}
_NO = {"no", "false", "0", "n"}


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

    @classmethod
    def for_dataset(cls, choices: int = 0) -> AnswerParser:
        return cls(lower_gold=True)

    def canonical_gold(self, value: Any, choices: list[dict[str, str]] | None = None) -> str:
        if isinstance(value, bool):
            return "yes" if value else "no"
        text = "" if value is None else str(value).strip().rstrip(".").casefold()
        if text in _YES:
            return "yes"
        if text in _NO:
            return "no"
        raise ValueError("not yes/no (yes, no, true, false, 1, 0)")


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

    def canonical_gold(self, value: Any, choices: list[dict[str, str]] | None = None) -> str:
        text = "" if value is None else re.sub(r"\"|'|\.|\s", "", str(value))
        if not text.isalpha():
            raise ValueError("not a string of letters")
        return text


def normalize_text(text: str) -> str:
    """Free-text answers compare after this: whitespace collapsed, case-folded, surrounding quotes and trailing
    punctuation removed."""
    text = " ".join(str(text).split()).casefold()
    return text.strip(" \"'`").rstrip(".!?;:,").strip(" \"'`")


@register_answer_type
@dataclass(frozen=True)
class TextAnswer(AnswerParser):
    """Free-text answers (user datasets). Each non-empty line is a candidate, normalised (:func:`normalize_text`);
    paper and robust mode agree. A leading "the answer is" is dropped."""

    name: ClassVar[str] = "text"

    def candidates(self, text: str, mode: Mode = "paper") -> list[str]:
        lines = (re.sub(r"^(?:the )?answer(?: is)?:?\s*", "", normalize_text(line)) for line in text.splitlines())
        return [line for line in lines if line]

    def cleanse_gold(self, gold: str, mode: Mode = "paper") -> Any:
        return normalize_text(gold)

    def canonical_gold(self, value: Any, choices: list[dict[str, str]] | None = None) -> str:
        text = " ".join(("" if value is None else str(value)).split())
        if not normalize_text(text):
            raise ValueError("the gold answer is empty")
        return text


def make_parser(answer_type: str, *, choices: int = 0) -> AnswerParser:
    """The parser of a user dataset's ``--answer_type`` (``choices``: the most options a question has)."""
    return ANSWER_TYPES[answer_type].for_dataset(choices)


def score_with_parser(
    parser: AnswerParser, completion: str, gold: str, *, prefix: str | None = None, mode: Mode = "paper"
) -> dict[str, Any]:
    """Score one completion against its gold answer with an explicit parser (see :func:`score_completion`).

    ``mode="math_verify"``: a :class:`NumberAnswer` hands the text after the prefix (the whole text when the prefix
    is missing or None) to Math-Verify; other answer types are scored in robust mode (``mode`` still says
    ``math_verify``, ``parsed_as`` says ``robust``)."""
    _check_mode(mode)
    completion = completion or ""
    if mode == "math_verify":
        if isinstance(parser, NumberAnswer):
            at = -1 if prefix is None else completion.find(prefix)
            text = completion if at == -1 else completion[at + len(prefix or "") :]
            reply = parser.score_math_verify(text, gold)
            prediction = reply.get("prediction")
            return {
                "prediction": prediction,
                "candidates": [] if prediction is None else [prediction],
                "correct": prediction is not None and bool(reply.get("correct")),
                "contains_answer": prediction is not None and bool(reply.get("correct")),
                "correct_format": prefix is None or prefix in completion,
                "mode": mode,
                "timed_out": bool(reply.get("timed_out")),
            }
        scored = score_with_parser(parser, completion, gold, prefix=prefix, mode="robust")
        return {**scored, "mode": mode, "parsed_as": "robust"}
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
