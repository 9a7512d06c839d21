"""Training data: load a rationale dataset (or a task), filter it, and turn it into prompt/completion rows."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ftcot_hf.errors import FtcotError
from ftcot_hf.formats import EmptyDatasetError, MissingColumnsError, StudentFormat, format_dataset, get_format
from ftcot_hf.tasks import Task, resolve_task
from ftcot_hf.tasks.args import TaskDatasetArgs

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger(__name__)


@dataclass
class DataArgs(TaskDatasetArgs):
    """Where the training data comes from.

    ``dataset`` is a rationale dataset repo written by ``ftcot teach`` (a folder, or a Hub id of one pushed there):
    ``load_dataset(dataset, task)`` gives ``train`` (rationales) and ``test`` (the task's test questions). Without
    ``dataset``, the task's own records are used (``ftcot_hf.load_task``: enough for the vanilla format, or human
    rationales where the task has them); with the column flags (``--question_column`` ... ``--task_name``),
    ``dataset`` is your own question/answer data and its records are used the same way.
    """

    dataset: str | None = field(
        default=None,
        metadata={"help": "Rationale dataset: a folder written by `ftcot teach` or a Hub dataset id (config = task)."},
    )
    dataset_config: str | None = field(
        default=None, metadata={"help": "Config of the dataset to load (default: the task name)."}
    )
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    test_split: str = field(default="test", metadata={"help": "Split the per-epoch evaluation generates on."})
    correct_only: bool = field(
        default=True,
        metadata={"help": "Keep only rationales whose teacher answer was correct (rows with correct=True)."},
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Train on the first N rows only (after filtering; quick runs)."}
    )
    data_dir: str | None = field(
        default=None, metadata={"help": "Offline mirror for load_task (default: $FTCOT_DATA_MIRROR)."}
    )


def load_training_data(args: DataArgs, task: str | Task | None) -> tuple[Dataset, Dataset | None]:
    """(train records, test records or None) for ``args``; filtered, never empty."""
    from datasets import DatasetDict, load_dataset

    if isinstance(task, Task) and not task.builtin and args.wants_custom_task():
        splits = task.load()
        source = f"task {task.name} ({args.dataset})"
        args = dataclasses.replace(args, train_split="train", test_split="test")
    elif args.dataset is None:
        if task is None:
            raise FtcotError("Give --dataset (a rationale dataset from `ftcot teach`) or --task (its own records).")
        task = resolve_task(task)
        splits = task.load(data_dir=args.data_dir)
        source = f"task {task.name}"
    else:
        task = task.name if isinstance(task, Task) else task
        config = args.dataset_config or task
        source = f"{args.dataset}" + (f" [{config}]" if config else "")
        path = Path(args.dataset)
        if path.exists() and not (path / "README.md").exists() and (path / "dataset_dict.json").exists():
            from datasets import load_from_disk

            splits = load_from_disk(str(path))
        else:
            try:
                splits = load_dataset(args.dataset, config)
            except (FileNotFoundError, ValueError) as e:
                raise FtcotError(f"Could not load the dataset {source}: {e}") from e
    if not isinstance(splits, DatasetDict):
        raise FtcotError(f"{source} is one split; a DatasetDict with {args.train_split!r} is needed.")
    if args.train_split not in splits:
        raise FtcotError(f"{source} has no {args.train_split!r} split (it has: {', '.join(splits)}).")
    train = splits[args.train_split]
    if args.correct_only and "correct" in train.column_names:
        before = train.num_rows
        train = train.filter(lambda ok: bool(ok), input_columns="correct", desc="Keeping correct rationales")
        logger.info("%s: kept %d of %d rationales (correct only)", source, train.num_rows, before)
        if train.num_rows == 0:
            raise EmptyDatasetError(
                f"No training rows left in {source} after keeping correct rationales only (0 of {before}). "
                "Use --correct_only false, or teach more questions / a stronger teacher."
            )
    if args.max_train_samples is not None:
        train = train.select(range(min(args.max_train_samples, train.num_rows)))
    test = splits[args.test_split] if args.test_split in splits else None
    return train, test


def prepare_train_dataset(dataset: Dataset, format: str | StudentFormat | None) -> Dataset:  # noqa: A002
    """Prompt/completion rows for the trainer.

    A dataset that already has ``prompt`` and ``completion`` is used as it is (any TRL prompt/completion dataset);
    otherwise the records are formatted with ``format``.
    """
    if dataset.num_rows == 0:
        raise EmptyDatasetError(
            f"The training dataset is empty (columns: {', '.join(dataset.column_names)}): nothing to train on."
        )
    columns = set(dataset.column_names)
    if {"prompt", "completion"} <= columns:
        return dataset
    if format is None:
        raise MissingColumnsError(
            f"The training dataset lacks the column(s) {', '.join(sorted({'prompt', 'completion'} - columns))} and "
            "no format was given to build them. Pass a format (e.g. 'ft_cot') or a prompt/completion dataset."
        )
    fmt = get_format(format)
    missing = [c for c in fmt.required_columns if c not in columns]
    if missing:
        raise MissingColumnsError(
            f"The training dataset has no prompt/completion columns, and format {fmt.name!r} needs the column(s) "
            f"{', '.join(missing)} to build them, which it lacks (it has: {', '.join(sorted(columns))})."
        )
    if not fmt.trainable:
        raise FtcotError(f"Format {fmt.name!r} is for inference only; pick a trainable one (e.g. ft_cot, vanilla).")
    return format_dataset(dataset, fmt)
