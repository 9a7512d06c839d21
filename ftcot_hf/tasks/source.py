"""Where a paper task's records come from: pinned sources, record construction, split rules, n-shot subsets."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ftcot_hf.errors import UnknownTaskError
from ftcot_hf.tasks.sources import SourceFile, read_json

Record = dict
"""A task record: ``question``, ``answer``, ``rationale`` (str or None) and, for choice tasks, ``choices``."""

BuildFn = Callable[[Mapping[str, "Path | None"]], Iterator[tuple[int, Record]]]
"""Turns resolved source paths (role -> path, None for an absent optional source) into (sample_index, record)."""

PAPER_SHOTS = (8, 32, 128)
"""The few-shot ablations of the paper (training questions kept); any ``{n}shot`` variant works."""


@dataclass(frozen=True)
class RandomSplit:
    """The paper's default for small tasks: ``RandomState(seed).permutation(N)``, first round(ratio*N) train."""

    train_ratio: float = 0.7
    seed: int = 0

    def indices(self, size: int) -> tuple[list[int], list[int]]:
        perm = np.random.RandomState(self.seed).permutation(list(range(size)))
        n_train = round(size * self.train_ratio)
        return sorted(perm[:n_train].tolist()), sorted(perm[n_train:].tolist())

    def sizes(self, size: int) -> tuple[int, int]:
        n_train = round(size * self.train_ratio)
        return n_train, size - n_train


@dataclass(frozen=True)
class OrderedSplit:
    """The source's own split: the first ``train_size`` records are train, the rest test."""

    train_size: int

    def indices(self, size: int) -> tuple[list[int], list[int]]:
        return list(range(self.train_size)), list(range(self.train_size, size))

    def sizes(self, size: int) -> tuple[int, int]:
        return self.train_size, size - self.train_size


@dataclass(frozen=True)
class SubsampledTrainSplit:
    """Source split, with the train part subsampled: sorted(RandomState(seed).permutation(train)[:n])."""

    train_size: int
    n: int
    seed: int = 0

    def indices(self, size: int) -> tuple[list[int], list[int]]:
        return subsample(list(range(self.train_size)), self.n, self.seed), list(range(self.train_size, size))

    def sizes(self, size: int) -> tuple[int, int]:
        return self.n, size - self.train_size


SplitRule = RandomSplit | OrderedSplit | SubsampledTrainSplit


def subsample(indices: list[int], n: int, seed: int = 0) -> list[int]:
    """The paper's few-shot subset: sorted(RandomState(seed).permutation(indices)[:n])."""
    return sorted(np.random.RandomState(seed).permutation(indices)[:n].tolist())


@dataclass(frozen=True)
class TaskSource:
    """Where a paper task's records come from: pinned raw files, how records are built from them, the split rule.

    One per built-in task (``ftcot_hf/tasks/<name>.py``); a user dataset has a ``DatasetSource`` instead.
    """

    sources: Mapping[str, SourceFile]
    """Raw files by role (``train``, ``test``, ``data``...)."""
    build: BuildFn
    size: int
    """Number of records of the compiled task (the paper's sample_index range)."""
    split: SplitRule
    has_rationale: bool = False
    """The source has a human rationale for (some) records."""
    template_split: SourceFile | None = None
    """The paper's template-wise split file, for tasks that have one (appendix ablation)."""
    optional_sources: frozenset[str] = field(default_factory=frozenset)
    """Roles that may be absent; the splits that need them are then left out (AQuA's 97,467-question train)."""

    def split_variants(self) -> list[str]:
        variants = ["default"]
        if self.template_split is not None:
            variants.append("template")
        return variants + [f"{n}shot" for n in PAPER_SHOTS]

    def check_variant(self, variant: str, task: str = "") -> None:
        if variant in ("default", "template") and (variant == "default" or self.template_split is not None):
            return
        m = re.fullmatch(r"(\d+)shot", variant)
        if m and int(m.group(1)) > 0:
            n, n_train = int(m.group(1)), self.split.sizes(self.size)[0]
            if n > n_train:
                raise UnknownTaskError(
                    f"Split variant {variant!r} asks for {n} training questions, but the train split of "
                    f"{task or 'this task'} has {n_train}: use at most '{n_train}shot' ('default' for all of them)."
                )
            return
        raise UnknownTaskError(
            f"Task {task!r} has no split variant {variant!r}. Valid: {', '.join(self.split_variants())} "
            "(any '{n}shot' with n > 0 selects n training questions)."
        )

    def split_sizes(self, variant: str = "default") -> tuple[int, int]:
        """(train, test) sizes of a split variant, known without building anything (template aside)."""
        self.check_variant(variant)
        n_train, n_test = self.split.sizes(self.size)
        m = re.fullmatch(r"(\d+)shot", variant)
        if m:
            return min(int(m.group(1)), n_train), n_test
        return n_train, n_test

    def split_indices(self, variant: str = "default", template_path: Path | None = None) -> dict[str, list[int]]:
        """Sample indices of the ``train`` and ``test`` splits of a variant."""
        self.check_variant(variant)
        if variant == "template":
            if template_path is None:
                raise ValueError(f"The template split needs its split file ({self.template_split}).")
            data = read_json(template_path)
            return {"train": list(data["train"]), "test": list(data["test"])}
        train, test = self.split.indices(self.size)
        m = re.fullmatch(r"(\d+)shot", variant)
        if m:
            train = subsample(train, int(m.group(1)))
        return {"train": train, "test": test}

    def provenance(self) -> list[dict[str, Any]]:
        """The pinned files, for cards (repo, commit, path, sha256, licence, url)."""
        files = [*self.sources.values(), *([self.template_split] if self.template_split else [])]
        return [{**vars(f), "url": f.url} for f in files]

    def load(self, task: Any, split_variant: str = "default", **kwargs: Any) -> Any:
        from ftcot_hf.tasks.builder import build_task  # heavy: imports datasets; `import ftcot_hf.tasks` has none

        return build_task(task, split_variant, **kwargs)
