"""Helpers shared by several task modules (record shapes, sources of the two big source repositories)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from ftcot_hf.citation import PAPER_CITATION
from ftcot_hf.errors import SourceFormatError
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


def enumerate_from(records: Iterable[dict], start: int = 0) -> Iterable[tuple[int, dict]]:
    return enumerate(records, start=start)
