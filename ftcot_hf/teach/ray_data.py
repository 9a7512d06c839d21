"""Teaching on a Ray cluster: :class:`RayRationaleAugmenter`, the :class:`~ftcot_hf.RationaleAugmenter` of
``ftcot teach`` as a ``ray.data.Dataset.map_batches`` callable class.

Each actor builds its own teacher once (a vLLM engine on its GPU, a transformers model, or an HTTP client of a
server URL) and its own request cache file, and teaches each batch of questions it is given exactly as ``ftcot
teach --num_shards`` teaches a part: the batch's questions (contiguous positions of the taught split) become a
rationale folder ``<output_dir>/part-<start>-<end>`` recording its range, which ``ftcot merge`` reads like the parts
of a sharded run, into the dataset one ``ftcot teach`` would have written.

Why positions, not the records, go through Ray: Ray's batch formats (numpy, pandas, pyarrow) change types (a list
column, a nullable int); each actor reads the records from the task's own source, so a question is taught from
the same record as on one machine. Why a cache file per actor slot (``teacher_cache.ray-slot-003.sqlite``, claimed
with a file lock, the same slots on a re-run): actors on many machines never write one SQLite file together, and a
re-run of the job finds what the last one cached (an actor first merges in the other slots' rows).

    ray.data.range(n).map_batches(RayRationaleAugmenter, fn_constructor_kwargs={"config": teach_config,
        "output_dir": "parts"}, batch_size=256, concurrency=4)

``n``: :func:`questions` (the number of questions the config teaches). Then ``ftcot merge parts/part-* --output_dir
OUT --cache parts-caches...``. Needs ``pip install 'ftcot-hf[ray]'``.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
from pathlib import Path
from typing import Any

from ftcot_hf.errors import FtcotError

logger = logging.getLogger(__name__)

POSITION_COLUMNS = ("position", "id")
"""The column of a batch holding question positions: ``position``, or ``id`` (what ``ray.data.range`` makes)."""


def _config(config: Any) -> Any:
    from ftcot_hf.teach.cli import TeachConfig

    if isinstance(config, TeachConfig):
        return config
    if isinstance(config, dict):
        return TeachConfig(**config)
    kind = type(config).__name__
    raise FtcotError(f"RayRationaleAugmenter takes a TeachConfig (or its fields as a dict), not {kind}.")


def _task(config: Any) -> Any:
    tasks = config.resolve_tasks()
    if len(tasks) != 1:
        raise FtcotError(f"RayRationaleAugmenter teaches one task per dataset; the config names {len(tasks)} "
                         f"({', '.join(t.name for t in tasks)}): map one Ray dataset per task.")  # fmt: skip
    return tasks[0]


def questions(config: Any) -> int:
    """How many questions ``config`` teaches (its split, after ``--limit``): the ``n`` of ``ray.data.range(n)``."""
    from ftcot_hf.teach.cli import _taught

    config = _config(config)
    task = _task(config)
    records = task.load(data_dir=config.data_dir)
    if config.split not in records:
        raise FtcotError(f"{task.name} has no {config.split!r} split here (available: {', '.join(records)}).")
    return _taught(config, records[config.split]).num_rows


def claim_slot(cache: Path) -> tuple[Path, Any]:
    """The first slot file beside ``cache`` (``<stem>.ray-slot-000<suffix>``, ...) that no live actor holds, and
    the open lock file holding it for this process's lifetime (the kernel lets go of it when the process dies)."""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FtcotError(f"Cannot create the folder of the request cache {cache} ({e.strerror or e}): give a "
                         "writable cache_dir.") from None  # fmt: skip
    for slot in range(10_000):
        path = cache.with_name(f"{cache.stem}.ray-slot-{slot:03d}{cache.suffix}")
        handle = open(path.with_name(path.name + ".lock"), "a")  # noqa: SIM115 -- held until the actor ends
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        return path, handle
    raise FtcotError(f"No free request cache slot beside {cache} (10,000 held): give another cache_dir.")


def slot_files(cache: Path) -> list[Path]:
    """Every slot file of ``cache`` (what ``ftcot merge --cache`` takes after a Ray job)."""
    return sorted(cache.parent.glob(f"{cache.stem}.ray-slot-*{cache.suffix}"))


def _runs(positions: list[int]) -> list[tuple[int, int]]:
    """``[start, end)`` runs of consecutive positions (a batch is one run when Ray keeps the order)."""
    runs: list[tuple[int, int]] = []
    for p in sorted(set(positions)):
        if runs and runs[-1][1] == p:
            runs[-1] = (runs[-1][0], p + 1)
        else:
            runs.append((p, p + 1))
    return runs


class RayRationaleAugmenter:
    """A ``map_batches`` callable class: each actor one teacher and one cache slot; each batch of question
    positions taught into ``<output_dir>/part-<start>-<end>`` folders (one per run of consecutive positions).

    Args:
        config: the :class:`~ftcot_hf.teach.TeachConfig` (or its fields as a dict) of the one ``ftcot teach`` this
            job stands for (one task; ``num_shards`` left at 1: the batches are the parts).
        output_dir: where the part folders go (shared storage the merging machine reads).

    Returns per batch one row per part written: ``part`` (its folder), ``start``, ``end``, ``kept``,
    ``failed_requests`` (a part with failed requests has its folder too; re-running the job asks only those again).
    """

    def __init__(self, config: Any, output_dir: str | os.PathLike):
        from ftcot_hf.teach.cli import cache_path
        from ftcot_hf.teach.merge import merge_caches
        from ftcot_hf.teachers import build_teacher
        from ftcot_hf.teachers.cache import default_cache_path

        self.config = _config(config)
        if self.config.num_shards != 1:
            raise FtcotError("RayRationaleAugmenter: leave num_shards at 1 (Ray's batches are the parts).")
        self.task = _task(self.config)
        self.output_dir = Path(os.path.abspath(output_dir))
        base = Path(cache_path(self.config) or default_cache_path())
        self.cache_file, self._lock = claim_slot(base)
        others = [f for f in slot_files(base) if f != self.cache_file]
        if others:  # a re-run: what any slot cached is served here too
            merge_caches(others, self.cache_file)
        self.teacher = build_teacher(self.config, [self.task])
        logger.info("Ray actor %d: teacher %s, cache %s", os.getpid(), self.config.teacher, self.cache_file)

    def __call__(self, batch: Any) -> dict[str, list]:
        from ftcot_hf.teach.cli import TeachIncompleteError, remove_partial, teach
        from ftcot_hf.teach.folder import save_rationales

        column = next((c for c in POSITION_COLUMNS if c in batch), None)
        if column is None:
            names = " or ".join(POSITION_COLUMNS)
            raise FtcotError(f"RayRationaleAugmenter takes batches of question positions (a {names} column: "
                             f"ray.data.range(n)); this batch has {', '.join(batch)}.")  # fmt: skip
        out: dict[str, list] = {"part": [], "start": [], "end": [], "kept": [], "failed_requests": []}
        for start, end in _runs([int(p) for p in batch[column]]):
            folder = self.output_dir / f"part-{start:09d}-{end:09d}"
            part_config = dataclasses.replace(self.config, output_dir=str(folder), cache_dir=str(self.cache_file))
            try:
                results, reports = teach(part_config, tasks=[self.task], teacher=self.teacher, part=(start, end))
            except TeachIncompleteError as e:  # saved as `ftcot teach` saves it; a re-run asks only what failed
                results, reports = e.results, e.reports
            if results:
                save_rationales(part_config, results, reports, [self.task])
            remove_partial(results)
            out["part"].append(str(folder))
            out["start"].append(start)
            out["end"].append(end)
            out["kept"].append(sum(r.kept for r in reports))
            out["failed_requests"].append(sum(r.failed_requests for r in reports))
        return out

    def __del__(self) -> None:
        teacher = getattr(self, "teacher", None)
        if teacher is not None:
            teacher[0].close()
