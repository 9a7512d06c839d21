"""The flags that turn a user's dataset into a task, shared by ``ftcot teach``, ``train``, ``eval`` and ``run``.

``--dataset my.jsonl --question_column q --answer_column a --answer_type number --task_name mine`` builds a
:class:`~ftcot_hf.Task` with :meth:`Task.from_dataset` (the edge where a user's data becomes a value). Without the
column flags, ``--dataset`` in ``train``/``eval`` is the deprecated name of ``--rationales`` (a rationale dataset).
:func:`resolve_tasks` is the one edge every command goes through: names and flags in, :class:`~ftcot_hf.Task` out.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ftcot_hf.errors import FtcotError
from ftcot_hf.tasks import BUILTIN_TASKS, TASKS, Task, resolve_task

logger = logging.getLogger(__name__)

CUSTOM_FLAGS = ("question_column", "answer_column", "answer_type", "task_name", "choices_column")


@dataclass
class TaskDatasetArgs:
    """Parameters that define a task over a user's dataset (any of the column flags switches it on)."""

    dataset: str | None = field(
        default=None,
        metadata={
            "help": "Your own data: a Hub dataset id, a local folder with train.*/test.* files, or one "
            ".jsonl/.json/.csv/.parquet file (with --question_column, --answer_column, --answer_type, --task_name)."
        },
    )
    dataset_config: str | None = field(default=None, metadata={"help": "The dataset's config name, if it has any."})
    dataset_revision: str | None = field(default=None, metadata={"help": "Hub dataset revision (branch/commit)."})
    train_split: str = field(default="train", metadata={"help": "The split to teach/train on."})
    test_split: str = field(default="test", metadata={"help": "The split to evaluate on."})
    test_size: float | None = field(
        default=None,
        metadata={"help": "Hold out this fraction (< 1) or count (>= 1) of train as the test split instead."},
    )
    split_seed: int = field(default=0, metadata={"help": "Seed of the --test_size split."})
    question_column: str | None = field(default=None, metadata={"help": "Column holding the question."})
    answer_column: str | None = field(default=None, metadata={"help": "Column holding the gold answer."})
    choices_column: str | None = field(
        default=None, metadata={"help": "choice tasks: column with a list of options (strings or {label, text})."}
    )
    answer_type: str | None = field(
        default=None, metadata={"help": "How answers compare: number, choice, yes_no, letters or text."}
    )
    task_name: str | None = field(
        default=None, metadata={"help": "Name of your task (the rationale dataset's config, the reports' key)."}
    )
    skip_bad_rows: bool = field(
        default=False,
        metadata={"help": "Skip (and count) rows whose gold answer cannot be read, instead of failing."},
    )

    def wants_custom_task(self) -> bool:
        return any(getattr(self, f) is not None for f in CUSTOM_FLAGS)

    def custom_task(self, limits: dict[str, int] | None = None) -> Any:
        """The :class:`~ftcot_hf.Task` these flags define, or None when no column flag is given. ``limits``: read
        only the first N rows of a split (see :meth:`~ftcot_hf.Task.from_dataset`)."""
        if not self.wants_custom_task():
            return None
        missing = [f"--{f}" for f in ("dataset", "question_column", "answer_column", "answer_type", "task_name")
                   if getattr(self, f) is None]  # fmt: skip
        if missing:
            raise FtcotError(f"A task over your own dataset also needs {', '.join(missing)}.")
        if self.task_name in TASKS:
            kind = "a built-in" if self.task_name in BUILTIN_TASKS else "a registered"
            raise FtcotError(f"--task_name {self.task_name!r} is the name of {kind} task: choose another.")
        size: float | int | None = self.test_size
        if size is not None and float(size).is_integer() and size >= 1:
            size = int(size)
        return Task.from_dataset(
            self.dataset,  # type: ignore[arg-type]
            question_column=self.question_column,  # type: ignore[arg-type]
            answer_column=self.answer_column,  # type: ignore[arg-type]
            answer_type=self.answer_type,  # type: ignore[arg-type]
            task_name=self.task_name,  # type: ignore[arg-type]
            dataset_config=self.dataset_config,
            revision=self.dataset_revision,
            train_split=self.train_split,
            test_split=self.test_split,
            test_size=size,
            split_seed=self.split_seed,
            choices_column=self.choices_column,
            skip_bad_rows=self.skip_bad_rows,
            limits=limits,
        )


def resolve_tasks(
    names: str | Sequence[str | Task] | None,
    dataset_args: TaskDatasetArgs | None = None,
    rationales: str | os.PathLike | None = None,
    *,
    limits: dict[str, int] | None = None,
) -> list[Task]:
    """The tasks a command acts on (the edge: below it, stages receive these objects): the one task the column flags
    of ``dataset_args`` define, else each of ``names``: a task of your own recorded by the rationale folder
    ``rationales`` (``ftcot teach`` writes it there), else a registered task (an unknown name is one line naming the
    valid ones). ``limits``: read only the first N rows of a split of your own dataset."""
    custom = dataset_args.custom_task(limits) if dataset_args is not None else None
    if custom is not None:
        return [custom]
    if isinstance(names, str | Task):
        names = [names]
    recorded: dict[str, Any] = {}
    if rationales and not all(isinstance(t, Task) for t in names or []):  # resolved already: nothing to read
        from ftcot_hf.tasks.task import recorded_tasks

        recorded = recorded_tasks(rationales)
    return [t if isinstance(t, Task) else recorded.get(t) or resolve_task(t) for t in names or []]


def rationales_alias(args: Any, command: str) -> None:
    """``--dataset`` without the column flags named a rationale dataset in ``ftcot train``/``eval``; it is
    ``--rationales`` now (``--dataset`` is your own data in every command). The old spelling still works, with a
    warning; both at once is one line."""
    if args.dataset is None or args.wants_custom_task():
        return
    if args.rationales is not None:
        raise FtcotError(f"{command}: --dataset {args.dataset} and --rationales {args.rationales} both name the "
                         "rationale dataset: give it once, as --rationales (--dataset is your own data, with "
                         "--question_column, --answer_column, --answer_type and --task_name).")  # fmt: skip
    logger.warning("%s --dataset %s: a rationale dataset is --rationales now (--dataset naming one is deprecated: "
                   "it will mean your own data only).", command, args.dataset)  # fmt: skip
    args.rationales, args.dataset = args.dataset, None
