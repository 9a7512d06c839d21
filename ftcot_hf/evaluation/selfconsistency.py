"""Self-consistency (Wang et al., 2023): k sampled completions per question, majority vote over parsed answers.

Votes are cast on parsed predictions (what ``ftcot_hf.tasks.answers`` extracts), never on raw text. Where the task's
parser compares numbers as numbers (addsub, svamp, single_eq in paper mode; every numeric task in robust mode),
predictions are grouped by value, so ``"18"`` and ``"18.0"`` vote together; elsewhere (gsm8k/multiarith in paper
mode compare strings, choices, yes/no, letters) by exact string.

Tie break (documented and tested): among the answers with the most votes, the one whose FIRST vote came earliest
(lowest sample number) wins. A sample whose answer could not be parsed (None) does not vote; if no sample voted,
the result is None (counted wrong).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ftcot_hf.tasks.answers import AnswerParser


def majority_vote(answers: Sequence[str | None]) -> str | None:
    """The most frequent non-None answer; ties go to the answer seen first. None if nothing voted.

    >>> majority_vote(["7", None, "8", "8", "7"])
    '7'
    """
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, answer in enumerate(answers):
        if answer is None:
            continue
        counts[answer] = counts.get(answer, 0) + 1
        first.setdefault(answer, i)
    if not counts:
        return None
    return min(counts, key=lambda a: (-counts[a], first[a]))


def vote_key(parser: AnswerParser, prediction: str | None, mode: str = "paper") -> str | None:
    """The form a parsed prediction votes in (the answer type decides: see ``AnswerParser.vote_key``)."""
    return parser.vote_key(prediction, mode)


def vote(parser: AnswerParser, scored: Sequence[dict[str, Any]], mode: str = "paper") -> dict[str, Any]:
    """Majority vote over the scored samples of one question (``score_with_parser`` outputs, in sample order).

    Returns ``prediction`` (the winning sample's parsed answer, as first written), ``correct`` (that answer is
    correct), ``votes`` (each sample's parsed answer) and ``count`` (votes for the winner).
    """
    keys = [vote_key(parser, s["prediction"], mode) for s in scored]
    winner = majority_vote(keys)
    if winner is None:
        return {"prediction": None, "correct": False, "votes": [s["prediction"] for s in scored], "count": 0}
    at = keys.index(winner)
    return {
        "prediction": scored[at]["prediction"],
        "correct": bool(scored[at]["correct"]),
        "votes": [s["prediction"] for s in scored],
        "count": keys.count(winner),
    }
