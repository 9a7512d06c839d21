"""``ftcot export-lm-eval``: write an lm-evaluation-harness task folder that scores a student as ``ftcot eval`` does.

    ftcot export-lm-eval lm_eval_tasks --tasks coin_flip addsub
    lm_eval --model hf --model_args pretrained=runs/coin_flip-smollm2/student/coin_flip \\
        --include_path lm_eval_tasks --tasks ftcot_coin_flip --batch_size 1

Per task the folder holds ``ftcot_<task>.yaml`` and ``ftcot_<task>.test.parquet`` (the task's test split with a
precomputed ``prompt`` column, so lm-eval runs offline); one ``utils.py`` next to them scores each completion with
ftcot's own parser (:func:`ftcot_hf.tasks.score_completion`, the one ``ftcot eval`` uses). The YAMLs are written
with the same generation settings as ``ftcot eval --format ft_cot``: the prompt ``"{question} ###"``
(:func:`ftcot_hf.students.formats.get_format`), greedy decoding, ``max_gen_toks`` = ``--max_new_tokens``, and the stop
phrase of the format (``END``: generation stops there and the text before it is scored, exactly as
:func:`ftcot_hf.students.generation.generate_completions` cuts it).

Writing the folder needs only ``datasets`` (no lm-eval); running it needs ``pip install 'ftcot-hf[lm_eval]'``, and
ftcot-hf importable where lm-eval runs (``utils.py`` imports it).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from ftcot_hf.errors import FtcotError
from ftcot_hf.students.defaults import EVAL_MAX_NEW_TOKENS
from ftcot_hf.students.formats import get_format
from ftcot_hf.tasks import BUILTIN_TASKS
from ftcot_hf.tasks.answers import MODES
from ftcot_hf.tasks.args import TaskDatasetArgs, resolve_tasks

FORMAT = "ft_cot"
PREFIX = "-->"
"""The answer prefix of the ft_cot format (``formats.ANSWER_SEP`` stripped), as ``ftcot eval`` parses."""

TASK_PREFIX = "ftcot_"
"""lm-eval task names are ``ftcot_<task>`` (they live in lm-eval's global task namespace)."""

UTILS_PY = '''"""Scoring of the ftcot-hf lm-eval tasks (written by `ftcot export-lm-eval`): ftcot's answer parser."""

from ftcot_hf.tasks.answers import make_parser, score_with_parser
from ftcot_hf.tasks import score_completion

_PARSERS = {}


def _score(doc, completion):
    if doc["ftcot_builtin"]:
        return score_completion(
            doc["ftcot_task"], completion, doc["answer"], prefix=doc["ftcot_prefix"], mode=doc["ftcot_mode"]
        )
    key = (doc["ftcot_answer_type"], doc["ftcot_choices"])
    if key not in _PARSERS:
        _PARSERS[key] = make_parser(key[0], choices=key[1])
    return score_with_parser(_PARSERS[key], completion, doc["answer"], prefix=doc["ftcot_prefix"],
                             mode=doc["ftcot_mode"])


def process_results(doc, results):
    """`acc` as `ftcot eval` computes it; `correct_format` as its `complete`-style format check."""
    scored = _score(doc, results[0])
    return {"acc": float(bool(scored["correct"])), "correct_format": float(bool(scored["correct_format"]))}


def prediction(doc, completion):
    """The parsed prediction of one completion (what `ftcot eval` writes to completions.jsonl)."""
    return _score(doc, completion)["prediction"]
'''


def _yaml_task(name: str, parquet: Path, *, max_new_tokens: int, stop: str | None) -> dict[str, Any]:
    generation: dict[str, Any] = {"do_sample": False, "temperature": 0.0, "max_gen_toks": max_new_tokens}
    generation["until"] = [stop] if stop else []
    return {
        "task": name,
        "tag": ["ftcot"],
        "dataset_path": "parquet",
        "dataset_kwargs": {"data_files": {"test": str(parquet.resolve())}},
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_text": "{{prompt}}",
        "doc_to_target": "{{answer}}",
        "num_fewshot": 0,
        "generation_kwargs": generation,
        "process_results": "!function utils.process_results",
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "correct_format", "aggregation": "mean", "higher_is_better": True},
        ],
        "metadata": {"version": 1.0, "exported_by": "ftcot export-lm-eval", "format": FORMAT},
    }


def _dump_yaml(spec: dict[str, Any]) -> str:
    import yaml

    text = yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, width=1000)
    # lm-eval's YAML loader reads `!function module.attr` tags; safe_dump writes them quoted.
    return text.replace("'!function utils.process_results'", "!function utils.process_results")


def export_task(
    task: Any,
    out: Path,
    *,
    data: Any,
    builtin: bool,
    max_new_tokens: int = EVAL_MAX_NEW_TOKENS,
    mode: str = "paper",
    limit: int | None = None,
) -> dict[str, Any]:
    """Write ``ftcot_<task>.yaml`` and its Parquet file for one :class:`~ftcot_hf.Task` and its test records."""
    from datasets import Dataset

    fmt = get_format(FORMAT)
    records = [dict(r) for r in data]
    if limit is not None:
        records = records[:limit]
    if not records:
        raise FtcotError(f"Task {task.name} has no test records to export.")
    choices = len(getattr(task.answer, "letters", "") or "") if task.has_choices else 0
    rows = []
    for i, r in enumerate(records):
        rows.append(
            {
                "sample_index": int(r.get("sample_index", i)),
                "question": r["question"],
                "answer": str(r["answer"]),
                "prompt": fmt.prompt(r),
                "ftcot_task": task.name,
                "ftcot_builtin": builtin,
                "ftcot_answer_type": task.answer.name,
                "ftcot_choices": choices,
                "ftcot_prefix": PREFIX,
                "ftcot_mode": mode,
            }
        )
    name = f"{TASK_PREFIX}{task.name}"
    parquet = out / f"{name}.test.parquet"
    Dataset.from_list(rows).to_parquet(str(parquet))
    spec = _yaml_task(name, parquet, max_new_tokens=max_new_tokens, stop=fmt.stop)
    (out / f"{name}.yaml").write_text(_dump_yaml(spec), encoding="utf-8")
    return {"task": task.name, "lm_eval_task": name, "n": len(rows), "yaml": f"{name}.yaml", "data": parquet.name}


def export_lm_eval(
    out: str | os.PathLike,
    tasks: list[Any] | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    max_new_tokens: int = EVAL_MAX_NEW_TOKENS,
    mode: str = "paper",
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Write an lm-eval task folder at ``out`` for ``tasks`` (names or :class:`~ftcot_hf.Task`; built-in or
    registered names are loaded from the sources, a Task object from its own data). Returns one entry per task."""
    if mode not in MODES:
        raise FtcotError(f"--mode {mode!r}: use one of {', '.join(MODES)}.")
    if max_new_tokens < 1:
        raise FtcotError(f"--max_new_tokens must be at least 1 (got {max_new_tokens}).")
    if limit is not None and limit < 1:
        raise FtcotError(f"--limit must be at least 1 (got {limit}).")
    resolved = resolve_tasks(tasks or ["coin_flip"])  # unknown names fail here, before any writing
    out_path = Path(out)
    try:
        out_path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FtcotError(f"Cannot create the output folder {out_path}: {e}") from None
    written = []
    for task in resolved:
        splits = task.load(data_dir=data_dir)
        if "test" not in splits:
            raise FtcotError(f"Task {task.name} has no test split (available: {', '.join(splits)}).")
        written.append(
            export_task(
                task,
                out_path,
                data=splits["test"],
                builtin=task.name in BUILTIN_TASKS,
                max_new_tokens=max_new_tokens,
                mode=mode,
                limit=limit,
            )
        )
    (out_path / "utils.py").write_text(UTILS_PY, encoding="utf-8")
    index = out_path / "ftcot_tasks.json"  # what the folder holds, over several exports into it
    try:
        previous = json.loads(index.read_text(encoding="utf-8")) if index.exists() else []
    except (OSError, ValueError):
        previous = []
    names = {w["lm_eval_task"] for w in written}
    merged = [w for w in previous if isinstance(w, dict) and w.get("lm_eval_task") not in names] + written
    index.write_text(json.dumps(merged, indent=2) + "\n", encoding="utf-8")
    return written


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="The folder to write (lm_eval --include_path OUT).")
    p.add_argument("--tasks", nargs="+", default=None, help="Task names (default: coin_flip).")
    p.add_argument("--data_dir", "--data-dir", default=None, help="Offline mirror (default: $FTCOT_DATA_MIRROR).")
    p.add_argument("--max_new_tokens", type=int, default=EVAL_MAX_NEW_TOKENS,
                   help=f"max_gen_toks (as ftcot eval; default {EVAL_MAX_NEW_TOKENS}).")  # fmt: skip
    p.add_argument("--mode", default="paper", help="Answer parsing: paper (default) or robust.")
    p.add_argument("--limit", type=int, default=None, help="Export the first N test questions only.")
    for flag in ("dataset", "dataset_config", "dataset_revision", "question_column", "answer_column",
                 "choices_column", "answer_type", "task_name"):  # fmt: skip
        p.add_argument(f"--{flag}", default=None, help=f"Your own dataset: as `ftcot eval --{flag}`.")
    p.add_argument("--train_split", default="train", help="Your own dataset: its train split.")
    p.add_argument("--test_split", default="test", help="Your own dataset: the split exported.")
    p.add_argument("--test_size", type=float, default=None, help="Your own dataset: as `ftcot eval --test_size`.")
    p.add_argument("--split_seed", type=int, default=0, help="Your own dataset: seed of --test_size.")
    p.add_argument("--skip_bad_rows", action="store_true", help="Your own dataset: skip unreadable gold answers.")


def cmd_export(args: argparse.Namespace) -> int:
    """``ftcot export-lm-eval``: the folder, then the lm_eval command that runs it."""
    try:
        import datasets  # noqa: F401 -- the Parquet files
        import yaml  # noqa: F401
    except ImportError as e:
        missing = getattr(e, "name", None) or str(e)
        raise FtcotError(f"ftcot export-lm-eval needs {missing}: pip install 'ftcot-hf[lm_eval]'.") from None
    names = {f.name for f in TaskDatasetArgs.__dataclass_fields__.values()}  # type: ignore[attr-defined]
    dataset_args = TaskDatasetArgs(**{k: v for k, v in vars(args).items() if k in names})
    if dataset_args.wants_custom_task() and args.tasks:
        raise FtcotError("Give either --tasks or your own dataset (--dataset ... --task_name ...), not both.")
    tasks = resolve_tasks(args.tasks or ["coin_flip"], dataset_args)
    written = export_lm_eval(
        args.out, tasks, data_dir=args.data_dir, max_new_tokens=args.max_new_tokens, mode=args.mode, limit=args.limit
    )
    for w in written:
        print(f"{w['lm_eval_task']:30s} n={w['n']:<5d} {Path(args.out) / w['yaml']}")
    names_arg = ",".join(w["lm_eval_task"] for w in written)
    print(
        f"\nRun: lm_eval --model hf --model_args pretrained=STUDENT --include_path {args.out} --tasks {names_arg} "
        "--batch_size 1\n(needs: pip install 'ftcot-hf[lm_eval]')"
    )
    return 0
