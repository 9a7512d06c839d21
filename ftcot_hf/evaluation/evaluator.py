"""Evaluate a student (or a baseline prompt, or a teacher's recorded completions) on a task split.

:func:`evaluate_student` is what the training callback calls after each epoch and what ``ftcot eval`` runs; it
returns an :class:`EvalResult` with the metrics and every example (prompt, completion, parsed prediction, gold
answer, correct, finish reason) so a report can be audited. :func:`evaluate_teacher` gives the Teacher row: the
teacher's Zero-shot-CoT answers (by default the recorded text-davinci-002 completions, replayed) scored with the
same metric.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ftcot_hf.errors import FtcotError
from ftcot_hf.evaluation.baselines import EvalPlan, eval_plan
from ftcot_hf.evaluation.metric import compute_accuracy
from ftcot_hf.evaluation.selfconsistency import vote
from ftcot_hf.students.defaults import EVAL_BATCH_SIZE, EVAL_MAX_NEW_TOKENS, EVAL_SC_TEMPERATURE
from ftcot_hf.students.generation import generate_completions
from ftcot_hf.tasks import Task, resolve_task
from ftcot_hf.tasks.prompts import ANSWER_MAX_TOKENS, RATIONALE_MAX_TOKENS, stage1_prompt, stage2_prompt
from ftcot_hf.utils.console import progress_bar

logger = logging.getLogger(__name__)


@dataclass
class EvalResult:
    """Metrics of one evaluation (fractions in [0, 1]) and its examples.

    ``maj_at_k`` is the self-consistency accuracy (majority vote over ``k`` samples; None when ``k == 0``).
    Each example: ``sample_index``, ``prompt``, ``completion``, ``prediction``, ``answer``, ``correct``,
    ``finish_reason`` (+ ``votes``, ``maj_prediction``, ``maj_correct`` with self-consistency, ``rationale`` for
    two-stage zero-shot-CoT).
    """

    accuracy: float | None
    contains_answer: float | None
    correct_format: float | None
    complete: float | None
    n: int
    maj_at_k: float | None = None
    k: int = 0
    task: str = ""
    format: str = ""
    mode: str = "paper"
    examples: list[dict[str, Any]] = field(default_factory=list, repr=False)
    wall_s: float = 0.0
    generated_tokens: int = 0
    model: str | None = None
    split: str = "test"
    settings: dict[str, Any] = field(default_factory=dict)
    """How it was produced (batch size, max new tokens, temperature, seed, ...), for the report."""

    def metrics(self) -> dict[str, Any]:
        """Everything but the examples."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "examples"}

    def to_dict(self, *, examples: bool = True) -> dict[str, Any]:
        data = asdict(self)
        if not examples:
            data.pop("examples")
        return data

    @classmethod
    def from_scores(cls, scores: Mapping[str, Any], **fields_: Any) -> EvalResult:
        """An EvalResult whose metrics are those of a :func:`compute_accuracy` output."""
        metrics = {k: scores[k] for k in ("accuracy", "contains_answer", "correct_format", "complete", "n")}
        return cls(**metrics, **fields_)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalResult:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _records(dataset: Any) -> list[dict[str, Any]]:
    if isinstance(dataset, Mapping) and "test" in dataset and not {"question", "answer"} <= set(dataset):
        dataset = dataset["test"]  # a DatasetDict: its test split
    records = [dict(r) for r in dataset]
    for i, r in enumerate(records):
        missing = [c for c in ("question", "answer") if c not in r]
        if missing:
            raise FtcotError(
                f"Record {i} of the evaluation data lacks {', '.join(missing)} (has: {', '.join(sorted(r))}): pass "
                "a task split with question/answer columns (ftcot_hf.load_task(task)['test'])."
            )
        r.setdefault("sample_index", i)
    return records


def _model_name(model: Any) -> str | None:
    name = getattr(model, "name_or_path", None) or getattr(getattr(model, "config", None), "_name_or_path", None)
    return str(name) if name else None


def evaluate_student(
    model: Any,
    tokenizer: Any,
    dataset: Any,
    *,
    task: str | Task,
    format: str = "ft_cot",
    batch_size: int = EVAL_BATCH_SIZE,
    max_new_tokens: int = EVAL_MAX_NEW_TOKENS,
    sc: int = 0,
    sc_temperature: float = EVAL_SC_TEMPERATURE,
    seed: int = 0,
    mode: str = "paper",
    progress: bool | str = False,
    data_dir: str | os.PathLike | None = None,
) -> EvalResult:
    """Generate for every question of ``dataset`` and score the completions.

    Args:
        model, tokenizer: a ``transformers`` decoder-only or encoder-decoder student (peft wrappers work). Its
            train/eval mode is restored afterwards, so a training callback can call this between epochs.
        dataset: records with ``question`` and ``answer`` (and ``sample_index``): a task's test split, a list of
            dicts, or a ``DatasetDict`` (its ``test`` split is used).
        task: the task or its name (chooses the answer parser and, for few-shot-CoT, the exemplars).
        format: a student format (``ft_cot``, ``vanilla``, ``natural``, ...; switched to its ``_t5`` variant for an
            encoder-decoder) or a baseline (``zero_shot``, ``zero_shot_cot``, ``few_shot_cot``); see
            :mod:`ftcot_hf.evaluation.baselines`.
        batch_size: sequences decoded together. max_new_tokens: per completion (the model's position limit applies
            too; the paper's is 1024 tokens in total).
        sc: self-consistency: number of sampled completions per question, reported as maj@k next to the greedy
            accuracy. 0 or 1: greedy only (a vote over one sample is no vote). sc_temperature, seed: their sampling.
        mode: answer parsing, ``"paper"`` or ``"robust"``.
        progress: one bar for the whole evaluation, a row per generated sequence (greedy, then the ``sc``
            samples; two per question for two-stage zero-shot-CoT), left on screen with its rate when done; a
            string is the bar's label (default ``eval <task>``), e.g. ``"eval coin_flip (untrained)"``.
        data_dir: offline mirror for the few-shot-CoT exemplars (default ``$FTCOT_DATA_MIRROR``).

    Returns:
        An :class:`EvalResult`.

    Example:
        >>> result = evaluate_student(model, tok, load_task("coin_flip")["test"], task="coin_flip")  # doctest: +SKIP
        >>> result.accuracy, result.complete                                                         # doctest: +SKIP
        (0.7733, 1.0)
    """
    if sc < 0:
        raise ValueError(f"sc must be 0 (greedy only) or the number of samples per question, not {sc}.")
    sc = sc if sc >= 2 else 0
    task = resolve_task(task)
    records = _records(dataset)
    enc_dec = bool(getattr(model.config, "is_encoder_decoder", False))
    plan = eval_plan(format, task.name, encoder_decoder=enc_dec, data_dir=data_dir)
    prompts = [plan.prompt(r) for r in records]
    answers = [str(r["answer"]) for r in records]
    started = time.perf_counter()
    passes = (1 + sc) * (2 if plan.two_stage else 1)
    label = progress if isinstance(progress, str) else f"eval {task.name}"
    bar = progress_bar(len(records) * passes, label, "row", enabled=bool(progress))
    run = functools.partial(_generate_runs, model, tokenizer, records, prompts, plan, max_new_tokens=max_new_tokens,
                            batch_size=batch_size, progress=bar if bar is not None else False)  # fmt: skip
    with bar if bar is not None else contextlib.nullcontext():
        greedy, generated = run(0)
        sampled, more = run(sc, temperature=sc_temperature, seed=seed) if sc else (None, 0)
    generated += more
    flat_greedy = [per[0] for per in greedy]
    scores = compute_accuracy([g["completion"] for g in flat_greedy], answers, task=task, format=plan.score_format,
                              mode=mode, finish_reasons=[g["finish_reason"] for g in flat_greedy],
                              return_details=True)  # fmt: skip
    examples = _examples(records, prompts, flat_greedy, scores["details"])
    maj_at_k = None if sampled is None else _vote_samples(examples, sampled, answers, task=task,
                                                          score_format=plan.score_format, mode=mode)  # fmt: skip
    wall = time.perf_counter() - started
    settings = {"batch_size": batch_size, "max_new_tokens": max_new_tokens, "stop": plan.stop,
                "score_prefix_format": plan.score_format,
                **({"sc_temperature": sc_temperature, "seed": seed} if sc else {})}  # fmt: skip
    result = EvalResult.from_scores(scores, maj_at_k=maj_at_k, k=sc, task=task.name, format=plan.name, mode=mode,
                                    examples=examples, wall_s=round(wall, 3), generated_tokens=generated,
                                    model=_model_name(model), settings=settings)  # fmt: skip
    _log_result(result, wall)
    return result


def _log_result(result: EvalResult, wall: float) -> None:
    logger.info(
        "%s [%s] accuracy %s over %d questions%s (%.1f s, %d tokens).",
        result.task,
        result.format,
        "-" if result.accuracy is None else f"{100 * result.accuracy:.2f}%",
        result.n,
        "" if result.maj_at_k is None else f", maj@{result.k} {100 * result.maj_at_k:.2f}%",
        wall,
        result.generated_tokens,
    )


def _generate_runs(
    model: Any,
    tokenizer: Any,
    records: Sequence[Mapping[str, Any]],
    prompts: list[str],
    plan: EvalPlan,
    k: int,
    *,
    max_new_tokens: int,
    temperature: float = EVAL_SC_TEMPERATURE,
    seed: int = 0,
    **gen_kwargs: Any,
) -> tuple[list[list[dict[str, Any]]], int]:
    """k = 0: greedy, one completion per prompt; k > 0: k samples. Per prompt, per sample: its texts and finish
    reasons (two-stage zero-shot-CoT: the rationale's too); and the tokens generated."""
    sampling = {"do_sample": True, "temperature": temperature, "num_return_sequences": k, "seed": seed}
    first = generate_completions(model, tokenizer, prompts, max_new_tokens=max_new_tokens, stop=plan.stop,
                                 **gen_kwargs, **(sampling if k else {}))  # fmt: skip
    tokens = sum(c.num_tokens for per in first for c in per)
    if not plan.two_stage:
        return [[{"completion": c.text, "finish_reason": c.finish_reason} for c in per] for per in first], tokens
    # Zero-shot-CoT stage 2: one greedy answer per rationale.
    flat = [(i, j, c) for i, per in enumerate(first) for j, c in enumerate(per)]
    second_prompts = [stage2_prompt(records[i]["question"].strip(), c.text, plan.answer_trigger) for i, _, c in flat]
    second = generate_completions(
        model, tokenizer, second_prompts, max_new_tokens=plan.answer_max_new_tokens, stop=None, **gen_kwargs
    )
    tokens += sum(per[0].num_tokens for per in second)
    runs: list[list[dict[str, Any]]] = [[{} for _ in per] for per in first]
    for (i, j, c), per in zip(flat, second, strict=True):
        runs[i][j] = {
            "rationale": c.text,
            "rationale_finish_reason": c.finish_reason,
            "completion": per[0].text,
            "finish_reason": per[0].finish_reason,
        }
    return runs, tokens


def _examples(
    records: Sequence[Mapping[str, Any]],
    prompts: Sequence[str],
    greedy: Sequence[Mapping[str, Any]],
    details: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """One audit row per question: its prompt, the greedy completion, what was parsed from it and the verdict."""
    examples: list[dict[str, Any]] = []
    for r, prompt, g, d in zip(records, prompts, greedy, details, strict=True):
        example = _example(r, d, g["completion"], g["finish_reason"], prompt=prompt)
        if "rationale" in g:
            example["rationale"] = g["rationale"]
        examples.append(example)
    return examples


def _example(
    record: Mapping[str, Any], detail: Mapping[str, Any], completion: str, finish_reason: str | None, **first: Any
) -> dict[str, Any]:
    """The audit row of one scored completion (``completions.jsonl``): its question's ``sample_index``, ``first``
    (e.g. the prompt, the rationale: in the order given), then the completion, the parsed prediction, the gold
    answer, the verdict and the finish reason."""
    return {
        "sample_index": record["sample_index"],
        **first,
        "completion": completion,
        "prediction": detail["prediction"],
        "answer": record["answer"],
        "correct": bool(detail["correct"]),
        "finish_reason": finish_reason,
    }


def _vote_samples(
    examples: list[dict[str, Any]],
    sampled: list[list[dict[str, Any]]],
    answers: Sequence[str],
    *,
    task: Task,
    score_format: str | None,
    mode: str,
) -> float | None:
    """Self-consistency: each question's samples scored and voted (the vote added to its example); maj@k."""
    k = len(sampled[0]) if sampled else 0
    flat = [s for per in sampled for s in per]
    scored = compute_accuracy([s["completion"] for s in flat], [a for a in answers for _ in range(k)], task=task,
                              format=score_format, mode=mode, return_details=True)  # fmt: skip
    sample_scores = scored["details"]
    correct = []
    for i, example in enumerate(examples):
        voted = vote(task.answer, sample_scores[i * k : (i + 1) * k], mode)
        example.update(votes=voted["votes"], maj_prediction=voted["prediction"], maj_correct=voted["correct"])
        correct.append(voted["correct"])
    return sum(correct) / len(correct) if correct else None


def _teacher_rows(dataset: Mapping[str, Iterable[Mapping[str, Any]]] | Any, split: str) -> list[dict[str, Any]]:
    if not isinstance(dataset, Mapping):
        return [dict(r) for r in dataset]
    if split == "all":
        rows = [dict(r) for s in dataset.values() for r in s]
        return sorted(rows, key=lambda r: int(r["sample_index"]))
    if split not in dataset:
        raise FtcotError(
            f"The task data has no {split!r} split (has: {', '.join(dataset)}); use 'all' or one of them."
        )
    return [dict(r) for r in dataset[split]]


def evaluate_teacher(
    task: str | Task,
    *,
    teacher: Any = None,
    trigger: str | None = None,
    split: str = "all",
    dataset: Any = None,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    mode: str = "paper",
) -> EvalResult:
    """The Teacher row: a teacher's two-stage Zero-shot-CoT answers scored like a student's.

    Args:
        task: the task.
        teacher: a :class:`ftcot_hf.teachers.Teacher`; default: the recorded text-davinci-002 completions of
            Kojima et al. (``ReplayTeacher.from_kojima_logs``) with their task-specific triggers.
        trigger: ``"generic"`` (``"\\nTherefore, the answer is"``, the paper's) or ``"kojima"``; default: kojima
            for the recorded teacher, generic otherwise.
        split: ``"all"`` (train + test, as the paper's Teacher row), ``"train"`` or ``"test"``. With a replay
            teacher only the questions it has recordings for are scored (GSM8K and AQuA: test only).
        dataset: the task's splits if already loaded (else :func:`ftcot_hf.load_task`).
        mode: answer parsing. The stage-2 answer is scored with no prefix (the reference's ``zs_cot``).

    Returns:
        An :class:`EvalResult` (format ``zero_shot_cot``; ``completion`` = the stage-2 answer, ``rationale`` the
        stage-1 text; ``complete`` from the answers' finish reasons).
    """
    # light path: every `ftcot` command loads the evaluation package (its parser); the teachers load only here
    from ftcot_hf.teachers.base import Request, SamplingParams
    from ftcot_hf.teachers.replay import ReplayTeacher

    task = resolve_task(task)
    if dataset is None:
        dataset = task.load(data_dir=data_dir, cache_dir=cache_dir)
    if teacher is None:
        teacher = ReplayTeacher.from_kojima_logs([task.name], data_dir=data_dir, datasets={task.name: dataset})
        trigger = trigger or "kojima"
    trigger_text = task.answer_trigger(trigger or "generic")
    rows = _teacher_rows(dataset, split)
    if isinstance(teacher, ReplayTeacher):
        covered = [r for r in rows if stage1_prompt(r["question"]) in teacher]
        if len(covered) < len(rows):
            logger.info("%s: the recording covers %d of %d %s questions.", task.name, len(covered), len(rows), split)
        rows = covered
    if not rows:
        raise FtcotError(f"No {task.name} {split} question to score for teacher {teacher.model!r}.")
    started = time.perf_counter()
    stage1 = SamplingParams(temperature=0.0, max_tokens=RATIONALE_MAX_TOKENS)
    stage2 = SamplingParams(temperature=0.0, max_tokens=ANSWER_MAX_TOKENS)
    rationales: dict[int, Any] = {}
    for pos, gens in teacher.generate([Request(stage1_prompt(r["question"]), stage1) for r in rows]):
        rationales[pos] = gens[0]
    second = [stage2_prompt(r["question"], rationales[i].text, trigger_text) for i, r in enumerate(rows)]
    answers: dict[int, Any] = {}
    for pos, gens in teacher.generate([Request(p, stage2) for p in second]):
        answers[pos] = gens[0]
    texts = [answers[i].text for i in range(len(rows))]
    finish = [answers[i].finish_reason for i in range(len(rows))]
    scores = compute_accuracy(
        texts,
        [str(r["answer"]) for r in rows],
        task=task,
        format=None,
        mode=mode,
        finish_reasons=finish,
        return_details=True,
    )
    examples = [_example(r, d, texts[i], finish[i], prompt=second[i], rationale=rationales[i].text)
                for i, (r, d) in enumerate(zip(rows, scores["details"], strict=True))]  # fmt: skip
    return EvalResult.from_scores(
        scores,
        task=task.name,
        format="zero_shot_cot",
        mode=mode,
        examples=examples,
        wall_s=round(time.perf_counter() - started, 3),
        model=teacher.model,
        split=split,
        settings={"trigger": trigger_text, "teacher": "replay" if isinstance(teacher, ReplayTeacher) else "live"},
    )


def evaluate_completions(
    completions: Sequence[str],
    dataset: Any,
    *,
    task: str | Task,
    format: str | None = "ft_cot",
    finish_reasons: Sequence[str] | None = None,
    mode: str = "paper",
    model: str | None = None,
) -> EvalResult:
    """Score completions made elsewhere (a file, another engine) against ``dataset``'s answers, in order."""
    task = resolve_task(task)
    records = _records(dataset)
    if len(completions) != len(records):
        raise ValueError(f"{len(completions)} completions for {len(records)} records: they must pair up.")
    scores = compute_accuracy(
        list(completions),
        [str(r["answer"]) for r in records],
        task=task,
        format=format,
        mode=mode,
        finish_reasons=finish_reasons,
        return_details=True,
    )
    examples = [_example(r, d, c, None if finish_reasons is None else finish_reasons[i])
                for i, (r, c, d) in enumerate(zip(records, completions, scores["details"], strict=True))]  # fmt: skip
    return EvalResult.from_scores(
        scores,
        task=task.name,
        format=format or "none",
        mode=mode,
        examples=examples,
        model=model,
    )
