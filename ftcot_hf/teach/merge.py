"""``ftcot merge``: the parts of a ``--num_shards`` teaching run (or of a Ray Data run, :mod:`ftcot_hf.teach.ray_data`)
into the one rationale dataset a single run would have written, and their request caches into one.

A part is a rationale folder whose yield reports say which questions it taught (``YieldReport.shard``: questions
``start`` to ``end`` of ``questions``, part ``index`` of ``num_shards``). The parts are contiguous ranges, so the
merged train split is the parts' rows one after the other: each part's Parquet is streamed, record batch by record
batch, into one Arrow file that is memory-mapped back and written by the same writer as ``ftcot teach``'s
(:func:`~ftcot_hf.teach.folder.save_rationales`): the same rows in the same order, the same test split, the
yield reports and ledgers summed, one card, in memory that does not grow with the rows.

Refused with one line (exit 2): parts taught with different settings, a part missing or given twice (or parts that
overlap), parts of different question sets, and parts whose test splits differ.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ftcot_hf.errors import FtcotError
from ftcot_hf.teach.yields import YieldReport
from ftcot_hf.teachers.cache import RequestCache, _encode, decode_row, default_cache_path, merge
from ftcot_hf.utils.shards import RATIONALE_SAMPLE, SAMPLE_ATTRIBUTE, SHARDS_ATTRIBUTE

logger = logging.getLogger(__name__)

NOT_SETTINGS = frozenset({"num_shards", "shard_index", "max_concurrency", "base_url", "lock_timeout", "max_requests",
                          "max_cost", "repo_id"})  # fmt: skip
"""Teach config fields parts may differ in: where and how fast they asked, not what (the local paths are not written
in a folder at all). Every other field must be equal."""
FIRST = ("task", "teacher", "degree", "temperature", "protocol")
"""Report fields every part has the same value of (checked with the settings)."""


@dataclass
class Part:
    """One part's folder as read: its ``yield_report.json`` and the README's ``configs`` entries."""

    folder: Path
    meta: dict[str, Any]
    configs: dict[str, dict[str, Any]]
    reports: dict[str, dict[str, Any]]

    def files(self, task: str, split: str) -> list[Path]:
        entry = self.configs.get(task) or {}
        return [p for f in entry.get("data_files", []) if f["split"] == split
                for p in sorted(self.folder.glob(f["path"]))]  # fmt: skip

    def settings(self, task: str) -> dict[str, Any]:
        config = (self.meta.get("task_configs") or {}).get(task) or self.meta.get("config") or {}
        return {k: v for k, v in config.items() if k not in NOT_SETTINGS}

    def describe(self, task: str) -> str:
        s = self.reports[task].get("shard") or {}
        if s.get("index") is not None:
            return f"part {s['index']} of {s['num_shards']} ({self.folder})"
        return f"questions {s.get('start', 0) + 1}-{s.get('end')} ({self.folder})"


def read_part(folder: str | os.PathLike) -> Part:
    from huggingface_hub import DatasetCard

    path = Path(folder)
    report, readme = path / "yield_report.json", path / "README.md"
    if not path.is_dir():
        raise FtcotError(f"ftcot merge: {path} is not a folder: give the --output_dir of each `ftcot teach "
                         "--num_shards N --shard_index I` run.")  # fmt: skip
    if not (report.is_file() and readme.is_file()):
        raise FtcotError(f"ftcot merge: {path} is not a rationale dataset folder (no yield_report.json and README.md "
                         "in it): give the --output_dir of each part's `ftcot teach` run.")  # fmt: skip
    try:
        meta = json.loads(report.read_text(encoding="utf-8"))
        configs = DatasetCard.load(readme).data.to_dict().get("configs") or []
    except Exception as e:  # noqa: BLE001 -- a malformed file of any kind: name the folder
        reason = " ".join(str(e).split())[:160]
        raise FtcotError(f"ftcot merge: {path}'s yield_report.json or README.md cannot be read ({reason}): re-run "
                         "that part's `ftcot teach`.") from None  # fmt: skip
    reports = {r["task"]: r for r in meta.get("reports") or [] if isinstance(r, dict) and "task" in r}
    return Part(path, meta, {c["config_name"]: c for c in configs if "config_name" in c}, reports)


def _check_settings(parts: Sequence[Part], task: str) -> None:
    first = parts[0]
    want = first.settings(task) | {k: first.reports[task].get(k) for k in FIRST}
    for part in parts[1:]:
        have = part.settings(task) | {k: part.reports[task].get(k) for k in FIRST}
        if have != want:
            key = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))[0]
            raise FtcotError(
                f"ftcot merge: {first.folder} and {part.folder} were taught with different settings ({key}: "
                f"{want.get(key)!r} vs {have.get(key)!r}), so together they are not one run's dataset: re-run the "
                "odd part with the same flags as the others (only --shard_index differs)."
            )


def _ordered(parts: Sequence[Part], task: str) -> list[Part]:
    """The parts of ``task`` in question order, checked to cover its questions once each."""
    missing_info = [p for p in parts if not (p.reports[task].get("shard") or {}).get("end")]
    if missing_info:
        raise FtcotError(
            f"ftcot merge: {missing_info[0].folder} is not a part of a sharded run ({task}'s yield report names no "
            "--num_shards part): give the folders of `ftcot teach --num_shards N --shard_index I` runs."
        )
    shards = {id(p): p.reports[task]["shard"] for p in parts}
    totals = {s["questions"] for s in shards.values()}
    if len(totals) > 1:
        a, b = sorted({s["questions"]: p for p in parts for s in [shards[id(p)]]}.items())[:2]
        raise FtcotError(
            f"ftcot merge: the parts taught different question sets of {task} ({a[0]} questions in {a[1].folder}, "
            f"{b[0]} in {b[1].folder}: another --limit, --split or data): re-run the odd part with the others' flags."
        )
    counts = {s.get("num_shards") for s in shards.values()}
    if len(counts) > 1:
        shown = ", ".join(str(c) for c in sorted(counts, key=str))
        raise FtcotError(f"ftcot merge: the parts of {task} were cut into different numbers of parts (--num_shards "
                         f"{shown}): merge the parts of one run.")  # fmt: skip
    ordered = sorted(parts, key=lambda p: (shards[id(p)]["start"], shards[id(p)]["end"]))
    total, at = totals.pop(), 0
    for prev, part in zip([None, *ordered], ordered, strict=False):
        s = shards[id(part)]
        if s["start"] < at:
            what = "given twice" if prev is not None and shards[id(prev)] == s else "overlapping"
            raise FtcotError(
                f"ftcot merge: {part.describe(task)} and {prev.describe(task)} are {what} (both teach questions "
                f"{s['start'] + 1}-{min(s['end'], at)} of {task}): give each part once."
            )
        if s["start"] > at:
            raise FtcotError(f"ftcot merge: {task}'s questions {at + 1}-{s['start']} of {total} are in no part given"
                             f"{_missing(ordered, shards, at)}: teach it (the same command with that --shard_index) "
                             "and give its folder too.")  # fmt: skip
        at = s["end"]
    if at != total:
        raise FtcotError(f"ftcot merge: {task}'s questions {at + 1}-{total} of {total} are in no part given"
                         f"{_missing(ordered, shards, at)}: teach it (the same command with that --shard_index) and "
                         "give its folder too.")  # fmt: skip
    return ordered


def _missing(parts: Sequence[Part], shards: dict[int, dict[str, Any]], at: int) -> str:
    """`` (part 2 of 3 is missing)`` when the parts are numbered."""
    first = shards[id(parts[0])]
    if first.get("num_shards") is None:
        return ""
    have = {shards[id(p)]["index"] for p in parts}
    gone = [str(i) for i in range(first["num_shards"]) if i not in have]
    return f" (part {', '.join(gone)} of {first['num_shards']} missing)" if gone else ""


def _stream(files: Sequence[Path], target: Path, sample_every: int | None = None) -> Any:
    """The rows of ``files`` (Parquet), in order, as one memory-mapped ``datasets.Dataset`` written to ``target`` (an
    Arrow stream file) a record batch at a time: the rows never sit in memory together. With ``sample_every``, every
    such row's ``sample_index`` and ``rationale`` are kept aside as they go by, as ``augment`` samples a run's rows
    for the decontamination check (read back from the memory map, they would stay resident)."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(files[0])
    seen, sample = 0, []
    with pa.OSFile(str(target), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for path in files:
            source = pq.ParquetFile(path)
            if not source.schema_arrow.equals(schema, check_metadata=False):
                raise FtcotError(f"ftcot merge: {path} has other columns than {files[0]} ({source.schema_arrow.names} "
                                 f"vs {schema.names}): the parts were not taught alike.")  # fmt: skip
            for batch in source.iter_batches(batch_size=4096):
                writer.write_batch(batch.cast(schema) if batch.schema != schema else batch)
                if sample_every:
                    first = (-seen) % sample_every
                    picked = batch.select(["sample_index", "rationale"]).slice(first).to_pydict()
                    sample += [{"sample_index": i, "rationale": r} for i, r in
                               zip(picked["sample_index"][::sample_every], picked["rationale"][::sample_every],
                                   strict=True)]  # fmt: skip
                seen += batch.num_rows
    data = datasets.Dataset.from_file(str(target))
    setattr(data, SHARDS_ATTRIBUTE, [str(target)])  # saved as one run's rows are: streamed, in the same row groups
    if sample_every:
        setattr(data, SAMPLE_ATTRIBUTE, sample)
    return data


def sum_reports(reports: Sequence[dict[str, Any]]) -> YieldReport:
    """One report from the parts' (``yield_report.json`` entries): counts, tokens, ledger and cost added up."""
    parts = [YieldReport.from_dict(r) for r in reports]
    out = YieldReport.from_dict(reports[0])
    for f in fields(YieldReport):
        values = [getattr(p, f.name) for p in parts]
        if f.name in FIRST or f.name in ("decontamination", "stages", "shard", "filters"):
            continue
        if f.name == "stopped":
            out.stopped = "; ".join(dict.fromkeys(v for v in values if v)) or None
        elif all(v is None for v in values):
            setattr(out, f.name, None)
        elif all(isinstance(v, int | float | type(None)) for v in values):
            setattr(out, f.name, sum(v or 0 for v in values))
    stages: dict[str, dict[str, int]] = {}
    for p in parts:
        for stage, counts in p.stages.items():
            into = stages.setdefault(stage, {})
            for key, value in counts.items():
                into[key] = into.get(key, 0) + value
    out.stages = stages
    out.filters = {}
    for p in parts:  # each part ran the same filters: the rows each removed add up
        for name, count in p.filters.items():
            out.filters[name] = out.filters.get(name, 0) + count
    out.shard = None
    out.decontamination = _sum_decontamination([p.decontamination for p in parts])
    return out


def _sum_decontamination(parts: Sequence[dict[str, Any] | None]) -> dict[str, Any] | None:
    """The parts' train/test overlap added up (each part checked its own questions against the whole test split);
    the rationale check is redone over the merged rows (:func:`_recheck_rationales`), as one run samples them."""
    if not parts or any(p is None for p in parts):
        return None
    from ftcot_hf.teach.decontamination import MAX_PAIRS

    out = dict(parts[0])
    for key in ("n_train", "exact", "ngram_overlap", "near_duplicates"):
        out[key] = sum(p[key] for p in parts)
    out["exact_pairs"] = [pair for p in parts for pair in p["exact_pairs"]][:MAX_PAIRS]
    return out


def _recheck_rationales(report: YieldReport, task: Any, train: Any, test: Any) -> None:
    if not report.decontamination:
        return
    from ftcot_hf.teach.decontamination import MAX_RATIONALES_CHECKED, decontamination_report

    sample = getattr(train, SAMPLE_ATTRIBUTE, None)
    checked = decontamination_report(task, dataset={"train": test.select([]), "test": test},
                                     rationales=sample if sample is not None else train,
                                     rationales_total=train.num_rows if sample is not None else None,
                                     ngram=report.decontamination["ngram"],
                                     max_rationales=MAX_RATIONALES_CHECKED)  # fmt: skip
    report.decontamination["rationales"] = (checked.get("rationales") or {}).get("count", 0)


def merged_config(part: Part, output_dir: str | os.PathLike, repo_id: str | None, lock_timeout: float) -> Any:
    """The ``TeachConfig`` of the one run the parts make: the first part's (as its folder recorded it), whole."""
    from ftcot_hf.teach.cli import TeachConfig

    recorded = part.meta.get("config") or {}
    names = {f.name for f in fields(TeachConfig) if f.init}
    values = {k: v for k, v in recorded.items() if k in names}
    values.update(num_shards=1, shard_index=0, output_dir=str(output_dir), lock_timeout=lock_timeout)
    if repo_id is not None:
        values["repo_id"] = repo_id
    return TeachConfig(**values)


def merge_rationales(
    folders: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    *,
    repo_id: str | None = None,
    lock_timeout: float = 600.0,
) -> tuple[Path, list[YieldReport]]:
    """Merge the parts in ``folders`` (any order) into ``output_dir``; returns it and the summed reports.

    Raises:
        FtcotError: a folder that is not a part, parts of different settings or question sets, a part missing,
            given twice or overlapping another, different test splits.
    """
    from datasets import DatasetDict

    from ftcot_hf.teach.card import folder_tasks
    from ftcot_hf.teach.folder import save_rationales

    if not folders:
        raise FtcotError("ftcot merge: give the folders of the parts to merge (ftcot merge DIR... --output_dir OUT).")
    seen: dict[Path, str] = {}
    for folder in folders:
        real = Path(folder).resolve()
        if real in seen:
            raise FtcotError(f"ftcot merge: {folder} is given twice ({seen[real]} and {folder}): give each part once.")
        seen[real] = str(folder)
    parts = [read_part(f) for f in folders]
    out = Path(os.path.abspath(output_dir))
    if out.resolve() in seen:
        raise FtcotError(f"ftcot merge: --output_dir {out} is one of the parts: choose another folder.")
    names = list(dict.fromkeys(name for p in parts for name in p.reports))
    for name in names:
        lacking = [p for p in parts if name not in p.reports or name not in p.configs]
        if lacking:
            raise FtcotError(
                f"ftcot merge: {lacking[0].folder} has no rows of {name} (its teacher requests failed, or it was "
                f"taught without it): re-run that part's `ftcot teach` (the same command) until it has them."
            )
        _check_settings(parts, name)
    tasks = folder_tasks(parts[0].meta, names)
    config = merged_config(parts[0], out, repo_id, lock_timeout)
    work = out.with_name(out.name + ".merging")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        results, reports = {}, []
        for task in tasks:
            ordered = _ordered(parts, task.name)
            train_files = [f for p in ordered for f in p.files(task.name, "train")]
            tests = {tuple(f.name for f in p.files(task.name, "test")) for p in ordered}
            if len(tests) > 1:
                raise FtcotError(f"ftcot merge: the parts of {task.name} hold different test splits "
                                 f"({', '.join(sorted(map(str, tests)))}): they were taught from different data; "
                                 "re-teach the odd part.")  # fmt: skip
            first = ordered[0].reports[task.name]
            taught = sum((p.reports[task.name].get("shard") or {}).get("end", 0)
                         - (p.reports[task.name].get("shard") or {}).get("start", 0) for p in ordered)  # fmt: skip
            every = max(1, -(-(taught or first["questions"]) * first["degree"] // RATIONALE_SAMPLE))  # as one run
            splits = {"train": _stream(train_files, work / f"{task.name}-train.arrow", every)}
            test_files = ordered[0].files(task.name, "test")
            if test_files:
                splits["test"] = _stream(test_files, work / f"{task.name}-test.arrow")
            report = sum_reports([p.reports[task.name] for p in ordered])
            if "test" in splits:
                _recheck_rationales(report, task, splits["train"], splits["test"])
            results[task.name] = DatasetDict(splits)
            reports.append(report)
            logger.info("%s: %d parts, %d rows", task.name, len(ordered), splits["train"].num_rows)
        saved = save_rationales(config, results, reports, tasks)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the rows stay readable through their memory maps until dropped
    return saved, reports


def part_caches(parts: Sequence[Part]) -> list[Path]:
    """The request caches the parts wrote by default (``teacher_cache.shard-I-of-N.sqlite`` beside the default
    cache, :func:`ftcot_hf.teach.cache_path`)."""
    from ftcot_hf.teach.cli import shard_cache_file

    found: dict[Path, None] = {}
    for part in parts:
        for report in part.reports.values():
            s = report.get("shard") or {}
            if s.get("index") is not None:
                found[shard_cache_file(default_cache_path(), s["index"], s["num_shards"])] = None
    return list(found)


def merge_caches(sources: Sequence[str | os.PathLike], target: str | os.PathLike | None = None) -> dict[str, int]:
    """Copy every request of the ``sources`` caches into ``target`` (default: the default cache). The caches are
    content-addressed (a key is the request itself), so a row either is new there, or is the same request: its
    samples are merged index by index, those already in ``target`` kept. Returns counts (``added``, ``merged``,
    ``unreadable``: rows skipped as a damaged cache's are)."""
    for source in sources:
        if not Path(source).is_file():
            raise FtcotError(f"ftcot merge --cache: no request cache at {source}: give the parts' cache files "
                             "(--cache FILE...) where they are now.")  # fmt: skip
    cache = RequestCache(target)
    conn = cache._conn()
    counts = {"added": 0, "merged": 0, "unreadable": 0}
    for source in sources:
        if Path(source).resolve() == cache.path.resolve():
            continue
        try:
            conn.execute("ATTACH DATABASE ? AS part", (str(source),))
            conn.execute("BEGIN IMMEDIATE")
            # the same request in both: samples merged in Python (few rows); every other row copied by SQLite
            both = conn.execute("SELECT p.key, p.samples, m.samples FROM part.requests p JOIN main.requests m "
                                "ON p.key = m.key WHERE p.samples != m.samples").fetchall()  # fmt: skip
            for key, theirs, ours in both:
                a, b = decode_row(theirs), decode_row(ours)
                if a is None:
                    counts["unreadable"] += 1
                    continue
                samples = merge(a, 0, b or [])
                conn.execute("UPDATE main.requests SET n = ?, samples = ? WHERE key = ?",
                             (sum(g is not None for g in samples), _encode(samples), key))  # fmt: skip
                counts["merged"] += 1
            added = conn.execute("INSERT INTO main.requests SELECT key, n, samples FROM part.requests WHERE true "
                                 "ON CONFLICT (key) DO NOTHING").rowcount  # fmt: skip
            counts["added"] += max(added, 0)
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise FtcotError(f"ftcot merge --cache: {source} cannot be read as a request cache ({e}): run `ftcot "
                             f"cache repair --cache_dir {source}` first.") from None  # fmt: skip
        finally:
            try:
                conn.execute("DETACH DATABASE part")
            except sqlite3.Error:
                pass
    cache.close()
    return counts
