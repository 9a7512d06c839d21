"""The data recipe: which of the teacher's samples become training rows, and how many rows each filter removed.

:func:`~ftcot_hf.teach.augment.augment` calls a :class:`RowFilter` on every chunk of questions (all the samples of a
question are in one chunk, so every filter here is computed per chunk, in memory that does not grow with the run).
The filters run in a fixed order, each on the rows the ones before it kept, and each counts the rows it removed
(:data:`FILTERS`, ``YieldReport.filters``):

1. ``incorrect``: the parsed answer is not the gold one (``--keep correct`` and ``--keep pass_rate``);
2. ``truncated``: correct, but the rationale or stage-2 answer was cut by the token limit (unless ``keep_truncated``);
3. ``empty``: correct, but the rationale or the answer is empty;
4. ``pass_rate``: the question's pass rate (its correct samples over its first D samples that came back) lies outside
   ``[pass_rate_min, pass_rate_max]`` (``--keep pass_rate``, open-r1's band): every row of such a question goes;
5. ``student_length``: the rationale is longer than ``max_rationale_student_tokens`` tokens of the student's tokenizer
   (the rationale's text alone, no special tokens);
6. ``near_duplicate``: the rationale's word 3-shingles have a Jaccard similarity >= ``dedup_jaccard`` with those of a
   rationale of the same question kept before it (in sample order).

``--keep all`` runs only 5 and 6 (and keeps every sample, wrong, cut or empty, as before).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ftcot_hf.errors import FtcotError

logger = logging.getLogger(__name__)

KEEP_MODES = ("correct", "all", "pass_rate")
FILTERS = ("incorrect", "truncated", "empty", "pass_rate", "student_length", "near_duplicate")
"""The filters in the order they run (the keys of ``YieldReport.filters``)."""
TRUNCATED = "length"
SHINGLE = 3
"""Words per shingle of the near-duplicate check: 3 tells two paraphrased rationales apart from two that differ in a
word or two, and is cheap (a set of tuples per rationale)."""
_EPS = 1e-9
_WORD = re.compile(r"\w+")


def shingles(text: str, n: int = SHINGLE) -> frozenset[tuple[str, ...]]:
    """The word ``n``-shingles of ``text`` after normalising it (lower case, words only: punctuation and white space
    do not count). A text shorter than ``n`` words is one shingle of its words."""
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return frozenset([tuple(words)])
    return frozenset(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def jaccard(a: frozenset, b: frozenset) -> float:
    """|a & b| / |a | b| (1.0 for two empty sets)."""
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def load_tokenizer(name: str) -> Any:
    """The tokenizer of a student (Hub id, folder, GGUF file or the embedded SmolLM2), as ``ftcot train`` loads it;
    one line naming the flag when it cannot be loaded."""
    from transformers import AutoTokenizer

    from ftcot_hf.students.loading import ensure_converted, resolve_student

    try:
        kind, where = resolve_student(name)
        if kind == "gguf":
            where = ensure_converted(where)
        return AutoTokenizer.from_pretrained(str(where))
    except FtcotError as e:
        raise FtcotError(f"--student_tokenizer: {e}") from None
    except Exception as e:  # noqa: BLE001 -- any library error is one line naming the flag
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise FtcotError(
            f"--student_tokenizer {name!r}: its tokenizer could not be loaded ({reason}); give the student's Hub id "
            "or folder (the one you will train)."
        ) from None


def token_counter(tokenizer: Any) -> Callable[[list[str]], list[int]]:
    """Texts -> their lengths in ``tokenizer``'s tokens (no special tokens), one batched call per chunk."""

    def count(texts: list[str]) -> list[int]:
        if not texts:
            return []
        return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    return count


@dataclass
class RowFilter:
    """The data recipe's filters over one chunk of samples (the columns :class:`RationaleAugmenter` returns).

    Calling it returns the mask of rows kept and the rows each filter removed (:data:`FILTERS`)."""

    keep: str = "correct"
    keep_truncated: bool = False
    degree: int = 1
    """D: the pass rate is taken over a question's samples ``completion_index < degree`` (resampled extras left
    out, so ``--resample_until`` does not move a question into the band)."""
    pass_rate_min: float = 0.0
    pass_rate_max: float = 1.0
    max_student_tokens: int | None = None
    count_tokens: Callable[[list[str]], list[int]] | None = None
    dedup_jaccard: float | None = None
    removed: Counter = field(default_factory=Counter, init=False)
    """Rows removed per filter over every chunk so far."""

    def __post_init__(self) -> None:
        if self.keep not in KEEP_MODES:
            raise ValueError(f"keep must be one of {', '.join(KEEP_MODES)}, not {self.keep!r}.")
        if self.max_student_tokens is not None and self.count_tokens is None:
            raise ValueError("max_student_tokens needs count_tokens (the student's tokenizer).")

    def __call__(self, out: dict[str, list]) -> tuple[list[bool], dict[str, int]]:
        n = len(out["correct"])
        removed: Counter[str] = Counter()
        mask = [True] * n
        if self.keep != "all":
            columns = ("correct", "finish_reason", "answer_finish_reason", "rationale", "teacher_answer")
            for i, (c, f1, f2, r, a) in enumerate(zip(*(out[k] for k in columns), strict=True)):
                if not c:
                    reason = "incorrect"
                elif not self.keep_truncated and TRUNCATED in (f1, f2):
                    reason = "truncated"
                elif not (r.strip() and a.strip()):  # an empty rationale or answer teaches nothing
                    reason = "empty"
                else:
                    continue
                mask[i] = False
                removed[reason] += 1
        if self.keep == "pass_rate":
            self._band(out, mask, removed)
        if self.max_student_tokens is not None:
            self._length(out, mask, removed)
        if self.dedup_jaccard is not None:
            self._dedup(out, mask, removed)
        self.removed.update(removed)
        return mask, dict(removed)

    def pass_rates(self, out: dict[str, list]) -> dict[Any, float]:
        """Each question's (``sample_index``) correct samples over its first D samples that came back."""
        tried: Counter = Counter()
        passed: Counter = Counter()
        for q, j, c in zip(out["sample_index"], out["completion_index"], out["correct"], strict=True):
            if j < self.degree:
                tried[q] += 1
                passed[q] += bool(c)
        return {q: passed[q] / tried[q] for q in tried}

    def _band(self, out: dict[str, list], mask: list[bool], removed: Counter) -> None:
        rates = self.pass_rates(out)
        for i, q in enumerate(out["sample_index"]):
            rate = rates.get(q, 0.0)  # only resampled extras came back: no pass rate over D, out of the band
            if mask[i] and not (self.pass_rate_min - _EPS <= rate <= self.pass_rate_max + _EPS):
                mask[i] = False
                removed["pass_rate"] += 1

    def _length(self, out: dict[str, list], mask: list[bool], removed: Counter) -> None:
        rows = [i for i, m in enumerate(mask) if m]
        assert self.count_tokens is not None and self.max_student_tokens is not None
        for i, length in zip(rows, self.count_tokens([out["rationale"][i] for i in rows]), strict=True):
            if length > self.max_student_tokens:
                mask[i] = False
                removed["student_length"] += 1

    def _dedup(self, out: dict[str, list], mask: list[bool], removed: Counter) -> None:
        kept: dict[Any, list[frozenset]] = {}
        for i in range(len(mask)):  # the augmenter's rows come in sample order within a question
            if not mask[i]:
                continue
            seen = kept.setdefault(out["sample_index"][i], [])
            mine = shingles(out["rationale"][i])
            if any(jaccard(mine, other) >= self.dedup_jaccard - _EPS for other in seen):  # type: ignore[operator]
                mask[i] = False
                removed["near_duplicate"] += 1
            else:
                seen.append(mine)

    @property
    def active(self) -> list[str]:
        """The filters this recipe runs, in order (each has a count in the yield report, 0 included)."""
        out = list(FILTERS[:3]) if self.keep != "all" else []
        if self.keep_truncated and out:
            out.remove("truncated")
        out += ["pass_rate"] if self.keep == "pass_rate" else []
        out += ["student_length"] if self.max_student_tokens is not None else []
        return out + (["near_duplicate"] if self.dedup_jaccard is not None else [])


def check_recipe(
    *,
    keep: str,
    degree: int,
    pass_rate_min: float | None,
    pass_rate_max: float | None,
    max_rationale_student_tokens: int | None,
    student_tokenizer: str | None,
    dedup_jaccard: float | None,
    student_tokenizer_default: bool = False,
) -> None:
    """Refuse a recipe that would not do what it says (one line, the flags named). ``student_tokenizer_default``:
    the caller fills ``--student_tokenizer`` itself (``ftcot run``: its ``--student``)."""
    if keep not in KEEP_MODES:
        raise FtcotError(f"--keep must be 'correct', 'all' or 'pass_rate', not {keep!r}.")
    for name, value in (("pass_rate_min", pass_rate_min), ("pass_rate_max", pass_rate_max)):
        if value is None:
            continue
        if keep != "pass_rate":
            raise FtcotError(f"--{name} is the band of --keep pass_rate, but --keep is {keep!r}: add --keep "
                             f"pass_rate, or leave --{name} out.")  # fmt: skip
        if not 0.0 <= value <= 1.0:
            raise FtcotError(f"--{name} must be a pass rate between 0 and 1 (correct samples / D), got {value}.")
    low = 0.0 if pass_rate_min is None else pass_rate_min
    high = 1.0 if pass_rate_max is None else pass_rate_max
    if keep == "pass_rate":
        if low > high:
            raise FtcotError(f"--pass_rate_min {low} is above --pass_rate_max {high}: no question could be kept.")
        if pass_rate_min is None and pass_rate_max is None:
            raise FtcotError("--keep pass_rate needs its band: give --pass_rate_min and/or --pass_rate_max (e.g. "
                             "--pass_rate_min 0.25 --pass_rate_max 0.75); [0, 1] is --keep correct.")  # fmt: skip
        if degree == 1 and high < 1.0:
            raise FtcotError(f"--keep pass_rate at --degree 1: a question's pass rate is 0 or 1, so --pass_rate_max "
                             f"{high} keeps no correct row; sample more (--degree 4 or more) or use --keep "
                             "correct.")  # fmt: skip
    if max_rationale_student_tokens is not None:
        if isinstance(max_rationale_student_tokens, bool) or max_rationale_student_tokens < 1:
            raise FtcotError(f"--max_rationale_student_tokens must be a number of tokens >= 1, got "
                             f"{max_rationale_student_tokens}; leave it out for no length filter.")  # fmt: skip
        if not student_tokenizer and not student_tokenizer_default:
            raise FtcotError("--max_rationale_student_tokens counts the student's tokens: give --student_tokenizer "
                             "(the student's Hub id or folder).")  # fmt: skip
    elif student_tokenizer:
        raise FtcotError("--student_tokenizer is only used by --max_rationale_student_tokens: give that limit, or "
                         "leave --student_tokenizer out.")  # fmt: skip
    if dedup_jaccard is not None and not 0.0 < dedup_jaccard <= 1.0:
        raise FtcotError(f"--dedup_jaccard must be a similarity > 0 and <= 1 (1: same 3-word shingles), got "
                         f"{dedup_jaccard}; leave it out to keep near-duplicates.")  # fmt: skip


def describe(keep: str, pass_rate: Sequence[float] | None = None, max_student_tokens: int | None = None,
             student_tokenizer: str | None = None, dedup_jaccard: float | None = None) -> str:  # fmt: skip
    """The card's one-line description of the recipe."""
    if keep == "pass_rate":
        low, high = pass_rate or (0.0, 1.0)
        parts = [f"keep=pass_rate (questions whose pass rate over their D samples is in [{low:g}, {high:g}]; their "
                 "correct rows)"]  # fmt: skip
    else:
        parts = [f"keep={keep}" + (" (parsed answer == gold answer)" if keep == "correct" else "")]
    if max_student_tokens is not None:
        parts.append(f"rationales of at most {max_student_tokens} tokens of `{student_tokenizer}`")
    if dedup_jaccard is not None:
        parts.append(f"near-duplicate rationales of a question removed (word 3-shingle Jaccard >= {dedup_jaccard:g})")
    return "; ".join(parts)
