"""``ftcot teach``: teach one or more tasks with a teacher and save the rationale dataset (Parquet + card)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ftcot_hf.augment import RationaleAugmenter, YieldReport, augment
from ftcot_hf.export import licenses_of, write_dataset_repo
from ftcot_hf.prompts import answer_trigger
from ftcot_hf.tasks import get_task
from ftcot_hf.tasks.builder import load_task
from ftcot_hf.teachers import build_teacher
from ftcot_hf.teachers.cache import CachedTeacher

logger = logging.getLogger(__name__)


@dataclass
class TeachConfig:
    """Configuration of ``ftcot teach``.

    Parameters that choose the data:
        tasks, split, limit, data_dir
    Parameters that choose the teacher:
        teacher, model, base_url, max_concurrency, replay_file, cache_dir
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
    max_concurrency: int = field(default=16, metadata={"help": "openai: requests in flight at most."})
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
        default=None, metadata={"help": "Teacher request cache file (default: $HF_HOME/ftcot/teacher_cache.sqlite)."}
    )
    output_dir: str = field(default="outputs/rationales", metadata={"help": "Where the dataset repo is written."})
    repo_id: str = field(default="<user>/ftcot-rationales", metadata={"help": "Repo id shown in the card."})


def teach(config: TeachConfig, *, progress: bool = False) -> tuple[dict[str, Any], list[YieldReport]]:
    """Teach every task of ``config``; returns {task: DatasetDict(train=rationales, test=task test)} and reports."""
    teacher, trigger = build_teacher(config)
    cached = CachedTeacher(teacher, config.cache_dir)
    results, reports = {}, []
    try:
        for task in config.tasks:
            records = load_task(task, data_dir=config.data_dir)
            if config.split not in records:
                raise ValueError(f"{task} has no {config.split!r} split here (available: {', '.join(records)}).")
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

            results[task] = DatasetDict({"train": kept, **({"test": records["test"]} if "test" in records else {})})
            logger.info("%s: %d calls, %d cache hits so far", task, cached.calls, cached.cache_hits)
    finally:
        cached.close()
    return results, reports


def save_rationales(config: TeachConfig, results: dict[str, Any], reports: list[YieldReport]) -> Path:
    """Write the rationale dataset repo (one config per task) with its card and a yield_report.json."""
    model = reports[0].teacher if reports else ""
    sources, licenses = [], set()
    for task in results:
        spec = get_task(task)
        for source in spec.sources.values():
            sources.append({"task": task, **vars(source), "url": source.url})
        licenses.add(spec.license)
    trigger = config.trigger or ("kojima" if config.teacher == "text-davinci-002" else "generic")
    out = write_dataset_repo(
        config.output_dir,
        results,
        template="rationale_dataset_card.md",
        card_data={
            "language": "en",
            "license": licenses_of(licenses),
            "task_categories": ["text-generation", "question-answering"],
            "pretty_name": "Fine-tune-CoT rationales",
            "tags": ["reasoning", "chain-of-thought", "fine-tune-cot", "distillation"],
        },
        pretty_name="Fine-tune-CoT rationales",
        repo_id=config.repo_id,
        teacher=model,
        backend=config.teacher,
        degree=config.degree,
        temperature=reports[0].temperature if reports else config.temperature,
        trigger=", ".join(sorted({answer_trigger(t, trigger).strip() for t in results})),
        keep=f"keep={config.keep}" + (" (parsed answer == gold answer)" if config.keep == "correct" else ""),
        mode=config.mode,
        yield_table=YieldReport.markdown(reports),
        sources=sources,
        citation=get_task(next(iter(results))).citation,
    )
    safe = {k: v for k, v in asdict(config).items() if k not in ("base_url",)} | {
        "base_url": [u.split("?")[0] for u in config.base_url or []]
    }
    (out / "yield_report.json").write_text(
        json.dumps({"config": safe, "reports": [r.to_dict() for r in reports]}, indent=2)
    )
    return out


def cli_main(argv: list[str]) -> int:
    """`ftcot teach`: flags and `--config teach.yaml` come from TeachConfig through TrlParser."""
    from trl import TrlParser

    parser = TrlParser((TeachConfig,), prog="ftcot teach")
    (config,) = parser.parse_args_and_config(argv)
    results, reports = teach(config, progress=True)
    out = save_rationales(config, results, reports)
    print(YieldReport.markdown(reports))
    print(f"\nSaved to {out}; load with: load_dataset({str(out)!r}, {config.tasks[0]!r})")
    return 0
