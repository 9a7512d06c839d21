"""The paper's protocol as a ``TrainerCallback``: generate on the test split after every epoch, record the accuracy.

The paper evaluated after every epoch and reported the best epoch, i.e. an epoch selected on the test set. ftcot-hf
reports the last epoch; the best one only when asked (``report_best_epoch``), labelled "best epoch (selected on
test)". The same callback with ``split="validation"`` scores held-out train questions instead (``ftcot run
--validation_size``), so an epoch can be selected without looking at the test set.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from ftcot_hf.evaluation import evaluate_student
from ftcot_hf.students.defaults import EPOCH_EVAL_BATCH_SIZE, EPOCH_EVAL_MAX_NEW_TOKENS

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger(__name__)

EPOCH_METRICS = "epoch_metrics.json"


def epoch_metrics_file(split: str = "test") -> str:
    """``epoch_metrics.json`` for the test split (as before), ``epoch_metrics_<split>.json`` for another."""
    return EPOCH_METRICS if split == "test" else f"epoch_metrics_{split}.json"


def summarize_epochs(
    records: list[dict[str, Any]], *, report_best_epoch: bool
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(last epoch's record, best epoch's record or None unless asked). Ties go to the earlier epoch."""
    if not records:
        return None, None
    ordered = sorted(records, key=lambda r: r["epoch"])
    scored = [r for r in ordered if r["accuracy"] is not None]
    best = max(scored, key=lambda r: r["accuracy"]) if report_best_epoch and scored else None
    return ordered[-1], best


@contextmanager
def without_autocast(model: Any) -> Iterator[Any]:
    """``model`` with the forward it was loaded with, for the duration of an evaluation.

    With ``bf16``/``fp16`` set, accelerate wraps ``model.forward`` in ``torch.autocast`` (keeping the original as
    ``_original_forward``), so a callback that generates with the training model would score it in bfloat16 matmuls,
    while the saved student is float32 and every later evaluation (the run's eval stage, ``ftcot eval``) scores it in
    float32: the last epoch and the ones before it would be measured with different numerics (one SmolLM2-135M
    StrategyQA student on 160 test questions: 59.38 in float32, 55.00 under bf16 autocast, 20 answers different).
    """
    original = getattr(model, "_original_forward", None)
    patched = model.__dict__.get("forward")
    if original is None or patched is None:
        yield model
        return
    model.forward = original
    try:
        yield model
    finally:
        model.forward = patched


class EpochEvalCallback(TrainerCallback):
    """After each epoch: ``evaluate_student`` on the test records; accuracy per epoch into ``epoch_metrics.json``.

    Args:
        dataset: test records (``question``, ``answer``...), or validation records with ``split="validation"``.
        task, format: select the answer parser and the prompt / stop phrase (format None: the trainer's
            ``args.format``, i.e. after an encoder-decoder student switched it to ``*_t5``).
        tokenizer: the student's tokenizer (None: the trainer's ``processing_class``).
        split: the name the records are scored under: ``epoch_metrics_<split>.json``, ``epoch_completions_<split>/``
            and ``<split>_accuracy`` in the log history (``test``: ``epoch_metrics.json``, ``epoch_completions/``).
        batch_size, max_new_tokens, sc, mode: passed to the evaluation (``sc`` > 1: self-consistency).
        output_dir: where ``epoch_metrics.json`` is written (and read back when a run resumes).
        last_epoch: also evaluate after the final epoch (False when the caller scores the final model itself).
        evaluate_fn: the evaluation function (default ``ftcot_hf.evaluation.evaluate_student``), returning an
            object with ``accuracy`` and ``to_dict()``.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        task: Any,
        format: str | None,  # noqa: A002
        tokenizer: Any = None,
        batch_size: int = EPOCH_EVAL_BATCH_SIZE,
        max_new_tokens: int = EPOCH_EVAL_MAX_NEW_TOKENS,
        sc: int = 1,
        mode: str = "paper",
        output_dir: str | Path,
        last_epoch: bool = True,
        evaluate_fn: Callable[..., Any] | None = None,
        split: str = "test",
    ) -> None:
        self.dataset = dataset
        self.task, self.format, self.tokenizer = task, format, tokenizer
        self.batch_size, self.max_new_tokens, self.sc, self.mode = batch_size, max_new_tokens, sc, mode
        self.split = split
        self.path = Path(output_dir) / epoch_metrics_file(split)
        self.last_epoch = last_epoch
        self.evaluate_fn = evaluate_fn or evaluate_student
        self.records: list[dict[str, Any]] = []

    def on_train_begin(self, args, state, control, **kwargs):
        # A resumed run keeps the epochs evaluated before its checkpoint and forgets any after it.
        self.records = []
        if state.epoch and self.path.is_file():
            done = json.loads(self.path.read_text())
            self.records = [r for r in done if r["epoch"] <= round(state.epoch)]

    def _evaluate(self, model: Any, tokenizer: Any = None, format: str | None = None) -> Any:  # noqa: A002
        kwargs: dict[str, Any] = {
            "task": self.task,
            "format": format or self.format,
            "batch_size": self.batch_size,
            "max_new_tokens": self.max_new_tokens,
            "sc": self.sc,
        }
        if self.mode != "paper":
            kwargs["mode"] = self.mode
        return self.evaluate_fn(model, tokenizer or self.tokenizer, self.dataset, **kwargs)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero or model is None:
            return
        final = state.global_step >= state.max_steps if state.max_steps > 0 else False
        if final and not self.last_epoch:
            return
        self.score(args, state, model, int(round(state.epoch or 0)), **kwargs)

    def score(self, args: Any, state: Any, model: Any, epoch: int, **kwargs: Any) -> dict[str, Any]:
        """Evaluate ``model`` now and record the result as ``epoch``'s (file, completions, log history)."""
        was_training = model.training
        model.eval()
        try:
            tokenizer = self.tokenizer or kwargs.get("processing_class") or kwargs.get("tokenizer")
            with without_autocast(model):
                result = self._evaluate(model, tokenizer, self.format or getattr(args, "format", None))
        finally:
            if was_training:
                model.train()
        try:  # ftcot_hf.evaluation's EvalResult can leave its per-question examples out
            metrics = result.to_dict(examples=False)
        except TypeError:
            metrics = result.to_dict()
        record = {
            "epoch": epoch,
            "global_step": state.global_step,
            "accuracy": None if result.accuracy is None else float(result.accuracy),
            "metrics": metrics,
        }
        self.records = [r for r in self.records if r["epoch"] != epoch] + [record]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.records, indent=2, default=str))
        examples = getattr(result, "examples", None)
        if examples:  # what the student generated, per epoch, for auditing (as the reference kept)
            name = "epoch_completions" if self.split == "test" else f"epoch_completions_{self.split}"
            folder = self.path.parent / name
            folder.mkdir(exist_ok=True)
            lines = (json.dumps(e, default=str) for e in examples)
            (folder / f"epoch_{epoch}.jsonl").write_text("\n".join(lines) + "\n")
        state.log_history.append(
            {"epoch": float(epoch), "step": state.global_step, f"{self.split}_accuracy": record["accuracy"]}
        )
        logger.info(
            "epoch %d: %s accuracy %s (%s)",
            epoch, self.split, record["accuracy"], getattr(self.task, "name", self.task),
        )  # fmt: skip
        return record


class ValidationEvalCallback(EpochEvalCallback):
    """An :class:`EpochEvalCallback` scoring held-out validation questions (``split="validation"``). A class of its
    own because transformers warns "You are adding a ... EpochEvalCallback ... but there is already one" when a
    second callback of one class joins a trainer, and a run with a validation hold-out scores the test split after
    every epoch too."""

    def __init__(self, dataset: Dataset, **kwargs: Any) -> None:
        super().__init__(dataset, split="validation", **kwargs)
