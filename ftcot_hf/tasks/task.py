"""What every stage needs to know about a task: :class:`Task`.

A task is a value: the teacher's augmenter, the student formats, the metric, the reports and the cards receive a
``Task`` object, never a name to look up again. Where its records come from is the task's ``source``: a
``TaskSource`` (pinned raw files of the paper's 12 tasks, built bit-exact) or a ``DatasetSource`` (any dataset
``datasets.load_dataset`` reads, with a column mapping: :meth:`Task.from_dataset`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcot_hf.tasks.answers import AnswerParser
from ftcot_hf.tasks.prompts import GENERIC_ANSWER_TRIGGER

if TYPE_CHECKING:
    import datasets

    from ftcot_hf.tasks.custom import DatasetSource
    from ftcot_hf.tasks.source import TaskSource


@dataclass(frozen=True)
class Task:
    """A question/answer task: its name, answer type and parser, stage-2 trigger, report label and provenance."""

    name: str
    """Task key (``coin_flip``): the config name of its datasets and the key of every report."""
    title: str
    """Display name (``Coin Flip``)."""
    answer: AnswerParser
    """How answers are extracted, cleansed and compared (its type: ``answer.name``)."""
    source: TaskSource | DatasetSource
    """Where the records come from."""
    description: str = ""
    license: str = "unknown"
    citation: str = ""
    homepage: str = ""
    has_choices: bool = False
    """Multiple-choice tasks carry a structured ``choices`` column and list the options in the question."""
    kojima_trigger: str | None = None
    """The task-specific stage-2 trigger of Kojima et al.'s runs (the recorded teacher); None: the generic one."""
    label: str | None = None
    """The short name in tables and plots (default: the title)."""
    paper_column: int | None = None
    """The task's column in the paper's tables (0-based, the paper's order); None: the paper has no figure for it."""

    @property
    def answer_type(self) -> str:
        return self.answer.describe()

    @property
    def report_label(self) -> str:
        return self.label or self.title or self.name

    @property
    def builtin(self) -> bool:
        """One of the paper's tasks (records from pinned sources), not a user dataset."""
        from ftcot_hf.tasks.source import TaskSource  # heavy: imports numpy; `import ftcot_hf.tasks` has none

        return isinstance(self.source, TaskSource)

    def answer_trigger(self, style: str = "generic") -> str:
        """The stage-2 trigger: ``"generic"`` (the paper's) or ``"kojima"`` (task-specific, as recorded)."""
        if style == "generic":
            return GENERIC_ANSWER_TRIGGER
        if style == "kojima":
            return self.kojima_trigger or GENERIC_ANSWER_TRIGGER
        raise ValueError(f"Unknown answer-trigger style {style!r}: use 'generic' or 'kojima'.")

    def split_variants(self) -> list[str]:
        return self.source.split_variants()

    def check_variant(self, variant: str) -> None:
        self.source.check_variant(variant, self.name)

    def split_sizes(self, variant: str = "default") -> tuple[int, int] | None:
        """(train, test) sizes, when known without reading the data (None for a user dataset)."""
        self.check_variant(variant)
        return self.source.split_sizes(variant)

    def provenance(self) -> list[dict[str, Any]]:
        """Where the data comes from, for cards: pinned files, or the dataset id/file with its revision/sha256."""
        return self.source.provenance()

    def load(
        self,
        split_variant: str = "default",
        *,
        data_dir: str | os.PathLike | None = None,
        cache_dir: str | os.PathLike | None = None,
        download_mode: str | None = None,
        verify_checksums: bool = True,
    ) -> datasets.DatasetDict:
        """The task's ``train`` and ``test`` records (``sample_index``, ``question``, ``answer``, ``rationale``,
        and ``choices`` for multiple-choice tasks). See :func:`ftcot_hf.load_task`."""
        self.check_variant(split_variant)
        return self.source.load(
            self,
            split_variant,
            data_dir=data_dir,
            cache_dir=cache_dir,
            download_mode=download_mode,
            verify_checksums=verify_checksums,
        )

    def to_dict(self) -> dict[str, Any]:
        """What a rationale dataset stores to rebuild a user dataset's task (``Task.from_dict``)."""
        return {
            "name": self.name,
            "title": self.title,
            "answer_type": self.answer.name,
            "answer": self.answer_type,
            "license": self.license,
            "has_choices": self.has_choices,
            "choices": len(getattr(self.answer, "letters", "")) if self.has_choices else 0,
            "source": self.source.to_dict() if hasattr(self.source, "to_dict") else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        from ftcot_hf.tasks.custom import DatasetSource

        source = DatasetSource.from_dict(data["source"])
        return cls._over(source, data["name"], data["answer_type"], title=data.get("title"),
                         license=data.get("license"), choices=int(data.get("choices") or 0))  # fmt: skip

    @classmethod
    def from_dataset(
        cls,
        path: str,
        *,
        question_column: str,
        answer_column: str,
        answer_type: str,
        task_name: str,
        dataset_config: str | None = None,
        train_split: str = "train",
        test_split: str | None = "test",
        test_size: float | int | None = None,
        split_seed: int = 0,
        choices_column: str | None = None,
        revision: str | None = None,
        skip_bad_rows: bool = False,
        limits: dict[str, int] | None = None,
        title: str | None = None,
        license: str | None = None,  # noqa: A002
        citation: str = "",
    ) -> Task:
        """A task over any dataset ``datasets.load_dataset`` reads: a Hub id, a folder with ``train.*``/``test.*``
        files, or one ``.jsonl``/``.json``/``.csv``/``.parquet`` file.

        Args:
            path: the dataset (Hub id, local folder or file).
            question_column / answer_column: the columns holding the question and the gold answer.
            answer_type: ``number``, ``choice``, ``yes_no``, ``letters`` or ``text`` (how answers are compared).
            task_name: the task's name (its rationale dataset config, its key in reports); must not clash with a
                registered task.
            dataset_config: the dataset's config (``load_dataset(path, dataset_config)``).
            train_split / test_split: split names; with ``test_size`` (a fraction or a count) the test split is
                carved out of ``train_split`` by a seeded shuffle (``split_seed``) instead.
            choices_column: for ``choice`` tasks, a list of strings or of ``{label, text}`` per row.
            skip_bad_rows: skip (and count) rows whose gold answer cannot be read instead of failing.
            limits: read only the first N rows of a split (``{"train": 8}``): what ``ftcot teach --limit`` asks
                for touches those rows, not the whole file.

        Raises:
            FtcotError: a missing column (listing those present), an unknown answer type, a clashing name.

        Example:
            >>> task = Task.from_dataset("my.jsonl", question_column="q", answer_column="a",
            ...                          answer_type="number", task_name="mine", test_size=0.2)
        """
        from ftcot_hf.tasks.custom import DatasetSource

        source = DatasetSource(
            path=str(path),
            dataset_config=dataset_config,
            revision=revision,
            train_split=train_split,
            test_split=None if test_size is not None else test_split,
            test_size=test_size,
            split_seed=split_seed,
            question_column=question_column,
            answer_column=answer_column,
            choices_column=choices_column,
            skip_bad_rows=skip_bad_rows,
            limits=dict(limits or {}),
        )
        return cls._over(source, task_name, answer_type, title=title, license=license, citation=citation)

    @classmethod
    def _over(
        cls,
        source: DatasetSource,
        name: str,
        answer_type: str,
        *,
        title: str | None = None,
        license: str | None = None,  # noqa: A002
        citation: str = "",
        choices: int | None = None,
    ) -> Task:
        """The task over a user dataset: what the dataset decides (``DatasetSource.task_fields``: reads and checks
        it now unless ``choices`` is given) and the names given here."""
        fields = source.task_fields(name, answer_type, choices=choices)
        return cls(name=name, title=title or name, license=license or "unknown", citation=citation, **fields)


def recorded_tasks(folder: str | Path) -> dict[str, Task]:
    """The user-dataset tasks a rationale folder written by ``ftcot teach`` records (``yield_report.json``), rebuilt
    as :class:`~ftcot_hf.Task` objects; {} for anything else (a Hub id, a folder without the record)."""
    import json

    report = Path(folder) / "yield_report.json"
    if not report.is_file():
        return {}
    try:
        stored = json.loads(report.read_text(encoding="utf-8")).get("tasks") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    return {name: Task.from_dict(data) for name, data in stored.items()}
