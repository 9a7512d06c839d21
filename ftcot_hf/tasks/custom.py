"""Any question/answer dataset as a task: :class:`DatasetSource` (what :meth:`Task.from_dataset` builds).

The data is read through ``datasets.load_dataset`` (a Hub id, a folder with ``train.*``/``test.*`` files, or one
``.jsonl``/``.json``/``.csv``/``.parquet`` file), mapped to the task columns the stages expect (``sample_index``,
``question``, ``answer``, ``rationale``, ``choices``) and checked row by row: a gold answer the answer type cannot
read is an error naming split, row, column and value (or, with ``skip_bad_rows``, skipped and counted), never a
silently wrong row. Multiple-choice questions get their options appended as the built-in choice tasks do.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftcot_hf.answers import ANSWER_TYPES, LETTERS, make_parser
from ftcot_hf.errors import FtcotError
from ftcot_hf.tasks.task import Task

logger = logging.getLogger(__name__)

FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")


def looks_local(path: str) -> bool:
    """A name that can only be a local path (./x, /x, ~/x, a data file's suffix, more than one /): never asked of the
    Hub, whose retries would take half a minute to say what a stat says at once."""
    p = Path(path)
    return (
        path.startswith((".", "/", "~"))
        or p.suffix.lower() in {*FILE_BUILDERS, ".txt", ".gz", ".gguf"}
        or (path.count("/") > 1)
    )


def missing_path_message(what: str, path: str) -> str:
    """'<what> <path> not found: no such file or folder in <its folder> (near names: ...); ...' for a local path."""
    import difflib

    local = Path(path).expanduser()
    folder = local.parent if str(local.parent) else Path(".")
    where = f"no {local.parent} folder" if not folder.is_dir() else f"no such file or folder in {folder.resolve()}"
    near = ""
    if folder.is_dir():
        names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))[:5000]
        close = difflib.get_close_matches(local.name, names, n=3, cutoff=0.6)
        near = f" (near names: {', '.join(close)})" if close else ""
    return f"{what} {path} not found: {where}{near}; give an existing file or folder, or a Hub id (owner/name)."


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def format_choice_question(question: str, choices: list[dict[str, str]]) -> str:
    """``"{question} Answer choices: (A) x, (B) y."``, as the paper's choice tasks show their options."""
    listed = ", ".join(f"({c['label']}) {c['text']}" for c in choices)
    return f"{question} Answer choices: {listed}."


@dataclass
class DatasetSource:
    """A user dataset and its column mapping. Reads and checks the data once (:meth:`task`), then serves it."""

    path: str
    question_column: str
    answer_column: str
    dataset_config: str | None = None
    revision: str | None = None
    train_split: str = "train"
    test_split: str | None = "test"
    test_size: float | int | None = None
    split_seed: int = 0
    choices_column: str | None = None
    skip_bad_rows: bool = False
    skipped: dict[str, int] = field(default_factory=dict, compare=False)
    """Rows skipped per split (``skip_bad_rows``): their gold answer could not be read."""
    _prepared: Any = field(default=None, init=False, repr=False, compare=False)

    # --- the Task protocol's source side -------------------------------------------------------------------------
    def split_variants(self) -> list[str]:
        return ["default"]

    def check_variant(self, variant: str, task: str = "") -> None:
        if variant != "default":
            raise FtcotError(f"Task {task!r} is a user dataset: it has only the 'default' split, not {variant!r}.")

    def split_sizes(self, variant: str = "default") -> tuple[int, int] | None:
        if self._prepared is None:
            return None
        return tuple(self._prepared[s].num_rows for s in ("train", "test"))  # type: ignore[return-value]

    def load(self, task: Any, split_variant: str = "default", **kwargs: Any) -> Any:
        if self._prepared is None:
            self._prepared = self._prepare(task.answer, kwargs.get("cache_dir"))
        return self._prepared

    def provenance(self) -> list[dict[str, Any]]:
        local = Path(self.path).expanduser()
        where = {"dataset": self.public_path, "config": self.dataset_config, "revision": self.revision}
        mapping = {"question_column": self.question_column, "answer_column": self.answer_column,
                   "choices_column": self.choices_column}  # fmt: skip
        if local.is_file():
            return [{**where, "file": local.name, "sha256": _sha256(local), **mapping}]
        if local.is_dir():
            files = sorted(p for p in local.rglob("*") if p.suffix in FILE_BUILDERS and p.is_file())
            return [{**where, "file": str(p.relative_to(local)), "sha256": _sha256(p), **mapping} for p in files]
        return [{**where, "revision": self.revision or "main", **mapping}]

    @property
    def public_path(self) -> str:
        """The dataset as cards and reports name it: a Hub id as is, a local file or folder by its name only (its
        absolute path says nothing to a reader and may be private)."""
        local = Path(self.path).expanduser()
        return local.name if local.exists() else self.path

    def to_dict(self) -> dict[str, Any]:
        """What ``yield_report.json`` records (the local path by its name only; the data is not read again)."""
        keys = ("question_column", "answer_column", "dataset_config", "revision", "train_split",
                "test_split", "test_size", "split_seed", "choices_column", "skip_bad_rows")  # fmt: skip
        return {"path": self.public_path, **{k: getattr(self, k) for k in keys}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetSource:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__ and not k.startswith("_")})

    @property
    def display(self) -> str:
        return self.path + (f" [{self.dataset_config}]" if self.dataset_config else "")

    # --- building the Task ---------------------------------------------------------------------------------------
    def task(
        self,
        name: str,
        answer_type: str,
        *,
        title: str | None = None,
        license: str | None = None,  # noqa: A002
        citation: str = "",
        choices: int | None = None,
    ) -> Any:
        """The :class:`~ftcot_hf.Task` over this dataset. Reads and checks the data now (so bad input fails before
        any work), unless ``choices`` is given (a task rebuilt from a rationale dataset's record)."""
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise FtcotError(
                f"--task_name {name!r}: give a name of letters, digits, '_', '-' or '.', starting with a letter "
                "(it names the rationale dataset's config)."
            )
        if answer_type not in ANSWER_TYPES:
            raise FtcotError(f"--answer_type {answer_type!r} is not an answer type: use one of "
                             f"{', '.join(ANSWER_TYPES)}.")  # fmt: skip
        if (answer_type == "choice") != bool(self.choices_column):
            raise FtcotError(
                "--answer_type choice needs --choices_column (the options of each question), and only choice tasks "
                "take one."
            )
        raw = None
        if choices is None:
            raw = self._read()
            choices = max((len(self._choices(r, s, i)) for s, rows in raw.items() for i, r in enumerate(rows)),
                          default=0) if self.choices_column else 0  # fmt: skip
        try:
            parser = make_parser(answer_type, choices=choices)
        except ValueError as e:
            raise FtcotError(f"{self.display}: {e}.") from None
        task = Task(
            name=name,
            title=title or name,
            answer=parser,
            source=self,
            description=f"User dataset {self.public_path} (question: {self.question_column!r}, answer: "
            f"{self.answer_column!r}, answer type: {answer_type}).",
            license=license or "unknown",
            citation=citation,
            has_choices=answer_type == "choice",
        )
        if raw is not None:
            self._prepared = self._records(raw, parser)
        return task

    def _read(self) -> dict[str, list[dict[str, Any]]]:
        """The raw rows of the train and test splits, as dicts."""
        import datasets

        local = Path(self.path).expanduser()
        quiet = not datasets.utils.are_progress_bars_disabled()
        if quiet:  # our command reports what it read; datasets' bars would only clutter its one-line errors
            datasets.utils.disable_progress_bars()
        try:
            if local.is_file():
                builder = FILE_BUILDERS.get(local.suffix.lower())
                if builder is None:
                    raise FtcotError(
                        f"{self.path}: unknown file type {local.suffix!r}; use {', '.join(FILE_BUILDERS)}, a folder "
                        "of such files or a Hub dataset id."
                    )
                extra = {"delimiter": "\t"} if local.suffix.lower() == ".tsv" else {}
                loaded = datasets.load_dataset(builder, data_files={"train": str(local)}, **extra)
            elif looks_local(self.path) and not local.exists():
                raise FtcotError(missing_path_message("Dataset", self.path))
            else:
                loaded = datasets.load_dataset(self.path, self.dataset_config, revision=self.revision)
        except FtcotError:
            raise
        except Exception as e:  # datasets raises many types (FileNotFoundError, DatasetNotFoundError, ArrowInvalid)
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            empty = re.search(r'Instruction "([^"]+)" corresponds to no data', reason)
            if empty:  # datasets' words for a split whose files hold no rows
                raise FtcotError(f"The {empty.group(1)} split of {self.display} is empty: a task needs train and test "
                                 "rows.") from None  # fmt: skip
            raise FtcotError(f"Could not read the dataset {self.display}: {reason}") from None
        finally:
            if quiet:
                datasets.utils.enable_progress_bars()
        if not isinstance(loaded, datasets.DatasetDict):
            raise FtcotError(f"{self.display} loaded as one split; a dataset with named splits is needed.")
        if self.train_split not in loaded:
            raise FtcotError(f"{self.display} has no split {self.train_split!r} (it has: {', '.join(loaded)}); "
                             "pass --train_split.")  # fmt: skip
        train = loaded[self.train_split]
        self._check_columns(train, self.train_split)
        if self.test_size is not None:
            n = train.num_rows
            size = self.test_size
            if not ((isinstance(size, float) and 0 < size < 1) or (isinstance(size, int) and 0 < size < n)):
                raise FtcotError(f"--test_size {size!r}: give a fraction in (0, 1) or a count in 1..{n - 1} "
                                 f"({self.display} has {n} rows in {self.train_split!r}).")  # fmt: skip
            if n < 2:
                raise FtcotError(f"{self.display}: {n} row(s) in {self.train_split!r}, too few to split.")
            import numpy as np

            n_test = int(size) if isinstance(size, int) else max(1, min(n - 1, round(n * size)))
            held_out = set(np.random.RandomState(self.split_seed).permutation(n)[:n_test].tolist())
            rows = train.add_column("_row", list(range(n))).add_column("_pos", list(range(n)))
            rows = rows.add_column("_split", [self.train_split] * n)
            splits = {"train": rows.select([i for i in range(n) if i not in held_out]),
                      "test": rows.select(sorted(held_out))}  # fmt: skip
        else:
            if not self.test_split or self.test_split not in loaded:
                raise FtcotError(
                    f"{self.display} has no split {self.test_split!r} (it has: {', '.join(loaded)}); pass "
                    "--test_split NAME, or --test_size 0.2 to hold out part of the train split."
                )
            test = loaded[self.test_split]
            self._check_columns(test, self.test_split)
            n = train.num_rows
            m = test.num_rows
            splits = {
                "train": train.add_column("_row", list(range(n))).add_column("_pos", list(range(n)))
                .add_column("_split", [self.train_split] * n),
                "test": test.add_column("_row", list(range(n, n + m))).add_column("_pos", list(range(m)))
                .add_column("_split", [self.test_split] * m),
            }  # fmt: skip
        out = {}
        for split, data in splits.items():
            if data.num_rows == 0:
                raise FtcotError(f"The {split} split of {self.display} is empty: a task needs train and test rows.")
            out[split] = data.to_list()
        return out

    def _check_columns(self, data: Any, split: str) -> None:
        for flag, column in (("--question_column", self.question_column), ("--answer_column", self.answer_column),
                             ("--choices_column", self.choices_column)):  # fmt: skip
            if column is not None and column not in data.column_names:
                raise FtcotError(
                    f"{self.display} (split {split!r}) has no column {column!r} ({flag}); its columns: "
                    f"{', '.join(data.column_names)}."
                )

    def _choices(self, row: dict[str, Any], split: str, i: int) -> list[dict[str, str]]:
        value = row.get(self.choices_column)
        where = f"{self.display}, split {split!r}, row {i}, column {self.choices_column!r}"
        if isinstance(value, str):  # a CSV cell: one option per '|' or ';'? Too guessy: ask for a list
            raise FtcotError(f"{where}: {value[:60]!r} is a string; choices must be a list of strings or of "
                             "{label, text}.")  # fmt: skip
        if isinstance(value, dict) and set(value) >= {"label", "text"}:  # columnar {label: [...], text: [...]}
            value = [{"label": lbl, "text": txt} for lbl, txt in zip(value["label"], value["text"], strict=True)]
        if not isinstance(value, list) or not value:
            raise FtcotError(f"{where}: {value!r} is not a non-empty list of choices.")
        if len(value) > len(LETTERS):
            raise FtcotError(f"{where}: {len(value)} choices; at most {len(LETTERS)} are supported.")
        out = []
        for k, item in enumerate(value):
            text = item.get("text") if isinstance(item, dict) else item
            if not isinstance(text, (str, int, float)) or not str(text).strip():
                raise FtcotError(f"{where}: choice {k} ({item!r}) has no text.")
            out.append({"label": LETTERS[k], "text": str(text).strip(),
                        "given": str(item.get("label", "")).strip() if isinstance(item, dict) else ""})  # fmt: skip
        return out

    def _records(self, raw: dict[str, list[dict[str, Any]]], parser: Any) -> Any:
        import datasets

        from ftcot_hf.tasks.builder import task_features  # heavy: imports datasets; the commands' configs import this

        features = task_features(has_choices=bool(self.choices_column))
        out = {}
        for split, rows in raw.items():
            records, skipped = [], 0
            for row in rows:
                question = row.get(self.question_column)
                where = f"{self.display}, split {row['_split']!r}, row {row['_pos']}"
                if not isinstance(question, str) or not question.strip():
                    if self.skip_bad_rows:
                        skipped += 1
                        continue
                    raise FtcotError(f"{where}: column {self.question_column!r} holds no question ({question!r}).")
                question = question.strip()
                choices = self._choices(row, row["_split"], row["_pos"]) if self.choices_column else None
                gold = row.get(self.answer_column)
                if choices is not None:  # a gold label as the user labelled the options ("1", "a") maps to ours
                    given = {c["given"].casefold(): c["label"] for c in choices if c["given"]}
                    gold = given.get(str(gold).strip().casefold(), gold)
                try:
                    answer = parser.canonical_gold(gold, choices)
                except ValueError as e:
                    if self.skip_bad_rows:
                        skipped += 1
                        continue
                    raise FtcotError(
                        f"{where}: column {self.answer_column!r} value {gold!r} cannot be read as a {parser.name} "
                        f"answer ({e}). Fix the row, choose another --answer_type, or pass --skip_bad_rows."
                    ) from None
                record = {"sample_index": int(row["_row"]), "question": question, "answer": answer, "rationale": None}
                if choices is not None:
                    clean = [{"label": c["label"], "text": c["text"]} for c in choices]
                    record.update(question=format_choice_question(question, clean), choices=clean)
                records.append(record)
            if skipped:
                self.skipped[split] = skipped
                logger.warning("%s: skipped %d %s row(s) whose gold answer could not be read.", self.display,
                               skipped, split)  # fmt: skip
            if not records:
                raise FtcotError(f"No usable row left in the {split} split of {self.display}.")
            out[split] = datasets.Dataset.from_list(records, features=features)
        return datasets.DatasetDict(out)


def recorded_tasks(folder: str | Path) -> dict[str, Any]:
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
