"""``ftcot teach``: teach one or more tasks with a teacher and save the rationale dataset (Parquet + card)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ftcot_hf.augment import RationaleAugmenter, YieldReport, augment
from ftcot_hf.errors import FtcotError
from ftcot_hf.tasks import Task, resolve_task
from ftcot_hf.tasks.args import TaskDatasetArgs
from ftcot_hf.teachers import build_teacher
from ftcot_hf.teachers.cache import CachedTeacher

logger = logging.getLogger(__name__)


@dataclass
class TeachConfig(TaskDatasetArgs):
    """Configuration of ``ftcot teach``.

    Parameters that choose the data:
        tasks, split, limit, data_dir; or your own dataset: dataset, question_column, answer_column, answer_type,
        task_name, choices_column, dataset_config, train_split, test_split, test_size, split_seed, skip_bad_rows
    Parameters that choose the teacher:
        teacher, model, base_url, teacher_kwargs, max_concurrency, replay_file, cache_dir
    Parameters of Zero-shot-CoT and the filter:
        degree, temperature, trigger, keep, mode, resample_until, max_extra_samples, annotations
    """

    tasks: list[str] = field(default_factory=lambda: ["coin_flip"], metadata={"help": "Task names to teach."})
    teacher: str = field(
        default="text-davinci-002",
        metadata={
            "help": "A backend (replay, transformers, openai) or a preset: 'text-davinci-002' replays the recorded "
            "Zero-shot-CoT completions of Kojima et al. (with their task-specific answer triggers)."
        },
    )
    model: str | None = field(
        default=None, metadata={"help": "transformers: Hub id or folder; openai: the served model name."}
    )
    base_url: list[str] | None = field(
        default=None, metadata={"help": "openai: one or more base URLs (a fleet of OpenAI-compatible servers)."}
    )
    teacher_kwargs: dict | str | None = field(
        default=None,
        metadata={
            "help": "Backend options as JSON (as TRL's model_init_kwargs), e.g. '{\"supports_n\": false, "
            '"extra_body": {"repeat_penalty": 1.0}}\' for openai.'
        },
    )
    max_concurrency: int | None = field(
        default=None, metadata={"help": "openai: requests in flight at most (default 16)."}
    )
    replay_file: str | None = field(
        default=None, metadata={"help": "replay: a JSONL recording (ftcot format) or reference completion-data JSON."}
    )
    degree: int = field(default=1, metadata={"help": "D, rationales sampled per question (1-64)."})
    temperature: float | None = field(
        default=None, metadata={"help": "Sampling temperature (default 0.7 when D > 1, greedy when D = 1)."}
    )
    trigger: str | None = field(
        default=None,
        metadata={
            "help": "Stage-2 trigger style: 'generic' (the paper) or 'kojima' (default for the recorded teacher)."
        },
    )
    keep: str = field(default="correct", metadata={"help": "'correct' (the paper's filter) or 'all'."})
    mode: str = field(default="paper", metadata={"help": "Answer parsing for the filter: 'paper' or 'robust'."})
    resample_until: int | None = field(
        default=None, metadata={"help": "Sample more for questions with fewer than this many correct rationales."}
    )
    max_extra_samples: int = field(default=0, metadata={"help": "Budget of extra samples for resample_until."})
    annotations: bool = field(
        default=False, metadata={"help": "Also ask for 'fundamentals' and 'common_errors' (Teacher-LM style)."}
    )
    split: str = field(default="train", metadata={"help": "Which split to teach (the paper teaches train)."})
    limit: int | None = field(default=None, metadata={"help": "Teach only the first N questions (quick runs)."})
    data_dir: str | None = field(default=None, metadata={"help": "Offline mirror (default: $FTCOT_DATA_MIRROR)."})
    cache_dir: str | None = field(
        default=None,
        metadata={"help": "Teacher request cache file (default: $HF_HOME/ftcot/teacher_cache.sqlite)."},
    )
    output_dir: str = field(default="outputs/rationales", metadata={"help": "Where the dataset repo is written."})
    repo_id: str = field(default="<user>/ftcot-rationales", metadata={"help": "Repo id shown in the card."})

    NOT_FINGERPRINTED: ClassVar[frozenset[str]] = frozenset(
        {"max_concurrency", "data_dir", "cache_dir", "output_dir", "repo_id", "base_url"}
    )
    """Fields that do not change what the teach stage produces (``ftcot run`` leaves them out of its fingerprint).
    ``base_url`` among them: the served model is named by ``model``, and the request cache (keyed on the model and
    the prompt, not the server) already serves a fleet or a restarted server the same samples."""

    def __post_init__(self) -> None:
        if isinstance(self.tasks, str):
            self.tasks = [self.tasks]
        if isinstance(self.base_url, str):
            self.base_url = [self.base_url]
        self.teacher_kwargs = parse_kwargs(self.teacher_kwargs, "teacher_kwargs")

    def resolve_tasks(self) -> list[Task]:
        """The tasks to teach: the one ``--dataset`` defines, else the registered tasks named by ``--tasks``."""
        custom = self.custom_task()
        return [custom] if custom is not None else [resolve_task(t) for t in self.tasks]


def parse_kwargs(value: dict | str | None, name: str) -> dict[str, Any]:
    """A JSON object given on the command line (or a dict from YAML/Python) -> dict."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return dict(value)
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as e:
        raise FtcotError(f"--{name} is not valid JSON ({e.msg} at character {e.pos}): {value!r}.") from None
    if not isinstance(parsed, dict):
        raise FtcotError(f"--{name} must be a JSON object ({{...}}), not {value!r}.")
    return parsed


def teach(
    config: TeachConfig, *, tasks: Sequence[Task] | None = None, progress: bool = False
) -> tuple[dict[str, Any], list[YieldReport]]:
    """Teach every task of ``config`` (or ``tasks``, already resolved); returns {task name: DatasetDict(train=
    rationales, test=task test)} and the yield reports."""
    tasks = list(tasks) if tasks is not None else config.resolve_tasks()
    records_of = {
        task.name: task.load(data_dir=config.data_dir) for task in tasks
    }  # bad data fails before the teacher
    teacher, trigger = build_teacher(config, tasks)
    cached = CachedTeacher(teacher, config.cache_dir)
    results, reports = {}, []
    try:
        for task in tasks:
            records = records_of[task.name]
            if config.split not in records:
                raise FtcotError(f"{task.name} has no {config.split!r} split here (available: {', '.join(records)}).")
            data = records[config.split]
            if config.limit:
                data = data.select(range(min(config.limit, data.num_rows)))
            augmenter = RationaleAugmenter(
                cached,
                task,
                degree=config.degree,
                temperature=config.temperature,
                trigger=trigger,
                mode=config.mode,
                resample_until=config.resample_until,
                max_extra_samples=config.max_extra_samples,
                annotations=config.annotations,
                progress=progress,
            )
            kept, report = augment(data, augmenter, keep=config.keep)
            reports.append(report)
            from datasets import DatasetDict

            results[task.name] = DatasetDict(
                {"train": kept, **({"test": records["test"]} if "test" in records else {})}
            )
            logger.info("%s: %d calls, %d cache hits so far", task.name, cached.calls, cached.cache_hits)
    finally:
        cached.close()
    return results, reports


def save_rationales(
    config: TeachConfig, results: dict[str, Any], reports: list[YieldReport], tasks: Sequence[Task] | None = None
) -> Path:
    """Write the rationale dataset repo (one config per task) with its card and a yield_report.json.

    ``yield_report.json`` also records each user-dataset task's definition (``tasks``), so a later command reading
    the folder (``ftcot train``/``eval``/``push``) rebuilds the same :class:`Task` without the source dataset.
    """
    from ftcot_hf.export import write_parquet_configs
    from ftcot_hf.hub import render_dataset_card, scrub_config

    by_name = {t.name: t for t in (tasks or [])}
    task_objs = [by_name.get(name) or resolve_task(name) for name in results]
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    _, configs = write_parquet_configs(out, results)
    card = render_dataset_card(task_objs, repo_id=config.repo_id, teach_config=config, reports=reports,
                               configs=configs)  # fmt: skip
    card.save(out / "README.md")
    meta = {
        "config": scrub_config(asdict(config)),
        "reports": [r.to_dict() for r in reports],
        "tasks": {t.name: t.to_dict() for t in task_objs if not t.builtin},
    }
    (out / "yield_report.json").write_text(json.dumps(meta, indent=2, default=str))
    logger.info("Wrote %s (%d configs)", out, len(configs))
    return out


def cli_main(argv: list[str]) -> int:
    """`ftcot teach`: flags and `--config teach.yaml` come from TeachConfig through TrlParser."""
    from trl import TrlParser

    parser = TrlParser((TeachConfig,), prog="ftcot teach")
    (config,) = parser.parse_args_and_config(argv)
    tasks = config.resolve_tasks()
    results, reports = teach(config, tasks=tasks, progress=True)
    out = save_rationales(config, results, reports, tasks)
    print(YieldReport.markdown(reports))
    print(f"\nSaved to {out}; load with: load_dataset({str(out)!r}, {tasks[0].name!r})")
    return 0
