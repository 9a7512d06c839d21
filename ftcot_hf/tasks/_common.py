"""Helpers shared by several task modules (record shapes, sources of the two big source repositories)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ftcot_hf.errors import SourceFormatError
from ftcot_hf.tasks.citation import PAPER_CITATION
from ftcot_hf.tasks.sources import (
    KOJIMA_COMMIT,
    KOJIMA_REPO,
    REFERENCE_COMMIT,
    REFERENCE_REPO,
    SourceFile,
    field,
    read_json,
)

LETTERS = "ABCDEFGHIJ"


FINE_TUNE_COT_CITATION = PAPER_CITATION


def kojima(path: str, sha256: str, license: str) -> SourceFile:
    """A file of Kojima et al.'s Zero-shot-CoT repository, which redistributes most task datasets."""
    return SourceFile(KOJIMA_REPO, KOJIMA_COMMIT, path, sha256, license)


def rt_split(task: str, variant: str, sha256: str) -> SourceFile:
    """A split file of the reference implementation (MIT)."""
    return SourceFile(REFERENCE_REPO, REFERENCE_COMMIT, f"data/split/{task}__{variant}.json", sha256, "MIT")


def record(question: str, answer: str, rationale: str | None = None) -> dict:
    return {"question": question, "answer": answer, "rationale": rationale}


def choice_record(question: str, choices: Sequence[str], answer: str, rationale: str | None = None) -> dict:
    """A multiple-choice record whose question ends ``" Answer choices: (A) x, (B) y."`` as in the paper."""
    listed = ", ".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(choices))
    return {
        "question": f"{question} Answer choices: {listed}.",
        "answer": answer,
        "rationale": rationale,
        "choices": [{"label": LETTERS[i], "text": c} for i, c in enumerate(choices)],
    }


def bigbench_examples(path: Path) -> list[dict]:
    data = read_json(path)
    examples = field(data, "examples", path=path, where="the BIG-bench task file")
    if not isinstance(examples, list):
        raise_format(path, "'examples' is not a list")
    return examples


def correct_choice(example: dict, path: Path, index: int) -> str:
    scores = field(example, "target_scores", path=path, where=f"example {index}")
    winners = [choice for choice, score in scores.items() if score == 1]
    if len(winners) != 1:
        raise_format(path, f"example {index} has {len(winners)} correct choices in target_scores (expected 1)")
    return winners[0]


def strip_period(choice: str) -> str:
    return choice[:-1] if choice.endswith(".") else choice


def raise_format(path: Path, message: str) -> None:
    raise SourceFormatError(f"{path}: {message}.")


# -- the record builders several tasks share ------------------------------------------------------------------------
def numbered(*parts: Iterable[dict]) -> Iterator[tuple[int, dict]]:
    """The records of several files in order (train, then test), numbered from 0 across them."""
    return enumerate(itertools.chain(*parts))


def mawps_records(paths: dict[str, Path], *, strip: bool, answer: Callable[[Any], str]) -> Iterator[tuple[int, dict]]:
    """A MAWPS file's items (AddSub, SingleEq, MultiArith): ``sQuestion`` (stripped or as is, as the reference
    reads each) and ``answer(lSolutions[0])``."""
    path = paths["data"]
    for i, ex in enumerate(read_json(path)):
        where = f"item {i}"
        question = field(ex, "sQuestion", path=path, where=where)
        solution = field(ex, "lSolutions", path=path, where=where)[0]
        yield i, record(question.strip() if strip else question, answer(solution))


def bigbench_qa_records(paths: dict[str, Path]) -> Iterator[tuple[int, dict]]:
    """A generated BIG-bench-style file's examples as they are: ``question`` and ``answer`` (Coin Flip, Last Letter
    Concatenation)."""
    path = paths["data"]
    for i, ex in enumerate(bigbench_examples(path)):
        where = f"example {i}"
        yield i, record(field(ex, "question", path=path, where=where), field(ex, "answer", path=path, where=where))


def bigbench_choice_records(
    paths: dict[str, Path], *, strip_input: bool, order: Callable[[list[str]], list[str]] | None = None
) -> Iterator[tuple[int, dict]]:
    """A BIG-bench multiple-choice task's examples: ``input`` (stripped or as is) + ``"\nWhich choice is true?"``,
    the options of ``target_scores`` (in file order, or as ``order`` puts them; called once per example, in file
    order) each without its trailing ".", and the letter of the one scoring 1."""
    path = paths["data"]
    for i, ex in enumerate(bigbench_examples(path)):
        gold = correct_choice(ex, path, i)
        options = list(ex["target_scores"])
        if order is not None:
            options = order(options)
        question = field(ex, "input", path=path, where=f"example {i}")
        question = (question.strip() if strip_input else question) + "\nWhich choice is true?"
        yield i, choice_record(question, [strip_period(c) for c in options], LETTERS[options.index(gold)])
