"""``ftcot eval``: evaluate a student (or a baseline, or the recorded teacher) on tasks and write a report.

    ftcot eval --model outputs/student --task coin_flip multiarith            # Fine-tune-CoT student, test split
    ftcot eval --model gpt2 --task svamp --format few_shot_cot                 # a baseline
    ftcot eval --model outputs/student --task coin_flip --sc 8                 # + self-consistency maj@8
    ftcot eval --model text-davinci-002 --task coin_flip --split all           # the Teacher row (recorded)
    ftcot eval --config eval.yaml                                              # the same flags as YAML keys

Writes ``results.json``, ``completions.jsonl``, ``results.md`` and ``accuracy_per_task.png`` (+
``accuracy_vs_degree.png`` with ``--compare_runs``) into ``--output_dir``.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ftcot_hf.errors import FtcotError
from ftcot_hf.evaluation.baselines import BASELINES
from ftcot_hf.evaluation.evaluator import evaluate_student, evaluate_teacher
from ftcot_hf.evaluation.paper import match_student, method_for
from ftcot_hf.evaluation.report import load_results, write_results
from ftcot_hf.students.defaults import EVAL_BATCH_SIZE, EVAL_MAX_NEW_TOKENS, EVAL_SC_TEMPERATURE
from ftcot_hf.students.formats import get_format
from ftcot_hf.students.loading import load_student
from ftcot_hf.tasks import Task
from ftcot_hf.tasks.answers import MODES
from ftcot_hf.tasks.args import TaskDatasetArgs, rationales_alias, resolve_tasks
from ftcot_hf.teachers import preset
from ftcot_hf.utils.console import quiet_libraries
from ftcot_hf.utils.fmt import pct
from ftcot_hf.utils.parser import command_parser

logger = logging.getLogger(__name__)


@dataclass
class EvalConfig(TaskDatasetArgs):
    """Configuration of ``ftcot eval``.

    Parameters that choose the model and the data:
        model, gguf_file, dtype, task, split, split_variant, rationales, limit, data_dir; or your own dataset:
        dataset + question_column, answer_column, answer_type, task_name (and the other TaskDatasetArgs)
    Parameters of generation and scoring:
        format, batch_size, max_new_tokens, sc, sc_temperature, seed, mode, threads
    Parameters of the report:
        output_dir, paper_row, degree, compare_runs
    """

    FLAG_ALIASES: ClassVar[dict[str, str]] = {"student": "model", "tasks": "task", "limit_test": "limit",
                                              "eval_max_new_tokens": "max_new_tokens", "eval_batch_size": "batch_size"}
    """`ftcot train`/`ftcot run`'s names of these fields, accepted here too (one set of flag names)."""
    LEAD: ClassVar[tuple[str, ...]] = ("model", "task", "rationales", "format", "output_dir")
    """What `ftcot eval` acts on: the first group of its --help."""

    model: str | None = field(
        default=None,
        metadata={
            "help": "The student: a local folder, a Hub id, a .gguf file or 'smollm2-135m-instruct'; or a teacher "
            "preset ('text-davinci-002': score the recorded Zero-shot-CoT completions, the paper's Teacher row)."
        },
    )
    task: list[str] = field(default_factory=lambda: ["coin_flip"], metadata={"help": "Task names to evaluate."})
    split: str = field(
        default="test", metadata={"help": "Split to evaluate: test (default), train; 'all' for a teacher."}
    )
    split_variant: str = field(default="default", metadata={"help": "Split variant: default, template, {n}shot."})
    rationales: str | None = field(
        default=None,
        metadata={
            "help": "A dataset folder/repo with one config per task (a rationale dataset of `ftcot teach`): its "
            "splits instead of the tasks' own."
        },
    )
    dataset: str | None = field(
        default=None,
        metadata={
            "help": "Your own dataset, with --question_column/--answer_column/--answer_type/--task_name (without "
            "them: the deprecated name of --rationales)."
        },
    )
    limit: int | None = field(default=None, metadata={"help": "Evaluate the first N questions only (quick runs)."})
    data_dir: str | None = field(
        default=None, metadata={"help": "Offline mirror of the sources (default: $FTCOT_DATA_MIRROR, else download)."}
    )
    gguf_file: str | None = field(default=None, metadata={"help": "GGUF file inside --model (dequantised on load)."})
    dtype: str | None = field(
        default=None, metadata={"help": "Model dtype: float32, bfloat16, auto (default: as saved)."}
    )
    format: str = field(
        default="ft_cot",
        metadata={
            "help": "ft_cot (Fine-tune-CoT), vanilla, natural, or a baseline: zero_shot, zero_shot_cot, few_shot_cot "
            "(encoder-decoder models use the _t5 variants automatically)."
        },
    )
    batch_size: int = field(default=EVAL_BATCH_SIZE, metadata={"help": "Sequences decoded together."})
    max_new_tokens: int = field(
        default=EVAL_MAX_NEW_TOKENS,
        metadata={
            "help": "Tokens generated per completion at most (the model's position limit applies); the default "
            "covers the paper's 128-token rationales: raise it for students of a one-stage reasoning teacher."
        },
    )
    sc: int = field(
        default=0, metadata={"help": "Self-consistency: k sampled completions per question (maj@k); 0: off."}
    )
    sc_temperature: float = field(
        default=EVAL_SC_TEMPERATURE, metadata={"help": "Sampling temperature of self-consistency."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the self-consistency samples."})
    mode: str = field(default="paper", metadata={"help": "Answer parsing: 'paper' (bit-exact) or 'robust'."})
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads (default: torch's choice)."})
    output_dir: str = field(default="outputs/eval", metadata={"help": "Where results.json/results.md/plots go."})
    paper_row: str | None = field(
        default="auto",
        metadata={
            "help": "The paper's row to compare with, 'family/method/params' (e.g. gpt2/Fine-tune-CoT/124M); 'auto' "
            "(from the model's type and size, and --format/--degree) or 'none'."
        },
    )
    degree: int | None = field(
        default=None, metadata={"help": "D the student was trained with (a label for the report and plots)."}
    )
    compare_runs: list[str] | None = field(
        default=None,
        metadata={"help": "results.json files (or folders) of runs with other D: adds accuracy_vs_degree.png."},
    )

    def __post_init__(self) -> None:
        if isinstance(self.task, str):
            self.task = [self.task]
        if not self.model:
            raise FtcotError("ftcot eval needs --model (a student folder, Hub id, .gguf file, or 'text-davinci-002').")
        rationales_alias(self, "ftcot eval")
        self._tasks: list[Task] | None = None  # resolved on first use (`tasks`): no I/O in a constructor
        if self.mode not in MODES:
            raise FtcotError(f"--mode {self.mode!r}: use one of {', '.join(MODES)}.")
        if self.format not in BASELINES:  # an unknown name fails here, even for a teacher preset (no format used)
            get_format(self.format)
        for name in ("batch_size", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise FtcotError(f"--{name} must be at least 1 (got {getattr(self, name)}).")
        if self.sc < 0:
            raise FtcotError(f"--sc must be 0 (off) or the number of samples per question (got {self.sc}).")
        if self.limit is not None and self.limit < 1:
            raise FtcotError(f"--limit must be at least 1 (got {self.limit}).")


    @property
    def tasks(self) -> list[Task]:
        """The tasks evaluated (:func:`~ftcot_hf.tasks.args.resolve_tasks`: your own dataset, a task recorded by the
        rationale folder, or a registered name; ``task`` may also hold :class:`Task` objects a caller resolved
        already, as ``ftcot run`` does); resolved once, on first use."""
        if self._tasks is None:
            self._tasks = resolve_tasks(self.task, self, rationales=self.rationales)
            self.task = [t.name for t in self._tasks]
        return self._tasks


def _load_model(config: EvalConfig) -> tuple[Any, Any]:
    return load_student(config.model, gguf_file=config.gguf_file, dtype=config.dtype)


def _task_records(config: EvalConfig, task: Task) -> Any:
    if config.wants_custom_task():
        splits = task.load()
        split = "test" if config.split == config.test_split else config.split
        if split not in splits:
            raise FtcotError(f"Task {task.name} has no {config.split!r} split (available: {', '.join(splits)}).")
        data = splits[split]
    elif config.rationales:
        from datasets import load_dataset

        try:
            data = load_dataset(config.rationales, task.name, split=config.split)
        except (ValueError, FileNotFoundError) as e:
            raise FtcotError(
                f"Could not load split {config.split!r} of config {task.name!r} from {config.rationales}: {e}"
            ) from None
    else:
        splits = task.load(config.split_variant, data_dir=config.data_dir)
        if config.split not in splits:
            raise FtcotError(f"Task {task.name} has no {config.split!r} split here (available: {', '.join(splits)}).")
        data = splits[config.split]
    if config.limit is not None:
        data = data.select(range(min(config.limit, len(data))))
    return data


def _auto_paper_row(config: EvalConfig, model: Any) -> str | None:
    method = method_for(config.format, config.degree)
    num_params = sum(p.numel() for p in model.parameters()) if hasattr(model, "parameters") else None
    matched = match_student(getattr(model.config, "model_type", None), num_params, str(config.model))
    if method is None or matched is None:
        return None
    return f"{matched[0]}/{method}/{matched[1]}"


def run_eval(config: EvalConfig, *, model: Any = None, tokenizer: Any = None, progress: bool | str = True,
             output_dir: str | Path | None = None) -> tuple[list[Any], dict[str, Path]]:  # fmt: skip
    """Evaluate as ``ftcot eval`` does; returns ``(results, paths)``. ``ftcot run``'s eval stages call it too, with
    their own EvalConfig (``RunConfig.eval_config``), so every field of EvalConfig reaches both.

    A loaded ``model``/``tokenizer`` may be given (the run does) instead of ``config.model`` being loaded; then
    ``config.model`` only names it in the results. ``progress``: the bar's label when a string. ``output_dir``: where
    the files go instead of ``config.output_dir`` (a run's stage writes into a temporary folder renamed into place
    when complete; the results record the config as given). The libraries' own progress bars and info logs are off
    meanwhile (:func:`ftcot_hf.utils.console.quiet_libraries`): one bar per task evaluation shows."""
    with quiet_libraries():
        return _run_eval(config, model=model, tokenizer=tokenizer, progress=progress,
                         output_dir=config.output_dir if output_dir is None else output_dir)  # fmt: skip


def _run_eval(config: EvalConfig, *, model: Any, tokenizer: Any, progress: bool | str,
              output_dir: str | Path) -> tuple[list[Any], dict[str, Path]]:  # fmt: skip
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    tasks = config.tasks  # an unknown name fails now, before a model is loaded
    results = []
    paper_row = None if config.paper_row in (None, "none", "auto") else config.paper_row
    recorded = preset(config.model)
    if model is None and recorded is not None and recorded.recorded:
        for task in tasks:
            results.append(evaluate_teacher(task, split=config.split, data_dir=config.data_dir, mode=config.mode))
    else:
        if model is None:
            model, tokenizer = _load_model(config)
        if config.paper_row == "auto":
            paper_row = _auto_paper_row(config, model)
        for task in tasks:
            result = evaluate_student(
                model,
                tokenizer,
                _task_records(config, task),
                task=task,
                format=config.format,
                batch_size=config.batch_size,
                max_new_tokens=config.max_new_tokens,
                sc=config.sc,
                sc_temperature=config.sc_temperature,
                seed=config.seed,
                mode=config.mode,
                progress=progress,
                data_dir=config.data_dir,
            )
            result.split = config.split
            results.append(result)
    runs = None
    if config.compare_runs:
        runs = {}
        for path in config.compare_runs:
            other_config, other = load_results(path)
            if other_config.get("degree") is None:
                raise FtcotError(f"{path}: its config has no 'degree' (D): re-run it with --degree to compare by D.")
            runs[int(other_config["degree"])] = other
        if config.degree is None:
            raise FtcotError("--compare_runs plots accuracy against D: give this run's --degree too.")
        runs[config.degree] = results
    record = dataclasses.asdict(config) | {"paper_row": paper_row}
    paths = write_results(results, output_dir, record, runs=runs)
    return results, paths


def cli_main(argv: list[str]) -> int:
    """`ftcot eval`: flags and `--config eval.yaml` come from EvalConfig through TrlParser."""
    parser = command_parser((EvalConfig,), argv, prog="ftcot eval", lead=EvalConfig.LEAD)
    (config,) = parser.parse(argv)
    results, paths = run_eval(config)
    for r in results:
        maj = "" if r.maj_at_k is None else f"  maj@{r.k} {pct(r.maj_at_k)}"
        print(
            f"{r.task:27s} {r.format:13s} n={r.n:<5d} accuracy {pct(r.accuracy)}{maj}  complete {pct(r.complete)}"
            f"  ({r.wall_s:.1f} s)"
        )
    print(f"\nWrote {', '.join(str(Path(p)) for p in paths.values())}")
    return 0
