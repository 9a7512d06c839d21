"""Train <-> test overlap of a task, and teacher rationales that quote test questions.

Three checks, each reported with counts and the ``sample_index`` ids involved:

* **exact**: a train question equal to a test question after :func:`normalize` (lowercase, punctuation stripped,
  whitespace collapsed);
* **n-gram** (as open-r1's ``scripts/decontaminate.py``): the word n-grams (default 8) of every normalised test
  question are collected; a train question containing any of them is flagged (questions shorter than n words have
  no n-gram: only the exact check sees them);
* **rationales**: a rationale dataset folder's ``train`` split (``rationale`` column, as ``ftcot teach`` writes
  it): a rationale containing a test question's n-gram is flagged.

:func:`drop_overlap` removes the flagged train rows (by ``sample_index``) from a train split.
"""

from __future__ import annotations

import os
import string
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcot_hf.errors import FtcotError
from ftcot_hf.tasks import resolve_task

if TYPE_CHECKING:
    from ftcot_hf.tasks import Task

NGRAM = 8
"""Word n-gram length of the overlap check (open-r1's default)."""

_PUNCT = str.maketrans(string.punctuation, " " * len(string.punctuation))


def normalize(text: str | None) -> str:
    """Lowercase, punctuation replaced by spaces, whitespace collapsed."""
    return " ".join(str(text or "").lower().translate(_PUNCT).split())


def word_ngrams(text: str, n: int = NGRAM) -> set[str]:
    """The word n-grams of ``normalize(text)`` (empty when it has fewer than ``n`` words)."""
    words = normalize(text).split()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def _ngram_index(rows: Iterable[Mapping[str, Any]], n: int) -> dict[str, list[int]]:
    index: dict[str, list[int]] = {}
    for row in rows:
        for gram in word_ngrams(row["question"], n):
            index.setdefault(gram, []).append(int(row["sample_index"]))
    return index


def _hits(text: str, index: Mapping[str, list[int]], n: int) -> dict[int, int]:
    """test id -> how many of its n-grams ``text`` contains."""
    shared: dict[int, int] = {}
    for gram in word_ngrams(text, n):
        for t in index.get(gram, ()):
            shared[t] = shared.get(t, 0) + 1
    return shared


def load_rationale_train(folder: str | os.PathLike, task_name: str) -> Any:
    """The ``train`` split of ``task_name`` in a rationale dataset folder (``{folder}/{task}/train-*.parquet``)."""
    import datasets

    files = sorted(str(p) for p in Path(folder, task_name).glob("train-*.parquet"))
    if not files:
        raise FtcotError(
            f"{folder}: no train split of {task_name} (expected {task_name}/train-*.parquet, as `ftcot teach` "
            "writes it). Check --rationales and --tasks."
        )
    data = datasets.load_dataset("parquet", data_files={"train": files}, split="train")
    missing = {"sample_index", "rationale"} - set(data.column_names)
    if missing:
        raise FtcotError(f"{folder}/{task_name}: the train split has no {', '.join(sorted(missing))} column.")
    return data


def decontamination_report(
    task: str | Task,
    *,
    dataset: Any = None,
    rationales: Any = None,
    ngram: int = NGRAM,
    data_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Train <-> test question overlap of ``task`` (and test n-grams in teacher rationales).

    Args:
        task: a :class:`~ftcot_hf.Task` or a registered task's name.
        dataset: the task's splits (``train``, ``test``: ``sample_index``, ``question``), else ``task.load()``.
        rationales: a rationale dataset folder (its ``{task}/train-*.parquet``) or a ``Dataset`` with
            ``sample_index`` and ``rationale`` columns; None: no rationale check.
        ngram: the word n-gram length.

    Returns:
        A JSON-ready dict: ``task``, ``n_train``, ``n_test``, ``ngram``; ``exact`` and ``ngram_overlap`` each with
        ``count`` (flagged train questions), ``train_ids``, ``test_ids`` and ``pairs`` (``{"train", "test"}`` ids;
        n-gram pairs add ``shared``: the fraction of the test question's n-grams found) and, for n-grams,
        ``near_duplicate_train_ids`` (``shared >= NEAR_DUPLICATE``); ``rationales`` (or None) with ``n``,
        ``count`` (flagged rationale rows) and the same ids; ``flagged_train_ids``: the union over every check.
    """
    if ngram < 1:
        raise ValueError(f"ngram must be >= 1, got {ngram}.")
    task = resolve_task(task)
    if dataset is None:
        dataset = task.load(data_dir=data_dir)
    for split in ("train", "test"):
        if split not in dataset:
            raise FtcotError(f"{task.name} has no {split} split here (available: {', '.join(dataset)}).")
    train, test = list(dataset["train"]), list(dataset["test"])

    by_text: dict[str, list[int]] = {}
    for row in test:
        by_text.setdefault(normalize(row["question"]), []).append(int(row["sample_index"]))
    exact_pairs = [
        {"train": int(r["sample_index"]), "test": t} for r in train for t in by_text.get(normalize(r["question"]), ())
    ]

    index = _ngram_index(test, ngram)
    sizes = {int(r["sample_index"]): max(1, len(word_ngrams(r["question"], ngram))) for r in test}

    def pairs_of(train_id: int, text: str) -> list[dict[str, Any]]:
        hits = _hits(text, index, ngram)
        return [{"train": train_id, "test": t, "shared": round(k / sizes[t], 3)} for t, k in sorted(hits.items())]

    ngram_pairs = [p for r in train for p in pairs_of(int(r["sample_index"]), r["question"])]

    rationale_part = None
    if rationales is not None:
        data = (
            load_rationale_train(rationales, task.name) if isinstance(rationales, (str, os.PathLike)) else rationales
        )
        rows = list(data)
        pairs, flagged_rows = [], 0
        for row in rows:
            hits = pairs_of(int(row["sample_index"]), row.get("rationale") or "")
            flagged_rows += bool(hits)
            pairs += hits
        rationale_part = {"n": len(rows), "count": flagged_rows, **_ids(pairs)}

    exact = {"count": len({p["train"] for p in exact_pairs}), **_ids(exact_pairs)}
    overlap = {"count": len({p["train"] for p in ngram_pairs}), **_ids(ngram_pairs)}
    flagged = set(exact["train_ids"]) | set(overlap["train_ids"])
    if rationale_part:
        flagged |= set(rationale_part["train_ids"])
    return {
        "task": task.name,
        "n_train": len(train),
        "n_test": len(test),
        "ngram": ngram,
        "exact": exact,
        "ngram_overlap": overlap,
        "rationales": rationale_part,
        "flagged_train_ids": sorted(flagged),
    }


def _ids(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    unique: dict[tuple[int, int], dict[str, Any]] = {}
    for p in pairs:
        key = (p["train"], p["test"])
        if key not in unique or p.get("shared", 1.0) > unique[key].get("shared", 1.0):
            unique[key] = p
    ordered = [unique[k] for k in sorted(unique)]
    out: dict[str, Any] = {
        "train_ids": sorted({k[0] for k in unique}),
        "test_ids": sorted({k[1] for k in unique}),
        "pairs": ordered,
    }
    if any("shared" in p for p in ordered):  # near-duplicates: at least half of the test question's n-grams
        out["near_duplicate_train_ids"] = sorted({p["train"] for p in ordered if p.get("shared", 0) >= NEAR_DUPLICATE})
    return out


NEAR_DUPLICATE = 0.5
"""A pair whose train text holds at least this fraction of the test question's n-grams counts as a near-duplicate
(reported apart: templated tasks such as coin_flip share 8-grams between almost all questions)."""

DROP_CHECKS = ("exact", "near_duplicate", "ngram", "rationales")
"""What :func:`drop_overlap` can drop on: exact duplicates, n-gram near-duplicates, any n-gram overlap, rationales
holding a test n-gram."""


def flagged_ids(report: Mapping[str, Any], on: Iterable[str] = ("exact",)) -> list[int]:
    """The train ids the report flags by the checks ``on`` (of :data:`DROP_CHECKS`)."""
    flagged: set[int] = set()
    for check in on:
        if check not in DROP_CHECKS:
            raise ValueError(f"Unknown decontamination check {check!r}: use one of {', '.join(DROP_CHECKS)}.")
        if check == "exact":
            flagged |= set(report["exact"]["train_ids"])
        elif check == "near_duplicate":
            flagged |= set(report["ngram_overlap"].get("near_duplicate_train_ids", []))
        elif check == "ngram":
            flagged |= set(report["ngram_overlap"]["train_ids"])
        elif report["rationales"] is not None:
            flagged |= set(report["rationales"]["train_ids"])
    return sorted(flagged)


def drop_overlap(train: Any, report: Mapping[str, Any], on: Iterable[str] = ("exact",)) -> Any:
    """``train`` (a ``Dataset`` with ``sample_index``) without the rows flagged by the checks ``on``
    (default: exact duplicates; see :data:`DROP_CHECKS`)."""
    flagged = set(flagged_ids(report, on))
    keep = [i for i, s in enumerate(train["sample_index"]) if int(s) not in flagged]
    return train.select(keep)


def format_report(reports: list[Mapping[str, Any]]) -> list[list[str]]:
    """Table rows (task, train, test, exact, n-gram, rationales, flagged) of :func:`decontamination_report` outputs."""

    def ids(part: Mapping[str, Any] | None, limit: int = 6) -> str:
        if not part:
            return "-"
        pairs = sorted(part["pairs"], key=lambda p: -p.get("shared", 1.0))
        shown = ", ".join(f"{p['train']}~{p['test']}" for p in pairs[:limit])
        more = f", +{len(pairs) - limit}" if len(pairs) > limit else ""
        near = part.get("near_duplicate_train_ids")
        return (
            f"{part['count']}"
            + (f" [{len(near)} near-dup]" if near is not None else "")
            + (f" ({shown}{more})" if shown else "")
        )

    return [
        [
            r["task"],
            str(r["n_train"]),
            str(r["n_test"]),
            ids(r["exact"]),
            ids(r["ngram_overlap"]),
            ids(r["rationales"]) if r["rationales"] is not None else "-",
            str(len(r["flagged_train_ids"])),
        ]
        for r in reports
    ]


REPORT_HEADERS = ["task", "train", "test", "exact (train~test)", "8-gram (train~test)", "rationales", "flagged"]
