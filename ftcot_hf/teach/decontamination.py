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


def load_rationale_train(folder: str | os.PathLike, task_name: str) -> Any:
    """The ``train`` split of ``task_name`` in a rationale dataset folder (``{folder}/{task}/train-*.parquet``)."""
    files = sorted(str(p) for p in Path(folder, task_name).glob("train-*.parquet"))
    if not files:
        raise FtcotError(
            f"{folder}: no train split of {task_name} (expected {task_name}/train-*.parquet, as `ftcot teach` "
            "writes it). Check --rationales and --tasks."
        )
    data = ParquetRows(files)
    missing = {"sample_index", "rationale"} - set(data.column_names)
    if missing:
        raise FtcotError(f"{folder}/{task_name}: the train split has no {', '.join(sorted(missing))} column.")
    return data


class ParquetRows:
    """Parquet files read a record batch at a time with pyarrow: a 1M-row rationale split checked in the memory of
    one batch (``load_dataset`` would convert it to an Arrow cache first, and reading that memory map back keeps
    every page it touched resident)."""

    def __init__(self, files: list[str]):
        import pyarrow.parquet as pq

        self.files = files
        self.column_names = pq.read_schema(files[0]).names
        self.num_rows = sum(pq.read_metadata(f).num_rows for f in files)

    def to_dataset(self) -> Any:
        """The rows as a ``datasets.Dataset`` (to write a copy without the flagged rows)."""
        import datasets

        return datasets.load_dataset("parquet", data_files={"train": self.files}, split="train")

    def batches(self, columns: list[str], step: int = 1, size: int = 1000) -> Any:
        import pyarrow.parquet as pq

        seen = 0
        for f in self.files:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=size, columns=columns):
                part = batch.to_pydict()
                if step > 1:
                    first = (-seen) % step
                    part = {c: v[first::step] for c, v in part.items()}
                seen += batch.num_rows
                if part[columns[0]]:
                    yield part


MAX_PAIRS = 1000
"""Pairs listed per check (the counts and ids are complete; ``pairs_total`` says how many were found)."""
MAX_RATIONALES_CHECKED = 1_000
"""Rationales of a teach run checked for test n-grams (an evenly spaced sample beyond: the report says so)."""
FANOUT = 2000
"""An n-gram shared by more test questions than this is template text (coin_flip's "A coin is heads up"): a train
question holding it is flagged, but it is not paired with each of those test questions (that is
O(train x test) work and memory at scale). Every test split of the paper's tasks is smaller, so their reports
are complete."""
BATCH = 1000


def _hash(text: str) -> int:
    return hash(text)  # 64 bits, stable within the process: collisions are ~n^2 / 2^64


class _TestIndex:
    """The test questions, hashed: exact texts (hash -> ids) and word n-grams (sorted int64 hashes, with the test
    id of each): 16 bytes per test n-gram, not a dict of strings (which took 40k rows to 1.9 GB)."""

    def __init__(self, rows: Any, n: int):
        import numpy as np

        self.exact: dict[int, list[int]] = {}
        self.sizes: dict[int, int] = {}
        hashes, ids = [], []
        for batch in _batches(rows, ("sample_index", "question")):
            for sid, question in zip(batch["sample_index"], batch["question"], strict=True):
                sid = int(sid)
                self.exact.setdefault(_hash(normalize(question)), []).append(sid)
                grams = {_hash(g) for g in word_ngrams(question, n)}
                self.sizes[sid] = max(1, len(grams))
                hashes.append(np.fromiter(grams, dtype=np.int64, count=len(grams)))
                ids.append(np.full(len(grams), sid, dtype=np.int64))
        all_hashes = np.concatenate(hashes) if hashes else np.zeros(0, dtype=np.int64)
        order = np.argsort(all_hashes, kind="stable")
        self.grams = all_hashes[order]
        self.ids = (np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64))[order]
        self.n = n
        self.template = 0
        """Test n-grams over :data:`FANOUT` met in the checked texts (flagged, not paired)."""

    def hits(self, text: str) -> tuple[bool, dict[int, float]]:
        """(does ``text`` share any test n-gram, {test id: fraction of its n-grams shared} for the paired ones)."""
        import numpy as np

        grams = {_hash(g) for g in word_ngrams(text, self.n)}
        if not grams or not len(self.grams):
            return False, {}
        keys = np.fromiter(grams, dtype=np.int64, count=len(grams))
        lo = np.searchsorted(self.grams, keys, "left")
        hi = np.searchsorted(self.grams, keys, "right")
        fan = hi - lo
        if not fan.any():
            return False, {}
        paired = (fan > 0) & (fan <= FANOUT)
        shared: dict[int, int] = {}
        for a, b in zip(lo[paired].tolist(), hi[paired].tolist(), strict=True):
            for t in self.ids[a:b].tolist():
                shared[t] = shared.get(t, 0) + 1
        self.template += int((fan > FANOUT).sum())
        return True, {t: round(k / self.sizes[t], 3) for t, k in shared.items()}


class _Check:
    """One check's findings, bounded: every flagged train id and test id, the first :data:`MAX_PAIRS` pairs."""

    def __init__(self, shared: bool):
        self.shared, self.rows, self.total = shared, 0, 0
        self.train: set[int] = set()
        self.test: set[int] = set()
        self.near: set[int] = set()
        self.pairs: dict[tuple[int, int], float] = {}

    def add(self, train_id: int, flagged: bool, hits: dict[int, float]) -> None:
        if not (flagged or hits):
            return
        self.rows += 1
        self.train.add(train_id)
        for t, share in hits.items():
            self.test.add(t)
            self.total += 1
            key = (train_id, t)
            if key in self.pairs:
                self.pairs[key] = max(self.pairs[key], share)
            elif len(self.pairs) < MAX_PAIRS:
                self.pairs[key] = share
            if share >= NEAR_DUPLICATE:
                self.near.add(train_id)

    def result(self) -> dict[str, Any]:
        pairs = [{"train": a, "test": b, **({"shared": v} if self.shared else {})}
                 for (a, b), v in sorted(self.pairs.items())]  # fmt: skip
        out: dict[str, Any] = {"train_ids": sorted(self.train), "test_ids": sorted(self.test), "pairs": pairs}
        if self.total > len(pairs):
            out["pairs_total"] = self.total
        if self.shared:  # near-duplicates: at least half of the test question's n-grams
            out["near_duplicate_train_ids"] = sorted(self.near)
        return out


def _batches(rows: Any, columns: tuple[str, ...], step: int = 1) -> Any:
    """Column batches of a ``Dataset`` (only ``columns`` read; every ``step``-th row), of :class:`ParquetRows` or of a
    list of dicts."""
    if isinstance(rows, ParquetRows):
        yield from rows.batches(list(columns), step, BATCH)
        return
    if hasattr(rows, "iter") and hasattr(rows, "select_columns"):
        if step == 1:  # streamed from its Arrow files where it can be: a memory map keeps each page read resident
            from ftcot_hf.utils.shards import read_batches

            yield from read_batches(rows, BATCH, list(columns))
            return
        data = rows.select_columns(list(columns))
        yield from data.select(range(0, data.num_rows, step)).iter(batch_size=BATCH)
        return
    rows = list(rows)[::step]
    for start in range(0, len(rows), BATCH):
        part = rows[start : start + BATCH]
        yield {c: [r.get(c) for r in part] for c in columns}


def _num_rows(rows: Any) -> int:
    return rows.num_rows if hasattr(rows, "num_rows") else len(rows)


def decontamination_report(
    task: str | Task,
    *,
    dataset: Any = None,
    rationales: Any = None,
    ngram: int = NGRAM,
    data_dir: str | os.PathLike | None = None,
    max_rationales: int | None = None,
    rationales_total: int | None = None,
) -> dict[str, Any]:
    """Train <-> test question overlap of ``task`` (and test n-grams in teacher rationales), in memory that grows
    with the test split's n-grams (16 bytes each) and the flagged ids, never with train x test.

    Args:
        task: a :class:`~ftcot_hf.Task` or a registered task's name.
        dataset: the task's splits (``train``, ``test``: ``sample_index``, ``question``), else ``task.load()``.
        rationales: a rationale dataset folder (its ``{task}/train-*.parquet``) or a ``Dataset`` with
            ``sample_index`` and ``rationale`` columns; None: no rationale check.
        ngram: the word n-gram length.
        max_rationales: check an evenly spaced sample of at most this many rationales (``rationales.sampled``
            says how many of how many); None: all.
        rationales_total: ``rationales`` is already a sample of this many rows (``ftcot teach`` samples them as
            they are written).

    Returns:
        A JSON-ready dict: ``task``, ``n_train``, ``n_test``, ``ngram``; ``exact`` and ``ngram_overlap`` each with
        ``count`` (flagged train questions), ``train_ids``, ``test_ids`` and ``pairs`` (``{"train", "test"}`` ids,
        the first :data:`MAX_PAIRS`, ``pairs_total`` when there were more; n-gram pairs add ``shared``: the
        fraction of the test question's n-grams found) and, for n-grams, ``near_duplicate_train_ids``
        (``shared >= NEAR_DUPLICATE``) and ``template_ngrams`` (see :data:`FANOUT`); ``rationales`` (or None) with
        ``n``, ``count`` (flagged rationale rows) and the same ids; ``flagged_train_ids``: the union over every
        check.
    """
    if ngram < 1:
        raise ValueError(f"ngram must be >= 1, got {ngram}.")
    task = resolve_task(task)
    if dataset is None:
        dataset = task.load(data_dir=data_dir)
    for split in ("train", "test"):
        if split not in dataset:
            raise FtcotError(f"{task.name} has no {split} split here (available: {', '.join(dataset)}).")
    train, test = dataset["train"], dataset["test"]
    index = _TestIndex(test, ngram)

    exact, overlap = _Check(shared=False), _Check(shared=True)
    for batch in _batches(train, ("sample_index", "question")):
        for sid, question in zip(batch["sample_index"], batch["question"], strict=True):
            sid = int(sid)
            exact.add(sid, False, dict.fromkeys(index.exact.get(_hash(normalize(question)), ()), 1.0))
            overlap.add(sid, *index.hits(question))
    template = index.template

    rationale_part = None
    if rationales is not None:
        data = (
            load_rationale_train(rationales, task.name) if isinstance(rationales, (str, os.PathLike)) else rationales
        )
        total = _num_rows(data) if rationales_total is None else rationales_total
        step = max(1, -(-_num_rows(data) // max_rationales)) if max_rationales else 1
        check, checked = _Check(shared=True), 0
        for batch in _batches(data, ("sample_index", "rationale"), step):
            for sid, text in zip(batch["sample_index"], batch["rationale"], strict=True):
                checked += 1
                check.add(int(sid), *index.hits(text or ""))
        found = check.result()
        found.pop("near_duplicate_train_ids")
        rationale_part = {"n": total, "count": check.rows, **found}
        if checked < total:
            rationale_part["sampled"] = [checked, total]

    flagged = exact.train | overlap.train | (set(rationale_part["train_ids"]) if rationale_part else set())
    return {
        "task": task.name,
        "n_train": _num_rows(train),
        "n_test": _num_rows(test),
        "ngram": ngram,
        "exact": {"count": len(exact.train), **exact.result()},
        "ngram_overlap": {"count": len(overlap.train), **overlap.result(), "template_ngrams": template},
        "rationales": rationale_part,
        "flagged_train_ids": sorted(flagged),
    }


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
