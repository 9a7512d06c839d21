"""On-policy distillation after Fine-tune-CoT: the SFT student samples completions of the task's training prompts and
learns the teacher's next-token distribution over them (generalized JSD, TRL).

Which TRL trainer runs is decided up front, from the two tokenizers and the two models' vocabulary sizes, and said
in one line (:func:`check_vocabularies`):

* the same tokens with the same ids, and the same number of embedding rows: ``trl.DistillationTrainer`` (stable, fully
  on-policy, a chunked loss that never materialises the logits);
* the same, but ``lmbda < 1`` (a mix of on- and off-policy batches, as GKD): ``trl.experimental.gold.GOLDTrainer``
  with its JSD loss, the off-policy batches being the rationale rows the student was fine-tuned on;
* the same tokens but another embedding size (vocabularies padded differently): GOLD with JSD, the teacher's
  embeddings resized to the student's;
* other tokens: GOLD with the ULD loss, which aligns the two tokenizations by their text;
* a teacher served by vLLM (``--teacher_url``): ``trl.experimental.server_distillation.ServerDistillationTrainer``,
  same vocabulary only, on the teacher's top-k logprobs (:mod:`ftcot_hf.training.distill_server`).

The prompts are the task's training questions in the student's format (``"{question} ###"`` for ``ft_cot``): what the
student was fine-tuned on and what it is evaluated on. The student folder's ``train_summary.json`` names its task and
format. The output folder is a student like ``ftcot train``'s (weights, tokenizer, ``train_summary.json`` with the
distillation's settings, ``epoch_metrics.json`` with epoch 0 = the SFT student, ``loss_log.json``, our model card).
"""

from __future__ import annotations

import copy
import json
import logging
import re
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftcot_hf.errors import FtcotError
from ftcot_hf.students.formats import get_format
from ftcot_hf.students.loading import check_student, load_student
from ftcot_hf.training import distill_server
from ftcot_hf.training.callbacks import EpochEvalCallback, summarize_epochs
from ftcot_hf.training.distill_common import VocabularyCheck, experimental, model_source, no_auto_card
from ftcot_hf.training.distill_config import DistillConfig
from ftcot_hf.training.trainer import TrainResult, resume_point, whole_run_loss
from ftcot_hf.utils.console import quiet_libraries

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger(__name__)

DISTILLATION = "DistillationTrainer"
GOLD = "GOLDTrainer"


# --- the student and the teacher -------------------------------------------------------------------------------------
def sft_summary(student: str) -> dict[str, Any]:
    """What ``ftcot train`` recorded about the student (its ``train_summary.json``); {} where there is none."""
    path = Path(student).expanduser() / "train_summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def check_model(name: str, flag: str) -> str:
    """A student or teacher that cannot be had fails now, in one line naming the flag: before any data is read."""
    try:
        check_student(name)
    except FtcotError as e:
        text = re.sub(r"^Student\b", "Student" if flag == "--student" else "Model", str(e))
        raise FtcotError(f"{flag} {name}: {text}") from None
    return name


def check_vocabularies(student_tokenizer: Any, teacher_tokenizer: Any, student_vocab_size: int,
                       teacher_vocab_size: int, *, lmbda: float = 1.0, student: str = "the student",
                       teacher: str = "the teacher") -> VocabularyCheck:  # fmt: skip
    """Compare the two vocabularies (token -> id, the added tokens included, and the embedding rows) and choose the
    trainer: :data:`DISTILLATION` where the student's and the teacher's next-token distributions are over the same
    ids and ``lmbda`` is 1; :data:`GOLD` otherwise."""
    ours, theirs = student_tokenizer.get_vocab(), teacher_tokenizer.get_vocab()
    pair = f"teacher {teacher} and student {student}"
    if ours != theirs:
        common = sum(1 for token, i in ours.items() if theirs.get(token) == i)
        line = (f"{pair} have different vocabularies ({len(theirs):,} and {len(ours):,} tokens, {common:,} the same "
                "with the same id): GOLD (trl.experimental.gold) with its ULD loss, aligning the two tokenizations "
                "by their text.")  # fmt: skip
        return VocabularyCheck(GOLD, True, line)
    if student_vocab_size != teacher_vocab_size:
        line = (f"{pair} share their {len(ours):,} tokens but not their embedding rows ({teacher_vocab_size:,} and "
                f"{student_vocab_size:,}): GOLD (trl.experimental.gold) with the generalized JSD loss, the teacher's "
                "embeddings resized to the student's.")  # fmt: skip
        return VocabularyCheck(GOLD, False, line)
    if lmbda < 1.0:
        line = (f"{pair} share one vocabulary ({len(ours):,} tokens, same ids), and --lmbda {lmbda:g} mixes in "
                "off-policy batches (the rationale rows): GOLD (trl.experimental.gold) with the generalized JSD loss, "
                "as GKD.")  # fmt: skip
        return VocabularyCheck(GOLD, False, line)
    line = (f"{pair} share one vocabulary ({len(ours):,} tokens, same ids): TRL's DistillationTrainer, fully "
            "on-policy (the student samples, the teacher scores every token).")  # fmt: skip
    return VocabularyCheck(DISTILLATION, False, line)


def _init_dtype(kwargs: dict[str, Any] | None, flag: str) -> Any:
    """The dtype of TRL's ``*model_init_kwargs``: ftcot loads both models itself (GGUF, adapters, the embedded
    student), so that is the only key it takes."""
    kwargs = dict(kwargs or {})
    dtype = kwargs.pop("dtype", None)
    if kwargs:
        raise FtcotError(f"--{flag}: ftcot distill loads the model itself and takes only 'dtype' there, not "
                         f"{', '.join(sorted(kwargs))}.")  # fmt: skip
    return dtype


# --- the prompts ---------------------------------------------------------------------------------------------------
def distill_rows(records: Dataset, fmt: Any, *, completions: bool) -> Dataset:
    """One row per training question: ``prompt`` in the student's format (what evaluation asks), and with
    ``completions`` the format's completion of the question's first rationale (GOLD's off-policy batches)."""
    from datasets import Dataset

    fmt = get_format(fmt)
    rows: dict[str, list[str]] = {"prompt": [], "completion": []} if completions else {"prompt": []}
    seen: set[str] = set()
    for record in records:
        prompt = fmt.prompt(record)
        if prompt in seen:  # D rationales of one question: one prompt (the student samples its own completions)
            continue
        seen.add(prompt)
        rows["prompt"].append(prompt)
        if completions:
            missing = [c for c in fmt.required_columns if record.get(c) is None]  # a task's records: rationale None
            if missing:
                raise FtcotError(f"--lmbda below 1 trains on the rationale rows too, and format {fmt.name!r} needs "
                                 f"{', '.join(missing)} in every row: give --rationales (what `ftcot teach` "
                                 "wrote).")  # fmt: skip
            rows["completion"].append(fmt.completion(record))
    if not rows["prompt"]:
        raise FtcotError("No training questions to distil on: the training split is empty.")
    return Dataset.from_dict(rows)


# --- the result ----------------------------------------------------------------------------------------------------
@dataclass
class DistillResult(TrainResult):
    """A :class:`TrainResult` with the SFT student's score (epoch 0) and what distilled it."""

    teacher: str = ""
    trainer: str = ""
    vocabulary: str = ""
    start: dict[str, Any] | None = None
    """The SFT student's test accuracy before distillation (``eval_start``): epoch 0 of ``epoch_metrics.json``."""
    sft_student: str = ""

    def summary(self) -> str:
        lines = [f"Distilled {self.global_step} steps in {self.train_runtime:.0f} s with {self.trainer}; final "
                 f"training loss {self.training_loss:.4f}. Model saved to {self.output_dir}"]  # fmt: skip
        last = self.last_epoch if self.last_epoch and self.last_epoch["epoch"] > 0 else None
        if self.start is not None or last is not None:
            before = "-" if self.start is None else f"{100 * self.start['accuracy']:.2f}%"
            after = "-" if last is None else f"{100 * last['accuracy']:.2f}% (last epoch, {last['epoch']})"
            n = (last or self.start or {}).get("metrics", {}).get("n", "?")
            lines.append(f"test accuracy on {n} questions: SFT student {before} -> distilled {after}")
        if self.best_epoch is not None:
            lines.append(f"best epoch (selected on test): epoch {self.best_epoch['epoch']}, test accuracy "
                         f"{100 * self.best_epoch['accuracy']:.2f}%")  # fmt: skip
        return "\n".join(lines)


class _StartEvalCallback(EpochEvalCallback):
    """The per-epoch evaluation, plus the SFT student before its first step (epoch 0), so the report puts the two
    side by side. A resumed run keeps the epoch 0 it scored before."""

    def __init__(self, *args: Any, start: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.start = start

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        super().on_train_begin(args, state, control, model=model, **kwargs)
        if self.start and state.is_world_process_zero and model is not None and state.global_step == 0:
            self.score(args, state, model, 0, **kwargs)


def gold_config(config: DistillConfig, *, uld: bool, teacher_tokenizer: str, max_length: int) -> Any:
    """The ``GOLDConfig`` of ``config``: every option the two configs share (TrainingArguments, generation, ``beta``,
    ``temperature``, ``max_completion_length``...), ``lmbda``, the ULD switch and ``gold_kwargs``."""
    from trl import DistillationConfig

    with experimental():
        from trl.experimental.gold import GOLDConfig

    theirs = _gold_fields()
    # TRL's own handling of these differs between the two (column pruning, padding), or ftcot sets them below
    skip = {"remove_unused_columns", "pad_to_multiple_of", "teacher_model_name_or_path", "teacher_model_init_kwargs",
            "model_init_kwargs", "gradient_checkpointing"}  # fmt: skip
    shared = {f.name for f in fields(DistillationConfig) if f.init and f.name in theirs} - skip
    values = {name: getattr(config, name) for name in shared}
    values.update(lmbda=float(config.lmbda), max_length=max_length, use_uld_loss=uld,
                  teacher_tokenizer_name_or_path=teacher_tokenizer if uld else None)  # fmt: skip
    check_gold_kwargs(config)
    values.update(config.gold_kwargs or {})
    return GOLDConfig(**values)


def _gold_fields() -> set[str]:
    with experimental():
        from trl.experimental.gold import GOLDConfig

    return {f.name for f in fields(GOLDConfig) if f.init}


def check_gold_kwargs(config: DistillConfig) -> None:
    """``--gold_kwargs`` names GOLDConfig options only (checked before any model is loaded)."""
    unknown = sorted(set(config.gold_kwargs or {}) - _gold_fields())
    if unknown:
        raise FtcotError(f"--gold_kwargs: {', '.join(unknown)} is no GOLDConfig option.")


def _fit_batch(config: DistillConfig, questions: int) -> None:
    """TRL's samplers drop each epoch's last incomplete batch, so fewer questions than one batch would train 0 steps
    (and fail in transformers with "max_steps must be set"): the batch is cut to the questions there are."""
    per_step = int(config.gradient_accumulation_steps or 1) * max(1, int(config.world_size))
    if questions >= config.per_device_train_batch_size * per_step:
        return
    if questions < per_step:
        raise FtcotError(f"Only {questions} training question(s): fewer than the {per_step} a step needs (gradient "
                         "accumulation steps x processes). Give more questions.")  # fmt: skip
    logger.warning("Only %d training questions, fewer than one batch of %d: per_device_train_batch_size %d instead.",
                   questions, config.per_device_train_batch_size * per_step, questions // per_step)  # fmt: skip
    config.per_device_train_batch_size = questions // per_step


def _gold_max_length(rows: Dataset, tokenizer: Any, max_completion_length: int) -> int:
    """GOLD's ``max_length`` (it keeps the end of longer rows): room for the longest prompt and a full sampled
    completion, and for the longest off-policy row, EOS included."""
    def lengths(texts: list[str]) -> list[int]:
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]

    prompts = lengths(list(rows["prompt"]))
    rows_length = [p + c for p, c in zip(prompts, lengths(list(rows["completion"])), strict=True)]
    return max(max(prompts) + max_completion_length, max(rows_length)) + 1


def distill_student(
    config: DistillConfig,
    train_records: Dataset,
    test_records: Dataset | None,
    *,
    task: Any,
    dataset_name: str | None = None,
    callbacks: list[Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[Any, DistillResult]:
    """Distil ``config.teacher_model`` into ``config.student`` on the prompts of ``train_records``; save to
    ``config.output_dir``.

    Args:
        config: :class:`DistillConfig` (``student``, ``teacher_model``, ``format`` and ``task`` resolved).
        train_records: the task's training records (question...; with rationales for ``lmbda < 1``).
        test_records: the test records the per-epoch evaluation scores (``config.eval_every_epoch``).
        task: the :class:`~ftcot_hf.Task` (answer parsing of the evaluation).
        dataset_name: where the records came from (the model card).
        log: where the one line about the vocabularies goes (default: this module's logger at INFO).

    Returns:
        ``(trainer, DistillResult)``; the files are those of ``ftcot train`` (``train_summary.json`` with the
        distillation's recipe and the vocabulary line, ``epoch_metrics.json``, ``loss_log.json``, README.md).
    """
    import torch

    say = log or logger.info
    if not config.student or not (config.teacher_model or config.teacher_url):
        raise FtcotError("distill_student needs config.student and config.teacher_model or config.teacher_url.")
    if config.cpu_threads:
        torch.set_num_threads(config.cpu_threads)
    fmt = get_format(config.format or "ft_cot")
    if fmt.encoder_decoder:
        raise FtcotError(f"Format {fmt.name!r} is an encoder-decoder format: TRL's distillation trainers take "
                         "decoder-only students.")  # fmt: skip
    student_dtype = _init_dtype(config.model_init_kwargs, "model_init_kwargs")
    teacher_dtype = _init_dtype(config.teacher_model_init_kwargs, "teacher_model_init_kwargs")
    check_gold_kwargs(config)
    # below 1, GOLD trains on the rationale rows too: records without them fail here, before any model is loaded
    rows = distill_rows(train_records, fmt, completions=config.lmbda < 1.0)
    teacher = None
    if config.teacher_url:  # the server and the vocabulary are checked before any model is loaded
        check = distill_server.check_served_teacher(config, rows)
    with quiet_libraries():
        model, tokenizer = load_student(config.student, for_training=True, dtype=student_dtype)
        if not config.teacher_url:
            teacher, teacher_tokenizer = load_student(config.teacher_model, dtype=teacher_dtype)
    if any(getattr(m.config, "is_encoder_decoder", False) for m in (model, teacher) if m is not None):
        raise FtcotError("ftcot distill takes decoder-only students and teachers (TRL's distillation trainers do).")
    if teacher is not None:
        check = check_vocabularies(tokenizer, teacher_tokenizer, model.config.get_text_config().vocab_size,
                                   teacher.config.get_text_config().vocab_size, lmbda=config.lmbda,
                                   student=config.student, teacher=config.teacher_model)  # fmt: skip
    say(check.line)
    if config.gold_kwargs and check.trainer == DISTILLATION:
        logger.warning("--gold_kwargs %s left unused: DistillationTrainer runs, not GOLD.", sorted(config.gold_kwargs))
    if check.trainer == GOLD and "completion" not in rows.column_names:
        rows = rows.add_column("completion", [""] * rows.num_rows)  # never trained on: every batch is sampled
    _fit_batch(config, rows.num_rows)

    all_callbacks = list(callbacks or [])
    epoch_eval = None
    if config.eval_every_epoch:
        if test_records is None:
            raise FtcotError("eval_every_epoch needs the test records: the data has no test split.")
        test = test_records.select(range(min(config.eval_limit, test_records.num_rows))) if config.eval_limit \
            else test_records  # fmt: skip
        eval_tokenizer = copy.deepcopy(tokenizer)  # the evaluation pads itself; the trainer changes the side
        epoch_eval = _StartEvalCallback(test, task=task, format=fmt.name, tokenizer=eval_tokenizer,
                                        batch_size=config.eval_batch_size, max_new_tokens=config.eval_max_new_tokens,
                                        sc=config.eval_sc, mode=config.eval_mode, output_dir=config.output_dir,
                                        last_epoch=config.eval_last_epoch, start=config.eval_start)  # fmt: skip
        all_callbacks.append(epoch_eval)
    config.teacher_model_init_kwargs = config.model_init_kwargs = None  # loaded above; TRL refuses them with objects
    padding_side = tokenizer.padding_side
    with quiet_libraries():  # TRL's dataset maps draw a bar each; the training bar is the one to see
        if check.trainer == DISTILLATION:
            from trl import DistillationTrainer

            tokenizer.padding_side = "left"  # TRL batches the prompts for generation
            trainer = no_auto_card(DistillationTrainer)(
                model=model, teacher_model=teacher, args=config, train_dataset=rows, processing_class=tokenizer,
                callbacks=all_callbacks,
            )  # fmt: skip
        elif teacher is None:
            trainer = distill_server.server_trainer(config, model, tokenizer, rows, all_callbacks)
        else:
            with experimental():
                from trl.experimental.gold import GOLDTrainer

            args = gold_config(config, uld=check.uld, teacher_tokenizer=model_source(config.teacher_model),
                               max_length=_gold_max_length(rows, tokenizer, int(config.max_completion_length)))
            trainer = no_auto_card(GOLDTrainer)(model=model, teacher_model=teacher, args=args, train_dataset=rows,
                                                processing_class=tokenizer, callbacks=all_callbacks)  # fmt: skip
    from ftcot_hf.training.console import use_numeric_logs

    use_numeric_logs(trainer)
    checkpoint = resume_point(config, None)
    resumed_at = json.loads((Path(checkpoint) / "trainer_state.json").read_text())["global_step"] if checkpoint else 0
    started = time.perf_counter()
    with quiet_libraries():
        output = trainer.train(resume_from_checkpoint=checkpoint)
        trainer.save_model(config.output_dir)
    tokenizer.padding_side = padding_side
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(config.output_dir)
    return trainer, _finish(config, trainer, output, epoch_eval, check, rows.num_rows, resumed_at,
                            time.perf_counter() - started, dataset_name)  # fmt: skip


def _public_model(name: str) -> str:
    """A model as a card names it: a Hub id as it is, a local folder by its name (this machine's path means nothing
    elsewhere)."""
    path = Path(name).expanduser()
    return path.resolve().name if path.exists() else name


def _finish(config: DistillConfig, trainer: Any, output: Any, epoch_eval: Any, check: VocabularyCheck, rows: int,
            resumed_at: int, seconds: float, dataset_name: str | None) -> DistillResult:  # fmt: skip
    from ftcot_hf.training.outputs import loss_log, public_name, write_json_atomic, write_student_card

    records = list(epoch_eval.records) if epoch_eval is not None else []
    start = next((r for r in records if r["epoch"] == 0), None)
    trained = [r for r in records if r["epoch"] > 0]
    last, best = summarize_epochs(trained, report_best_epoch=config.report_best_epoch)
    sft = sft_summary(config.student)
    result = DistillResult(
        output_dir=str(config.output_dir), global_step=trainer.state.global_step,
        training_loss=whole_run_loss(trainer.state, float(output.training_loss), resumed_at),
        train_runtime=float(output.metrics.get("train_runtime", seconds)), epochs=records, last_epoch=last,
        best_epoch=best, metrics=dict(output.metrics), teacher=str(config.teacher_url or config.teacher_model),
        trainer=check.trainer,
        vocabulary=check.line, start=start, sft_student=public_name(config.student),
    )  # fmt: skip
    result.recipe = {
        "trainer": f"ftcot-hf distill (TRL {check.trainer}{', ULD loss' if check.uld else ''})",
        "SFT student": public_name(config.student),
        "teacher": check.teacher or _public_model(str(config.teacher_model)),
        "format": config.format, "training questions": rows,
        "epochs": config.num_train_epochs if (config.max_steps or -1) <= 0 else f"{config.max_steps} steps",
        "optimizer steps": result.global_step, "learning rate": config.learning_rate,
        "schedule": str(getattr(config.lr_scheduler_type, "value", config.lr_scheduler_type)),
        "divergence (beta)": f"{config.beta:g} (0 forward KL, 1 reverse KL)", "temperature": config.temperature,
        "on-policy share (lmbda)": config.lmbda, "max completion length (tokens)": config.max_completion_length,
        "batch size": config.per_device_train_batch_size * trainer.accelerator.num_processes
        * int(config.gradient_accumulation_steps or 1),
        "precision": "bf16" if config.bf16 else "fp16" if config.fp16 else "fp32", "seed": config.seed,
        "final training loss": round(float(result.training_loss), 4),
    }  # fmt: skip
    if config.teacher_url:
        result.recipe["teacher's logprobs per token"] = f"top {config.loss_top_k}, from a vLLM server"
    if trainer.is_world_process_zero():
        out = Path(config.output_dir)
        summary = {"student": sft.get("student") or config.student, "task": config.task, "format": config.format,
                   **result.to_dict(), "distilled_from": public_name(config.student)}  # fmt: skip
        write_json_atomic(out / "train_summary.json", summary)
        write_json_atomic(out / "loss_log.json", loss_log(trainer.state.log_history))
        card_config = types.SimpleNamespace(student=summary["student"], task=config.task, format=config.format)
        write_student_card(out, card_config, result=result, dataset_name=dataset_name, encoder_decoder=False)
    logger.info("%s", result.summary())
    return result


# --- `ftcot distill` -------------------------------------------------------------------------------------------------
DISTILL_LEAD = ("student", "teacher_model", "teacher_url", "rationales", "task", "format", "output_dir")
"""What `ftcot distill` acts on: the first group of its --help."""


def prepare(config: DistillConfig, data_args: Any) -> tuple[Any, Dataset, Dataset | None]:
    """Check every input before a model is loaded and resolve the defaults from the student's ``train_summary.json``:
    returns the task and its training and test records."""
    from ftcot_hf.tasks.args import resolve_tasks
    from ftcot_hf.training.data import load_training_data

    if not config.student:
        raise FtcotError("Which student? Pass --student: the folder `ftcot train` wrote (runs/x/student/<task>).")
    if not config.teacher_model and not config.teacher_url:
        raise FtcotError("Which teacher? Pass --teacher_model: a Hub id, a local folder, a .gguf file or "
                         "'smollm2-135m-instruct'; or --teacher_url: a vLLM server (`trl vllm-serve`).")  # fmt: skip
    check_model(config.student, "--student")
    if config.teacher_model:
        check_model(config.teacher_model, "--teacher_model")
    if config.teacher_url:  # down or not vLLM: said now, before the data is read
        distill_server.reach_server(config.teacher_url)
    if Path(config.output_dir).expanduser().resolve() == Path(config.student).expanduser().resolve():
        raise FtcotError(f"--output_dir {config.output_dir} is the student's own folder: the SFT student would be "
                         "overwritten; choose another (default: <student>-distilled).")  # fmt: skip
    sft = sft_summary(config.student)
    config.task = config.task or sft.get("task")
    config.format = config.format or sft.get("format") or "ft_cot"
    get_format(config.format)
    tasks = resolve_tasks([config.task] if config.task else [], data_args, rationales=data_args.rationales)
    if not tasks:
        raise FtcotError(f"Which task? {config.student} has no train_summary.json naming one: pass --task.")
    config.task = tasks[0].name
    with quiet_libraries():
        train, test = load_training_data(data_args, tasks[0])
    return tasks[0], train, test


def cli_main(argv: list[str]) -> int:
    """`ftcot distill`: flags and `--config distill.yaml` from DistillConfig (TRL's DistillationConfig), DataArgs."""
    from ftcot_hf.training.data import DataArgs
    from ftcot_hf.utils.parser import command_parser

    parser = command_parser((DistillConfig, DataArgs), argv, prog="ftcot distill", lead=DISTILL_LEAD)
    config, data_args = parser.parse(argv)
    task, train, test = prepare(config, data_args)
    trainer, result = distill_student(config, train, test, task=task, dataset_name=data_args.rationales,
                                      log=lambda line: print(line, flush=True))  # fmt: skip
    if trainer.is_world_process_zero():
        print(result.summary())
    return 0
