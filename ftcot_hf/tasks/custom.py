"""Any question/answer dataset as a task: :class:`DatasetSource` (what :meth:`Task.from_dataset` builds).

The data is read through ``datasets.load_dataset`` (a Hub id, a folder with ``train.*``/``test.*`` files, or one
``.jsonl``/``.json``/``.csv``/``.parquet`` file), mapped to the task columns the stages expect (``sample_index``,
``question``, ``answer``, ``rationale``, ``choices``) and checked row by row: a gold answer the answer type cannot
read is an error naming split, row, column and value (or, with ``skip_bad_rows``, skipped and counted), never a
silently wrong row. Multiple-choice questions get their options appended as the built-in choice tasks do.

Why this file is ~510 lines: one source type, from reading the user's file (memory-mapped, cut to --limit) to
checked records (a batch at a time, one gold per question over hashed columns); its parts share the column mapping.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftcot_hf.errors import FtcotError
from ftcot_hf.tasks.answers import ANSWER_TYPES, LETTERS, make_parser
from ftcot_hf.utils.fs import sha256_file

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


def _check_json_file(path: Path) -> None:
    """A JSON Lines (or JSON) file read by us first: datasets' errors name neither the file nor the line ("An
    error occurred while generating the dataset", "StopIteration"); ours name both."""
    from ftcot_hf.errors import SourceFormatError
    from ftcot_hf.tasks.sources import read_json, read_jsonl

    try:
        if path.suffix.lower() == ".jsonl":
            rows = 0
            for rows, row in enumerate(read_jsonl(path), start=1):  # noqa: B007 -- the count is what is kept
                if not isinstance(row, dict):
                    raise FtcotError(f"{path}: row {rows} is {type(row).__name__} {str(row)[:60]!r}, not a JSON "
                                     "object ({\"question\": ..., \"answer\": ...}).")  # fmt: skip
        else:
            data = read_json(path)
            rows = len(data) if isinstance(data, list | dict) else 0
    except SourceFormatError as e:
        raise FtcotError(f"Could not read the dataset {e}") from None
    if not rows:
        raise FtcotError(f"The dataset {path} holds no rows: give a file with one JSON object per line.")


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
    """Rows skipped per split (``skip_bad_rows``): no question, a gold answer that could not be read, or another gold
    answer for a question seen before."""
    limits: dict[str, int] = field(default_factory=dict, compare=False)
    """Only the first N rows of a split are read and checked (``ftcot teach --limit``: a quick run over a large
    file touches those rows, not the file)."""
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
            self._prepared = self._records(self._read(), task.answer)  # a task rebuilt from its record: read now
        return self._prepared

    def provenance(self) -> list[dict[str, Any]]:
        local = Path(self.path).expanduser()
        where = {"dataset": self.public_path, "config": self.dataset_config, "revision": self.revision}
        mapping = {"question_column": self.question_column, "answer_column": self.answer_column,
                   "choices_column": self.choices_column}  # fmt: skip
        if local.is_file():
            return [{**where, "file": local.name, "sha256": sha256_file(local), **mapping}]
        if local.is_dir():
            files = sorted(p for p in local.rglob("*") if p.suffix in FILE_BUILDERS and p.is_file())
            return [{**where, "file": str(p.relative_to(local)), "sha256": sha256_file(p), **mapping} for p in files]
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
    def task_fields(self, name: str, answer_type: str, *, choices: int | None = None) -> dict[str, Any]:
        """The fields of the :class:`~ftcot_hf.Task` over this dataset that the dataset decides (its answer parser,
        description, ``has_choices``, and itself as the source): :meth:`Task.from_dataset` builds the task of them.
        Reads and checks the data now (so bad input fails before any work), unless ``choices`` is given (a task
        rebuilt from a rationale dataset's record)."""
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
            choices = self._max_choices(raw) if self.choices_column else 0
        try:
            parser = make_parser(answer_type, choices=choices)
        except ValueError as e:
            raise FtcotError(f"{self.display}: {e}.") from None
        if raw is not None:
            self._prepared = self._records(raw, parser)
        return {
            "answer": parser,
            "source": self,
            "description": f"User dataset {self.public_path} (question: {self.question_column!r}, answer: "
            f"{self.answer_column!r}, answer type: {answer_type}).",
            "has_choices": answer_type == "choice",
        }

    def _read(self) -> dict[str, _Raw]:
        """The raw rows of the train and test splits, as ``datasets`` reads them (memory-mapped Arrow: nothing is
        copied into Python objects here), cut to :attr:`limits`."""
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
                if builder == "json":
                    _check_json_file(local)
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
        import numpy as np

        if self.test_size is not None:
            n = train.num_rows
            size = self.test_size
            if not ((isinstance(size, float) and 0 < size < 1) or (isinstance(size, int) and 0 < size < n)):
                raise FtcotError(f"--test_size {size!r}: give a fraction in (0, 1) or a count in 1..{n - 1} "
                                 f"({self.display} has {n} rows in {self.train_split!r}).")  # fmt: skip
            if n < 2:
                raise FtcotError(f"{self.display}: {n} row(s) in {self.train_split!r}, too few to split.")
            n_test = int(size) if isinstance(size, int) else max(1, min(n - 1, round(n * size)))
            held = np.zeros(n, dtype=bool)
            held[np.random.RandomState(self.split_seed).permutation(n)[:n_test]] = True
            # (the rows, their original row numbers = sample_index, the split they came from, their numbers there)
            parts = {"train": (train, np.flatnonzero(~held), self.train_split),
                     "test": (train, np.flatnonzero(held), self.train_split)}  # fmt: skip
        else:
            if not self.test_split or self.test_split not in loaded:
                raise FtcotError(
                    f"{self.display} has no split {self.test_split!r} (it has: {', '.join(loaded)}); pass "
                    "--test_split NAME, or --test_size 0.2 to hold out part of the train split."
                )
            test = loaded[self.test_split]
            self._check_columns(test, self.test_split)
            n = train.num_rows
            parts = {"train": (train, np.arange(n), self.train_split),
                     "test": (test, np.arange(test.num_rows), self.test_split)}  # fmt: skip
        out = {}
        for split, (data, rows, origin) in parts.items():
            if split in self.limits:
                rows = rows[: self.limits[split]]
            if len(rows) == 0:
                raise FtcotError(f"The {split} split of {self.display} is empty: a task needs train and test rows.")
            member = None
            if not (len(rows) == data.num_rows and (rows == np.arange(len(rows))).all()):
                span = int(rows[-1]) + 1  # the rows are ascending
                if 2 * len(rows) >= span:  # most of the span: read it whole, skipping the rows of the other split
                    member = np.zeros(span, dtype=bool)
                    member[rows] = True
                    data = data.select(range(span)) if span < data.num_rows else data  # a slice: no indices file
                else:  # a few rows spread far (a held-out test split): their indices, a small file
                    data = data.select(rows)
            offset = n if (split == "test" and self.test_size is None) else 0
            out[split] = _Raw(data, rows, origin, offset, member)
        return out

    def _max_choices(self, raw: dict[str, _Raw]) -> int:
        """The most options any question has (the parser's letter range), read a batch at a time."""
        most = 0
        for part in raw.values():
            column = part.data.select_columns([self.choices_column])
            for start, batch in enumerate(column.iter(batch_size=1000)):
                values = batch[self.choices_column]
                for k, pos in part.picked(range(start * 1000, start * 1000 + len(values))):
                    most = max(most, len(self._choices({self.choices_column: values[k]}, part.origin, pos)))
        return most

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

    def _records(self, raw: dict[str, _Raw], parser: Any) -> Any:
        """The task records of each split, built a batch at a time by ``Dataset.map`` (written to ``datasets``'
        cache beside the source's Arrow files when it has some: the rows never all sit in memory)."""
        import datasets

        from ftcot_hf.tasks.builder import task_features  # heavy: imports datasets; the commands' configs import this

        features = task_features(has_choices=bool(self.choices_column))
        out = {}
        shown = not datasets.utils.are_progress_bars_disabled()
        if shown:  # our command reports what it read; a bar per split would only clutter its one-line errors
            datasets.utils.disable_progress_bars()
        golds = _Golds()
        try:
            for split, part in raw.items():
                out[split] = self._split_records(split, part, parser, features, golds)
        finally:
            if shown:
                datasets.utils.enable_progress_bars()
        return datasets.DatasetDict(self._one_gold_per_question(out, raw, golds))

    def _one_gold_per_question(self, out: dict[str, Any], raw: dict[str, _Raw], golds: _Golds) -> dict[str, Any]:
        """A question with two different gold answers (across splits too) would train and score the student
        against itself: an error naming both rows, or (``skip_bad_rows``) the later row skipped and counted."""
        splits = list(out)
        drop: dict[str, set[int]] = {}
        for (s1, r1), (s0, r0) in golds.conflicts():
            row, seen = out[splits[s1]][r1], out[splits[s0]][r0]
            if row["question"] != seen["question"]:  # two questions whose hashes collide (~1 in 2^64)
                continue
            p1, p0 = (r["sample_index"] - raw[splits[s]].offset for r, s in ((row, s1), (seen, s0)))
            if self.skip_bad_rows:
                drop.setdefault(splits[s1], set()).add(r1)
                continue
            raise FtcotError(
                f"{self.display}, split {raw[splits[s1]].origin!r}, row {p1}: question {row['question'][:80]!r} has "
                f"the gold answer {row['answer']!r} here but {seen['answer']!r} at split {raw[splits[s0]].origin!r}, "
                f"row {p0}. Fix or remove one of the rows (or pass --skip_bad_rows to skip the later one)."
            )
        for split, rows in drop.items():
            self.skipped[split] = self.skipped.get(split, 0) + len(rows)
            logger.warning("%s: skipped %d %s row(s) whose question has another gold answer in an earlier row.",
                           self.display, len(rows), split)  # fmt: skip
            out[split] = out[split].select([i for i in range(out[split].num_rows) if i not in rows])
            if not out[split].num_rows:
                raise FtcotError(f"No usable row left in the {split} split of {self.display}.")
        return out

    def _split_records(self, split: str, part: _Raw, parser: Any, features: Any, golds: _Golds) -> Any:
        skipped = [0]
        golds.split()

        def convert(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
            picked = part.picked(indices)
            rows = [{c: batch[c][k] for c in batch} for k, _ in picked]
            positions = [pos for _, pos in picked]
            records = self._convert(rows, positions, part, parser, skipped)
            for record in records:
                golds.add(record["question"], record["answer"])
            return {name: [r.get(name) for r in records] for name in features}

        converted = part.data.map(
            convert, batched=True, batch_size=RECORD_BATCH, with_indices=True, remove_columns=part.data.column_names,
            features=features, load_from_cache_file=False, desc=f"Reading {split}", writer_batch_size=RECORD_BATCH,
            # the function closes over this source: hashing it would be slow and warn; the records are a
            # function of the data, the mapping and the code, and are never read back from this cache anyway
            new_fingerprint=hashlib.sha256(
                f"{part.data._fingerprint}|{split}|{self.to_dict()}|{self.limits}".encode()
            ).hexdigest()[:32],
        )  # fmt: skip
        if skipped[0]:
            self.skipped[split] = skipped[0]
            logger.warning("%s: skipped %d %s row(s) whose gold answer could not be read.", self.display,
                           skipped[0], split)  # fmt: skip
        if not converted.num_rows:
            raise FtcotError(f"No usable row left in the {split} split of {self.display}.")
        return converted

    def _convert(self, rows: list[dict], positions: list[int], part: _Raw, parser: Any, skipped: list) -> list[dict]:
        """Task records of raw rows (``positions``: their numbers in the split they came from), checked one by
        one: a bad row is an error naming split, row, column and value, or skipped and counted."""
        records = []
        for row, pos in zip(rows, positions, strict=True):
            question = row.get(self.question_column)
            where = f"{self.display}, split {part.origin!r}, row {pos}"
            if not isinstance(question, str) or not question.strip():
                if self.skip_bad_rows:
                    skipped[0] += 1
                    continue
                raise FtcotError(f"{where}: column {self.question_column!r} holds no question ({question!r}).")
            question = question.strip()
            choices = self._choices(row, part.origin, pos) if self.choices_column else None
            gold = row.get(self.answer_column)
            if choices is not None:  # a gold label as the user labelled the options ("1", "a") maps to ours
                given = {c["given"].casefold(): c["label"] for c in choices if c["given"]}
                gold = given.get(str(gold).strip().casefold(), gold)
            try:
                answer = parser.canonical_gold(gold, choices)
            except ValueError as e:
                if self.skip_bad_rows:
                    skipped[0] += 1
                    continue
                raise FtcotError(
                    f"{where}: column {self.answer_column!r} value {gold!r} cannot be read as a {parser.name} "
                    f"answer ({e}). Fix the row, choose another --answer_type, or pass --skip_bad_rows."
                ) from None
            record = {"sample_index": part.offset + pos, "question": question, "answer": answer, "rationale": None}
            if choices is not None:
                clean = [{"label": c["label"], "text": c["text"]} for c in choices]
                record.update(question=format_choice_question(question, clean), choices=clean)
            records.append(record)
        return records


RECORD_BATCH = 10_000
"""Rows per batch of the conversion, and so per Arrow record batch of the converted splits: ``Dataset.map`` writes
each batch its function returns as one record batch (``writer_batch_size`` splits larger ones, it never joins
smaller ones). Opening a memory-mapped Arrow stream maps in the pages around each batch's header (the kernel's
fault-around, 64 KB): 1,000-row batches (~50 KB) meant every page of the file, ~50 MB resident at 1M questions
before a record was read; 10,000-row batches leave ~6 % of it, for a few MB of rows in Python at a time."""


class _Golds:
    """(question, gold) of every record, hashed into 16 bytes a row, to find a question given two golds without
    holding the questions. Records are numbered in reading order; a split's are a run of that numbering."""

    def __init__(self) -> None:
        from array import array

        self.questions, self.answers = array("q"), array("q")
        self.starts: list[int] = []

    def split(self) -> int:
        self.starts.append(len(self.questions))
        return len(self.starts) - 1

    def add(self, question: str, answer: str) -> None:
        self.questions.append(hash(question))
        self.answers.append(hash(answer))

    def conflicts(self) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        """((split, row) of a later record, that of the first record of its question) where their golds differ,
        in reading order. One sorted copy of the question hashes finds the repeated questions (most datasets have
        none: 9 bytes a row more, then done); only their records are compared."""
        import numpy as np

        if not self.questions:
            return []
        q = np.frombuffer(self.questions, dtype=np.int64)
        qs = np.sort(q)
        repeated = qs[1:][qs[1:] == qs[:-1]]
        del qs
        if not len(repeated):
            return []
        rows = np.flatnonzero(np.isin(q, repeated))  # records whose question comes again, in reading order
        a = np.frombuffer(self.answers, dtype=np.int64)[rows]
        first: dict[int, tuple[int, int]] = {}  # question hash -> (record, its gold's hash)
        found = []
        for i, qh, ah in zip(rows.tolist(), q[rows].tolist(), a.tolist(), strict=True):
            j, gold = first.setdefault(qh, (i, ah))
            if gold != ah:
                found.append((self._where(i), self._where(j)))
        return found

    def _where(self, record: int) -> tuple[int, int]:
        import bisect

        split = bisect.bisect_right(self.starts, record) - 1
        return split, record - self.starts[split]


@dataclass
class _Raw:
    """One split's raw rows: ``data`` (a ``Dataset``, rows in order), ``rows`` (each row's number in the split it
    came from, ``origin``), ``offset`` (added to that number to make the ``sample_index``: test rows follow train
    rows when the dataset has both splits). With ``member``, ``data`` is the first rows of ``origin`` up to the
    split's last one, and ``member`` says which are the split's: a train split with a few rows held out is read as a
    slice rather than through an indices mapping (a file of 8 bytes a row that datasets memory-maps)."""

    data: Any
    rows: Any
    origin: str
    offset: int = 0
    member: Any = None

    def picked(self, indices: Any) -> list[tuple[int, int]]:
        """(k, row number in ``origin``) of the split's rows among the rows of ``data`` at ``indices`` (k: the place
        in ``indices``)."""
        if self.member is None:
            return [(k, int(self.rows[i])) for k, i in enumerate(indices)]
        return [(k, int(i)) for k, i in enumerate(indices) if self.member[i]]
