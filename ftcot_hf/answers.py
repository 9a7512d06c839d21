"""Answer parsing: candidate extraction, gold cleansing and scoring, in three named modes.

``paper`` mode is bit-exact with the reference implementation of Fine-tune-CoT (itsnamgyu/reasoning-teacher,
``Evaluator``), quirks included: e.g. for multiple-choice tasks every capital letter in the allowed range is a
candidate, so the "A" of "Answer" counts. ``robust`` mode fixes those quirks (numeric equality, ``$``/``%``/unit
stripping, word-bounded choice letters, case-insensitive yes/no). The two are never mixed: a mode is chosen per call
and every result says which one produced it. ``math_verify`` mode (number answers only; the ``math`` extra) hands
the text after the prefix to Hugging Face's Math-Verify (``math_verify.parse`` + ``math_verify.verify``), each call
bounded by our own wall-clock limit (:data:`MATH_VERIFY_TIMEOUT_S`); other answer types fall back to robust mode.

Scoring follows the reference: with no prefix the FIRST candidate is the prediction; with a prefix found, the FIRST
candidate after its first occurrence; with a prefix defined but missing, the LAST candidate of the whole text.
The completion is expected without its stop string (`` END``), as generation with a stop string returns it.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import re
import select
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from ftcot_hf.errors import FtcotError
from ftcot_hf.registry import Registry

logger = logging.getLogger(__name__)

Mode = Literal["paper", "robust", "math_verify"]
MODES: tuple[str, ...] = ("paper", "robust", "math_verify")

PREDICTION_PREFIXES: dict[str, str | None] = {
    "ft_cot": "-->",
    "natural": "Therefore, the answer is",
    "zero_shot_cot": "Therefore, the answer is",
    "few_shot_cot": "The answer is",
    "zero_shot": None,
    "vanilla": None,
}
"""The answer prefix of each prompt/completion format (the text after which the student's answer stands)."""

ANSWER_TYPES: Registry[type[AnswerParser]] = Registry("answer type")
"""answer type name -> parser class (``number``, ``choice``, ``yes_no``, ``letters``, ``text``)."""


def register_answer_type(cls: type[AnswerParser]) -> type[AnswerParser]:
    """Class decorator: make an :class:`AnswerParser` subclass available by its ``name`` (``--answer_type``)."""
    ANSWER_TYPES.register(cls.name, cls)
    return cls


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"Unknown answer-parsing mode {mode!r}: use one of {', '.join(MODES)}.")
    if mode == "math_verify":
        require_math_verify()


MATH_VERIFY_EXTRA = "pip install ftcot-hf[math]"


def require_math_verify() -> None:
    """FtcotError (one line naming the extra) when ``math-verify`` is not installed."""
    if importlib.util.find_spec("math_verify") is None:
        raise FtcotError(f'mode="math_verify" needs the math-verify package: {MATH_VERIFY_EXTRA}')


# --- Math-Verify, bounded by our own wall clock ---------------------------------------------------------------------
#
# math_verify's own timeout is signal.alarm(): it only works in the main thread of the main interpreter (it raises
# in any other thread: a data-loader worker, the HTTP teacher's event-loop thread, a thread pool), and it cannot stop
# C code. A thread with a join timeout (and math_verify's timeouts off) would return in time, but it cannot stop the
# runaway sympy computation: the thread keeps holding the GIL and a CPU, and such threads pile up. So each call runs
# in ONE long-lived worker PROCESS (a plain `python -c` subprocess, not multiprocessing: no dependence on the
# caller's __main__ guard, no fork of a process that holds threads/CUDA), with math_verify's signal timeouts OFF
# (parsing_timeout=None, timeout_seconds=None: our limit is the single bound). The caller waits for the reply with
# select() for at most MATH_VERIFY_TIMEOUT_S; on a timeout the worker is killed (the computation really stops), the
# answer counts as "no answer found", and the next call starts a fresh worker. Calls from several threads are
# serialised by a lock; the limit covers one answer's parse + verify, not the worker's start-up (import of sympy).

MATH_VERIFY_TIMEOUT_S = float(os.environ.get("FTCOT_MATH_VERIFY_TIMEOUT_S", "5"))
"""Wall-clock limit of one Math-Verify parse + verify, in seconds (env ``FTCOT_MATH_VERIFY_TIMEOUT_S``)."""

_WORKER_START_TIMEOUT_S = 120.0


def _math_verify_call(text: str, gold: str) -> dict[str, Any]:
    """Runs in the worker: Math-Verify's prediction for ``text`` and whether it verifies against ``gold``."""
    from math_verify import parse, verify

    predicted = parse(text, parsing_timeout=None)
    if not predicted:
        return {"prediction": None, "correct": False}
    # parse() returns [sympy object, the matched text]: the text (sentence period dropped) is the prediction
    prediction = next((p for p in reversed(predicted) if isinstance(p, str)), str(predicted[0])).strip().rstrip(".")
    gold_parsed = parse(gold, parsing_timeout=None)
    correct = bool(gold_parsed) and bool(verify(gold_parsed, predicted, timeout_seconds=None))
    return {"prediction": prediction, "correct": correct}


def _math_verify_serve(target: str = "ftcot_hf.answers:_math_verify_call") -> None:
    """The worker's loop: one JSON request per stdin line -> one JSON reply per stdout line."""
    import importlib

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # its "timeout is disabled" warning: we bound it
    module, _, attr = target.partition(":")
    func = getattr(importlib.import_module(module), attr)
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing but replies on the reply channel
    out.write('{"ready": true}\n')
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            reply = func(request["text"], request["gold"])
        except Exception as e:  # a parse failure is "no answer", not a crash of the worker
            reply = {"prediction": None, "correct": False, "error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


class MathVerifyWorker:
    """A Math-Verify worker process with a per-call wall-clock limit (see the comment above)."""

    def __init__(self, target: str = "ftcot_hf.answers:_math_verify_call", timeout_s: float | None = None):
        self.target = target
        self.timeout_s = timeout_s
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def _start(self) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        code = f"from ftcot_hf.answers import _math_verify_serve; _math_verify_serve({self.target!r})"
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
            bufsize=1,
        )
        if self._read(proc, _WORKER_START_TIMEOUT_S) is None:
            self._kill(proc)
            raise FtcotError(f"The Math-Verify worker did not start within {_WORKER_START_TIMEOUT_S:.0f} s.")
        return proc

    @staticmethod
    def _read(proc: subprocess.Popen, timeout: float) -> dict[str, Any] | None:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        if not ready:
            return None
        line = proc.stdout.readline()  # the worker writes whole lines at once
        return json.loads(line) if line else None

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        proc.kill()
        proc.wait()

    def __call__(self, text: str, gold: str) -> dict[str, Any]:
        """``{"prediction": str | None, "correct": bool}`` (+ ``timed_out``/``error``); never blocks longer than
        the limit once the worker runs."""
        timeout = MATH_VERIFY_TIMEOUT_S if self.timeout_s is None else self.timeout_s
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._start()
            proc = self._proc
            try:
                assert proc.stdin is not None
                proc.stdin.write(json.dumps({"text": text, "gold": gold}) + "\n")
                proc.stdin.flush()
                reply = self._read(proc, timeout)
            except (BrokenPipeError, OSError, ValueError):
                reply = None
            if reply is None:
                self._kill(proc)
                self._proc = None
                logger.warning("Math-Verify gave no reply within %.1f s: counted as no answer.", timeout)
                return {"prediction": None, "correct": False, "timed_out": True}
            return reply

    def close(self) -> None:
        with self._lock:
            if self._proc is not None:
                self._kill(self._proc)
                self._proc = None


_WORKER: MathVerifyWorker | None = None
_WORKER_LOCK = threading.Lock()


def math_verify_worker() -> MathVerifyWorker:
    """The process-wide Math-Verify worker (started on first use)."""
    global _WORKER
    with _WORKER_LOCK:
        if _WORKER is None:
            require_math_verify()
            _WORKER = MathVerifyWorker()
        return _WORKER


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


@register_answer_type
@dataclass(frozen=True)
class NumberAnswer(AnswerParser):
    """Arithmetic answers. ``exact_string=True`` (gsm8k, multiarith) compares strings in paper mode ("18.0" != "18");
    otherwise (addsub, svamp, single_eq) floats within 1e-6. Robust mode always compares numerically. Math-Verify
    mode: ``math_verify.parse`` picks the answer of the text (after the prefix) and ``math_verify.verify`` compares
    it with the gold number, within :data:`MATH_VERIFY_TIMEOUT_S` (a timeout: no answer)."""

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
