"""The rationale dataset folder that ``ftcot teach`` writes (:func:`save_rationales`): one Parquet config per task,
the card and ``yield_report.json``, built beside the old folder and swapped in under a lock, merged with the tasks
already there."""

from __future__ import annotations

import errno
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar, Protocol

from ftcot_hf.errors import FtcotError
from ftcot_hf.tasks import Task, resolve_task
from ftcot_hf.teach.card import folder_tasks, parquet_rows, render_dataset_card, scrub_config
from ftcot_hf.teach.yields import YieldReport
from ftcot_hf.utils.console import quiet_libraries
from ftcot_hf.utils.export import write_parquet_configs
from ftcot_hf.utils.fs import DirLockTimeout, atomic_dir, dir_lock, link_tree
from ftcot_hf.utils.scrub import redact
from ftcot_hf.utils.shards import discard_staged

logger = logging.getLogger(__name__)


class FolderConfig(Protocol):
    """What writing a rationale folder reads of its ``TeachConfig`` (a dataclass: its fields are also the config the
    card and ``yield_report.json`` record)."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def output_dir(self) -> str: ...
    @property
    def lock_timeout(self) -> float: ...
    @property
    def repo_id(self) -> str: ...
    @property
    def tasks(self) -> list[str]: ...
    @property
    def task_name(self) -> str | None: ...


def save_rationales(
    config: FolderConfig, results: dict[str, Any], reports: list[YieldReport], tasks: Sequence[Task] | None = None
) -> Path:
    """Write the rationale dataset repo (one config per task) with its card and a yield_report.json.

    The folder is built beside ``output_dir`` and swapped in only when complete
    (:func:`~ftcot_hf.utils.fs.atomic_dir`), under a lock on it (:func:`~ftcot_hf.utils.fs.dir_lock`: a second
    writer waits up to ``config.lock_timeout`` seconds). So a failure (a full disk) leaves the previous folder as it
    was, and two ``ftcot teach`` on one folder take turns. When ``output_dir`` already holds a rationale dataset, its
    other tasks stay: the taught tasks are added, or replace their earlier version (configs, yield reports and task
    definitions are merged). Other files in the folder are carried over.

    ``yield_report.json`` also records each user-dataset task's definition (``tasks``), so a later command reading
    the folder (``ftcot train``/``eval``/``push``) rebuilds the same :class:`Task` without the source dataset, and the
    (scrubbed) teach config that produced each task (``task_configs``; ``config`` is the latest run's).

    Raises:
        FtcotError: ``output_dir`` is a file, another writer held it longer than ``lock_timeout``, the disk is full,
            or the folder holds a rationale dataset whose card or yield_report.json cannot be read.
    """
    out = check_output_dir(config)
    saved = _save(config, results, reports, tasks, out)
    # the rows staged while teaching (.<output_dir>.partial-*) are in the folder now; after a failed save they stay
    # for another try (removed at exit, or by a later run once this process is gone)
    discard_staged(split for dataset_dict in results.values() for split in dataset_dict.values())
    return saved


def _save(
    config: FolderConfig, results: dict[str, Any], reports: list[YieldReport], tasks: Sequence[Task] | None, out: Path
) -> Path:
    try:
        with dir_lock(out, timeout=config.lock_timeout):
            previous = _previous_dataset(out)
            with atomic_dir(out) as tmp, quiet_libraries():  # no "Creating parquet from Arrow format" bars
                configs = _write_rationales(tmp, config, results, reports, tasks, previous, out)
    except DirLockTimeout as e:
        raise FtcotError(
            f"Another process is writing {out} ({e.holder}): waited {e.timeout:g} s for it. Wait for it to finish "
            f"and re-run (the teacher's replies are cached), raise --lock_timeout, or choose another --output_dir; "
            f"if no `ftcot teach` is running, delete {e.lock_file}."
        ) from None
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            what = "A file went over the size limit" if e.errno == errno.EFBIG else "The disk is full"
            raise FtcotError(
                f"{what} ({os.strerror(e.errno)}) while saving the rationale dataset to {out}: nothing was written "
                "and the folder is unchanged. Free some space (or choose another --output_dir) and re-run: the "
                "teacher's replies are cached."
            ) from None
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise FtcotError(
                f"Cannot write the rationale dataset to {out} ({os.strerror(e.errno)}: {e.filename}): choose a "
                "writable --output_dir (the folder and its parent must be writable)."
            ) from None
        raise
    logger.info("Wrote %s (%d configs)", out, len(configs))
    return out


def check_output_dir(config: FolderConfig) -> Path:
    """``config.output_dir`` as an absolute path, refused when it is a file (checked before teaching, and again
    before writing)."""
    out = Path(os.path.abspath(config.output_dir))
    if out.exists() and not out.is_dir():
        raise FtcotError(f"--output_dir {out} is a file, not a folder: choose a folder (it is created if missing).")
    taught = {config.task_name} if getattr(config, "dataset", None) else set(config.tasks)
    _check_parquet_files(out, taught)
    return out


def _check_parquet_files(out: Path, taught: set[str]) -> None:
    """The Parquet files of a rationale dataset already in ``out`` that are kept beside the ``taught`` tasks (whose
    own are replaced) are readable: a damaged one fails here, named, before any teaching (pyarrow's "magic bytes not
    found", when the card is written after teaching, names no file)."""
    import pyarrow.parquet as pq

    for parquet in sorted(out.glob("*/*.parquet")) if out.is_dir() else []:
        if parquet.parent.name in taught:
            continue
        try:
            pq.read_metadata(parquet)
        except Exception as e:  # noqa: BLE001 -- ArrowInvalid, OSError...: the file is unusable either way
            raise FtcotError(
                f"{parquet} is not a readable Parquet file ({' '.join(str(e).split())[:160]}): the rationale dataset "
                f"in {out} is damaged. Move it away (or delete the {parquet.parent.name} folder in it to drop that "
                "task), or choose another --output_dir."
            ) from None


def _previous_dataset(out: Path) -> dict[str, Any] | None:
    """The rationale dataset already in ``out`` (its README ``configs`` and yield_report.json), or None when ``out``
    holds none (absent, empty, or without both files: nothing to merge)."""
    readme, report = out / "README.md", out / "yield_report.json"
    if not (readme.is_file() and report.is_file()):
        return None
    from huggingface_hub import DatasetCard

    try:
        meta = json.loads(report.read_text(encoding="utf-8"))
        configs = DatasetCard.load(readme).data.to_dict().get("configs") or []
    except Exception as e:  # noqa: BLE001 -- a malformed file of any kind: say which folder, refuse to overwrite it
        reason = " ".join(str(e).split())  # one line (YAML errors span several)
        raise FtcotError(
            f"{out} holds a rationale dataset whose README.md or yield_report.json cannot be read ({reason}); its "
            "tasks would be lost: move the folder away (or delete it), or choose another --output_dir."
        ) from None
    if isinstance(meta, list):  # an older yield_report.json: the reports alone
        meta = {"reports": meta}
    return {"configs": configs, "meta": meta}


def _write_rationales(
    tmp: Path,
    config: FolderConfig,
    results: dict[str, Any],
    reports: list[YieldReport],
    tasks: Sequence[Task] | None,
    previous: dict[str, Any] | None,
    out: Path,
) -> list[dict[str, Any]]:
    """Write the folder into ``tmp`` (the new tasks, and what ``previous`` keeps); returns the README configs."""
    by_name = {t.name: t for t in (tasks or [])}
    new_tasks = {name: by_name.get(name) or resolve_task(name) for name in results}
    scrubbed = scrub_config(asdict(config))
    old_configs: list[dict[str, Any]] = []
    old_meta: dict[str, Any] = {}
    if previous is not None:
        old_meta = previous["meta"]
        for entry in previous["configs"]:
            name = entry.get("config_name")
            if name in results:
                old_configs.append({"config_name": name, "retaught": True})  # replaced, in its place
                continue
            missing = [f["path"] for f in entry.get("data_files", []) if not list(out.glob(f["path"]))]
            if missing:
                logger.warning("%s: config %s lists missing files (%s); it is left out", out, name, ", ".join(missing))
                continue
            old_configs.append(entry)
    if out.is_dir():
        # Everything else of the old folder is carried over (a user's files too), except what is rewritten, the
        # re-taught tasks' folders and `ftcot run`'s stage marker (the folder's content changes: it no longer
        # vouches for it).
        link_tree(out, tmp, exclude=frozenset({"README.md", "yield_report.json", "stage.json", *results}))
    _, written = write_parquet_configs(tmp, results)
    new_configs = {c["config_name"]: c for c in written}
    configs = [new_configs.pop(c["config_name"]) if c.get("retaught") else c for c in old_configs]
    configs += list(new_configs.values())
    kept_names = [c["config_name"] for c in old_configs if not c.get("retaught")]
    old_reports = {}
    for r in old_meta.get("reports") or []:
        try:
            old_reports[r["task"]] = YieldReport.from_dict(r).to_dict()
        except (KeyError, TypeError):
            logger.warning("%s: an unreadable yield report entry is dropped: %r", out, r)
    by_task = old_reports | {r.task: r.to_dict() for r in reports}
    merged_reports = [by_task[c["config_name"]] for c in configs if c["config_name"] in by_task]
    old_task_configs = old_meta.get("task_configs") or {}
    task_configs = {n: old_task_configs.get(n, old_meta.get("config", {})) for n in kept_names}
    task_configs |= {n: scrubbed for n in results}
    known = dict(zip(kept_names, folder_tasks(old_meta, kept_names), strict=True)) | new_tasks
    task_objs = [known[c["config_name"]] for c in configs]
    card = render_dataset_card(task_objs, repo_id=config.repo_id, teach_config=config, reports=merged_reports,
                               configs=configs, num_rows=parquet_rows(tmp, configs))  # fmt: skip
    card.save(tmp / "README.md")
    meta = {
        "config": scrubbed,
        "reports": merged_reports,
        "tasks": {t.name: t.to_dict() for t in task_objs if not t.builtin},
        "task_configs": task_configs,
    }
    (tmp / "yield_report.json").write_text(json.dumps(redact(meta), indent=2, default=str))
    return configs
