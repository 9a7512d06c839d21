"""Training data: load a rationale dataset (or a task), filter it, and turn it into prompt/completion rows."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ftcot_hf.errors import FtcotError
from ftcot_hf.students.formats import EmptyDatasetError, MissingColumnsError, StudentFormat, format_dataset, get_format
from ftcot_hf.tasks import Task, resolve_task
from ftcot_hf.tasks.args import TaskDatasetArgs, rationales_alias

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger(__name__)


@dataclass
class DataArgs(TaskDatasetArgs):
    """Where the training data comes from.

    ``rationales`` is a rationale dataset repo written by ``ftcot teach`` (a folder, or a Hub id of one pushed there):
    ``load_dataset(rationales, task)`` gives ``train`` (rationales) and ``test`` (the task's test questions). Without
    it, the task's own records are used (``ftcot_hf.load_task``: enough for the vanilla format, or human rationales
    where the task has them); with the column flags (``--question_column`` ... ``--task_name``), ``dataset`` is your
    own question/answer data and its records are used the same way. ``dataset`` without the column flags is the
    deprecated name of ``rationales`` (a warning).
    """

    rationales: str | None = field(
        default=None,
        metadata={"help": "Rationale dataset: a folder written by `ftcot teach` or a Hub dataset id (config = task)."},
    )
    dataset: str | None = field(
        default=None,
        metadata={
            "help": "Your own dataset, with --question_column/--answer_column/--answer_type/--task_name (without "
            "them: the deprecated name of --rationales)."
        },
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

    def __post_init__(self) -> None:
        rationales_alias(self, "ftcot train")


def load_training_data(args: DataArgs, task: str | Task | None) -> tuple[Dataset, Dataset | None]:
    """(train records, test records or None) for ``args``; filtered, never empty."""
    from datasets import DatasetDict, load_dataset

    if isinstance(task, Task) and not task.builtin and args.wants_custom_task():
        splits = task.load()
        source = f"task {task.name} ({args.dataset})"
        args = dataclasses.replace(args, train_split="train", test_split="test")
    elif args.rationales is None:
        if task is None:
            raise FtcotError("Give --rationales (a rationale dataset from `ftcot teach`) or --task (its own records).")
        task = resolve_task(task)
        splits = task.load(data_dir=args.data_dir)
        source = f"task {task.name}"
    else:
        task = task.name if isinstance(task, Task) else task
        config = args.dataset_config or task
        source = f"{args.rationales}" + (f" [{config}]" if config else "")
        path = Path(args.rationales)
        if path.exists() and not (path / "README.md").exists() and (path / "dataset_dict.json").exists():
            from datasets import load_from_disk

            splits = load_from_disk(str(path))
        else:
            if path.is_dir():
                check_local_dataset(path, config, args.train_split)
            try:
                splits = load_dataset(args.rationales, config)
            except Exception as e:
                if _is_data_error(e):
                    raise FtcotError(f"Could not read the dataset {source}: {_data_error_text(e)}") from e
                if isinstance(e, (FileNotFoundError, ValueError)):
                    raise FtcotError(f"Could not load the dataset {source}: {_first_line(e)}") from e
                raise
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


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _is_data_error(error: BaseException) -> bool:
    """datasets' and pyarrow's errors for a file they cannot read (a library traceback otherwise)."""
    seen: BaseException | None = error
    while seen is not None:
        module = type(seen).__module__ or ""
        if module.startswith(("datasets", "pyarrow")):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _data_error_text(error: BaseException) -> str:
    """The innermost cause's first line (``CastError: Couldn't cast ...``), not datasets' "An error occurred"."""
    inner = error
    while (inner.__cause__ or inner.__context__) is not None:
        inner = inner.__cause__ or inner.__context__
    return f"{type(inner).__name__}: {_first_line(inner)}"


def _front_matter(readme: Path) -> dict:
    import yaml

    text = readme.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return {}
    try:
        meta = yaml.safe_load(text.split("---", 2)[1])
    except yaml.YAMLError as e:
        raise FtcotError(f"{readme}: its YAML header is not valid YAML ({_first_line(e)}).") from None
    return meta if isinstance(meta, dict) else {}


def _split_files(entry: dict) -> list[tuple[str, list[str]]]:
    data_files = entry.get("data_files") or []
    if isinstance(data_files, (str, dict)):
        data_files = [data_files]
    out = []
    for item in data_files:
        if isinstance(item, str):
            out.append(("train", [item]))
        elif isinstance(item, dict):
            paths = item.get("path") or []
            out.append((str(item.get("split", "train")), [paths] if isinstance(paths, str) else list(paths)))
    return out


def _promised_columns(schema) -> list[str] | None:  # noqa: ANN001 -- a pyarrow.Schema
    """The columns the writer recorded with the file (datasets' ``huggingface`` metadata), None without any."""
    import json

    raw = (schema.metadata or {}).get(b"huggingface")
    if not raw:
        return None
    try:
        features = json.loads(raw).get("info", {}).get("features")
    except ValueError:
        return None
    return list(features) if isinstance(features, dict) else None


def _check_parquet(file: Path) -> tuple[int, list[str], bool]:
    """(rows, columns, whether datasets' schema is recorded in it) of a Parquet file that pyarrow can read and whose
    columns are the ones recorded with it."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(file)
    except Exception as e:  # noqa: BLE001 -- pyarrow raises several error types for one bad file
        raise FtcotError(f"{file} is not a readable Parquet file ({type(e).__name__}: {_first_line(e)}): "
                         "re-run `ftcot teach` to write it again.") from None  # fmt: skip
    columns = parquet.schema_arrow.names
    promised = _promised_columns(parquet.schema_arrow)
    if promised is not None and set(columns) != set(promised):
        missing = [c for c in promised if c not in columns]
        extra = [c for c in columns if c not in promised]
        raise FtcotError(
            f"{file}: its columns differ from the schema recorded with it (missing: {', '.join(missing) or 'none'}; "
            f"unexpected: {', '.join(extra) or 'none'}). It was changed after it was written: re-run `ftcot teach`, "
            "or rewrite it with datasets (Dataset.to_parquet)."
        )
    return parquet.metadata.num_rows, columns, promised is not None


def check_local_dataset(folder: Path, config: str | None, train_split: str) -> None:
    """Check a local dataset folder with a README ``configs:`` header (what ``ftcot teach`` writes) before
    ``load_dataset`` reads it: each listed Parquet file exists and is readable, its columns are those recorded with
    it, and the train split has rows. Each problem is one line naming the file (datasets says "Instruction train
    corresponds to no data!", or raises a pyarrow traceback)."""
    readme = folder / "README.md"
    configs = (
        [c for c in (_front_matter(readme).get("configs") or []) if isinstance(c, dict)] if readme.is_file() else []
    )
    names = [str(c.get("config_name", "default")) for c in configs]
    if not configs:  # datasets reads every data file of the folder: each must be readable
        for file in sorted(folder.rglob("*.parquet"))[:1000]:
            _check_parquet(file)
        return
    if config is None:
        if len(configs) > 1:
            return  # load_dataset names the configs itself
        entry = configs[0]
    elif config in names:
        entry = configs[names.index(config)]
    else:
        raise FtcotError(
            f"{folder} has no config {config!r} (its README.md lists: {', '.join(names)}): pass --task or "
            "--dataset_config with one of them, or teach that task into the folder."
        )
    seen: list[tuple[Path, int, list[str], bool]] = []
    for split, patterns in _split_files(entry):
        files = sorted({p for pattern in patterns for p in folder.glob(pattern) if p.is_file()})
        if not files:
            raise FtcotError(
                f"{readme} lists {', '.join(patterns)} as the {split} split of {entry.get('config_name')}, but no "
                f"such file is in {folder}: re-run `ftcot teach` into the folder, or fix the README's configs."
            )
        checked = [(file, *_check_parquet(file)) for file in files if file.suffix == ".parquet"]
        seen.extend(checked)
        rows = sum(n for _, n, _, _ in checked)
        if split == train_split and rows == 0:
            raise EmptyDatasetError(
                f"{files[0]}: the {split} split of {entry.get('config_name')} has 0 rows, nothing to train on (the "
                f"teacher kept no rationale: see {folder / 'yield_report.json'}). Teach more questions, more samples "
                "(--degree), or use another teacher."
            )
    # Without a recorded schema datasets takes the first file's columns for the whole config and fails to cast the
    # others (a CastError after ~20 lines of its log); files that record theirs may differ (train vs test splits).
    for file, _, columns, recorded in seen:
        other = next(((f, c) for f, _, c, _ in seen if set(c) != set(columns)), None)
        if not recorded and other is not None:
            raise FtcotError(
                f"{file}: its columns ({', '.join(columns)}) differ from those of {other[0].name} "
                f"({', '.join(other[1])}) in the same config, and it records no schema of its own, so datasets cannot "
                "read the config: re-run `ftcot teach`, or write the file with datasets (Dataset.to_parquet)."
            )
