"""Training a student: ``FineTuneCoTTrainer`` (``SFTTrainer`` with a lean loss) and the ``train_student`` entry point.

Decoder-only students train with TRL's ``SFTTrainer`` (prompt/completion rows: the prompt is masked, EOS appended);
encoder-decoder students (T5, Flan-T5), which ``SFTTrainer`` does not support, with ``Seq2SeqTrainer`` behind the same
config (:mod:`ftcot_hf.training.seq2seq`).

Where the time goes with a plain ``SFTTrainer`` on CPU (``bench/train_throughput.py`` measures it):

* ``gradient_checkpointing`` is on by default in TRL: the forward pass runs twice. :class:`FineTuneCoTConfig` turns it
  off (paper-sized students fit without it).
* TRL's fused LM head computes per-token log-probabilities in vocabulary tiles, and outside CUDA/XPU it scores
  *every* position (prompt and padding too), computes the entropy and top-1 accuracy of each position for its logs,
  and recomputes each tile in the backward pass. :class:`FineTuneCoTTrainer` (``completion_logits_only``) runs the
  LM head only on the positions that carry a label and uses a plain cross-entropy: the same loss value.

Several processes: ``accelerate launch --num_processes N -m ftcot_hf.cli train ...`` (GPUs; ``--cpu`` on CPU, DDP over
gloo: :mod:`ftcot_hf.training.distributed`); ``per_device_train_batch_size`` is per process, so divide the paper's 8 by
N to keep its batch. The per-epoch evaluation runs on the main process while the others wait at their next gradient
all-reduce: raise ``--ddp_timeout`` (default 1800 s) above one evaluation's duration.

Why this file is ~540 lines: ``train_student`` and the pieces it wires (SFTTrainer or Seq2SeqTrainer, resume,
callbacks, the summary) share the config; splitting ``train_student`` is issue 33's item 5.
"""

from __future__ import annotations

import functools
import json
import logging
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from transformers.utils import ModelOutput
from trl import SFTTrainer

from ftcot_hf.errors import FtcotError
from ftcot_hf.students.formats import FORMATS, get_format
from ftcot_hf.students.loading import load_student
from ftcot_hf.tasks import resolve_task
from ftcot_hf.training.callbacks import EpochEvalCallback, summarize_epochs
from ftcot_hf.training.config import FineTuneCoTConfig
from ftcot_hf.training.console import use_numeric_logs
from ftcot_hf.training.data import prepare_train_dataset
from ftcot_hf.training.lengths import cap_max_length, count_truncated, count_truncated_seq2seq, report_truncation
from ftcot_hf.training.outputs import loss_log, public_name, training_recipe, write_json_atomic, write_student_card
from ftcot_hf.training.seq2seq import build_seq2seq_trainer
from ftcot_hf.utils.console import quiet_libraries

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainerCallback

logger = logging.getLogger(__name__)

_DEFAULT_MAX_LENGTH = FineTuneCoTConfig.__dataclass_fields__["max_length"].default  # the paper's 512 + 512
_SCALED_LOGITS = (
    "final_logit_softcapping",
    "logit_scale",
    "output_multiplier",
    "lm_head_multiplier",
    "logits_scaling",
)


def _trl_has_fused_kernel(device: torch.device) -> bool:
    """TRL scores only the labelled positions, in Triton tiles, on CUDA/XPU; elsewhere it scores every position.
    The same condition as TRL's own (private) check in ``trl.kernels.chunked_logprob``: the kernel module loads and
    Triton is importable, on a CUDA or XPU device."""
    import importlib.util

    if device.type not in ("cuda", "xpu") or importlib.util.find_spec("triton") is None:
        return False
    return importlib.util.find_spec("trl.kernels.chunked_logprob") is not None


@dataclass
class CompactLMOutput(ModelOutput):
    """What the compact LM head returns: the summed token loss and the token counts (for normalising and logs)."""

    loss: torch.Tensor | None = None
    num_valid: torch.Tensor | None = None
    num_correct: torch.Tensor | None = None


def add_compact_lm_head(model: PreTrainedModel) -> None:
    """Patch ``model`` so that ``model(..., labels=..., compact_lm_head=True)`` runs the LM head on labelled positions.

    The backbone runs as usual; the hidden states of positions whose next-token label is not -100 go through the LM
    head, and the summed cross-entropy comes back (:class:`CompactLMOutput`). Without ``compact_lm_head`` the previous
    forward runs (TRL's fused head, or the model's own), so generation and evaluation are unchanged.
    """
    previous = model.forward

    @functools.wraps(type(model).forward)  # keep the signature: generate() validates its kwargs against it
    def forward(self, *args, compact_lm_head: bool = False, compact_token_accuracy: bool = False, **kwargs):
        if not compact_lm_head:
            return previous(*args, **kwargs)
        labels = kwargs.pop("labels")
        kwargs.pop("num_items_in_batch", None)
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state[:, :-1]
        head = self.get_output_embeddings()
        labels = labels[:, 1:].to(hidden.device)
        mask = labels != -100
        target = labels[mask]
        # A model split across devices can end its backbone elsewhere than its head (PEFT may wrap the head).
        logits = head(hidden[mask].to(next(head.parameters()).device))
        loss = F.cross_entropy(logits.float(), target.to(logits.device), reduction="sum")
        correct = (logits.detach().argmax(-1) == target.to(logits.device)).sum() if compact_token_accuracy else None
        return CompactLMOutput(loss=loss, num_valid=mask.sum(), num_correct=correct)

    model.forward = types.MethodType(forward, model)


FEW_TRAIN_ROWS = 8
"""Fewer training rows than this (less than one of the paper's batches of 8) get a warning: an own-data run on a
10-row file trained on 2 rows in silence."""


class FineTuneCoTTrainer(SFTTrainer):
    """``SFTTrainer`` whose loss runs the LM head only where there are labels (``completion_logits_only``).

    Everything else is TRL's: dataset preparation (EOS appended, prompt masked via common token prefix), packing,
    PEFT, logging. With a plain ``SFTConfig``, or where TRL's loss is needed (``loss_type="dft"``, label smoothing, a
    ``compute_loss_func``, MoE auxiliary loss, sequence parallelism, models that scale their logits), it is exactly
    ``SFTTrainer``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._compact = self._compact_supported()
        if self._compact:
            base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
            add_compact_lm_head(base)
        logger.info("loss: %s", "compact LM head (labelled positions only)" if self._compact else "TRL's fused head")

    _resumed_at = 0

    def resume_counters(self, checkpoint_state: dict[str, Any]) -> None:
        """Before resuming from a checkpoint whose ``trainer_state.json`` is ``checkpoint_state``: the run's
        counters continue from it (TRL's ``num_tokens`` restarted from zero in the logs after a resume, and
        transformers' end-of-training ``train_loss`` averaged only the steps since the resume)."""
        self._resumed_at = int(checkpoint_state.get("global_step") or 0)
        tokens = [h["num_tokens"] for h in checkpoint_state.get("log_history", []) if "num_tokens" in h]
        if tokens and hasattr(self, "_total_train_tokens"):
            self._total_train_tokens = int(tokens[-1])

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "train_loss" in logs and self._resumed_at:
            logs = {**logs, "train_loss": whole_run_loss(self.state, float(logs["train_loss"]), self._resumed_at)}
        super().log(logs, *args, **kwargs)

    def _issue_warnings_after_load(self, load_result: Any) -> None:
        """Resuming: a key the checkpoint left out because it is tied to another (``lm_head.weight`` = the input
        embeddings, which safetensors saves once) is not missing; transformers warned "missing keys in the checkpoint:
        ['lm_head.weight']" on every resume of a tied student. Other missing keys are still warned about."""
        missing = list(load_result.missing_keys)
        if missing:
            model = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
            params = dict(model.named_parameters(remove_duplicate=False))
            loaded = {p.data_ptr() for name, p in params.items() if name not in missing}
            tied = [k for k in missing if k in params and params[k].data_ptr() in loaded]
            if tied:
                model.tie_weights()
                load_result = types.SimpleNamespace(
                    missing_keys=[k for k in missing if k not in tied],
                    unexpected_keys=list(load_result.unexpected_keys),
                )
        super()._issue_warnings_after_load(load_result)

    def create_model_card(self, *args: Any, **kwargs: Any) -> None:
        """Nothing: TRL's auto-card ("fine-tuned version of [None]", the training folder's name as the model name)
        would land in the student folder at every checkpoint; ``train_student`` writes ours after saving."""

    def _compact_supported(self) -> bool:
        args = self.args
        wanted = getattr(args, "completion_logits_only", False)
        if wanted is None:  # auto: where TRL's head has no fused kernel (CPU, MPS...); on CUDA/XPU it is compact too
            wanted = not _trl_has_fused_kernel(args.device)
        if not wanted:
            return False
        if args.loss_type != "nll" or self.compute_loss_func is not None or self.label_smoother is not None:
            return False
        if self.aux_loss_enabled:
            return False
        parallelism = getattr(self.accelerator, "parallelism_config", None)
        if parallelism is not None and getattr(parallelism, "sp_enabled", False):
            return False
        text_config = self.model.config.get_text_config() if hasattr(self.model.config, "get_text_config") else None
        if text_config is None:
            return False
        return all(getattr(text_config, name, None) in (None, 1, 1.0) for name in _SCALED_LOGITS)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self._compact or return_outputs:
            return super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
        mode = "train" if self.model.training else "eval"
        want_accuracy = bool(getattr(self.args, "token_metrics", False))
        outputs = model(**inputs, compact_lm_head=True, compact_token_accuracy=want_accuracy)
        denominator = outputs.num_valid if num_items_in_batch is None else num_items_in_batch
        loss = outputs.loss / torch.as_tensor(denominator).clamp(min=1)
        # As in SFTTrainer.compute_loss: num_items_in_batch counts every rank's tokens, and DDP averages gradients.
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        if want_accuracy:
            valid = self.accelerator.gather_for_metrics(outputs.num_valid).sum()
            correct = self.accelerator.gather_for_metrics(outputs.num_correct).sum()
            self._metrics[mode]["mean_token_accuracy"].append((correct / valid).item() if valid > 0 else 0.0)
        if mode == "train":
            if "attention_mask" in inputs:
                n = inputs["attention_mask"].sum()
            else:
                n = torch.tensor(inputs["position_ids"].size(1), device=inputs["position_ids"].device)
            self._total_train_tokens += int(self.accelerator.gather_for_metrics(n).sum().item()) // self._tp_size
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return loss


@dataclass
class TrainResult:
    """What a run produced: where, how far, the loss, and the per-epoch test accuracy (when evaluated)."""

    output_dir: str
    global_step: int
    training_loss: float
    train_runtime: float
    epochs: list[dict[str, Any]] = field(default_factory=list)
    """One record per evaluated epoch: epoch, global_step, accuracy, metrics."""
    last_epoch: dict[str, Any] | None = None
    best_epoch: dict[str, Any] | None = None
    """Only when ``report_best_epoch``: the epoch with the highest test accuracy (selected on test)."""
    metrics: dict[str, Any] = field(default_factory=dict)
    truncation: dict[str, Any] | None = None
    """Rows longer than max_length (``TruncationReport.to_dict``): rows, truncated, longest, max_length, dropped."""
    recipe: dict[str, Any] | None = None
    """The settings of the run as the model card shows them (``ftcot push`` reads them from train_summary.json)."""

    def summary(self) -> str:
        lines = [f"Trained {self.global_step} steps in {self.train_runtime:.0f} s; final training loss "
                 f"{self.training_loss:.4f}. Model saved to {self.output_dir}"]  # fmt: skip
        if self.last_epoch is not None:
            lines.append(
                f"last epoch ({self.last_epoch['epoch']}): test accuracy {100 * self.last_epoch['accuracy']:.2f}%"
            )
        if self.best_epoch is not None:
            lines.append(
                f"best epoch (selected on test): epoch {self.best_epoch['epoch']}, "
                f"test accuracy {100 * self.best_epoch['accuracy']:.2f}%"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The record of ``train_summary.json``: ``output_dir`` is the student's folder name (this machine's path,
        or ``ftcot run``'s hidden ``.<task>.partial`` training folder, means nothing beside the weights)."""
        return {**asdict(self), "output_dir": public_name(self.output_dir)}


def load_student_for_training(
    name_or_path: str, *, gguf_file: str | None = None, dtype: Any = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a student through ``ftcot_hf.students.loading.load_student`` (Hub id, folder, GGUF, built-in alias), in
    train mode with right padding; ``dtype`` as TRL's ``ModelConfig.dtype`` (default: the checkpoint's)."""
    return load_student(name_or_path, gguf_file=gguf_file, dtype=dtype, for_training=True)


def checkpoint_problem(folder: Path) -> str | None:
    """Why a checkpoint folder cannot be resumed from (None: it can): a crash mid-save leaves a truncated
    ``trainer_state.json``, weights file or optimizer state, which would otherwise fail every re-run."""
    from safetensors import safe_open

    state = folder / "trainer_state.json"
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return f"trainer_state.json unreadable ({type(e).__name__})"
    weights = sorted(folder.glob("*.safetensors"))
    if not weights and not any(folder.glob("pytorch_model*.bin")):
        return "no weights file"
    for path in weights:
        try:
            with safe_open(str(path), framework="pt") as f:
                for key in list(f.keys())[-1:]:  # the last tensor ends at the end of the file
                    f.get_slice(key)
            size = path.stat().st_size
            with path.open("rb") as f:
                header = int.from_bytes(f.read(8), "little")
                meta = json.loads(f.read(header))
            end = max((v["data_offsets"][1] for k, v in meta.items() if k != "__metadata__"), default=0)
            if 8 + header + end != size:
                return f"{path.name} is truncated ({size} of {8 + header + end} bytes)"
        except Exception as e:  # noqa: BLE001 -- safetensors raises its own error types
            return f"{path.name} unreadable ({type(e).__name__})"
    import zipfile

    for path in folder.glob("*.pt"):  # torch.save files are zip archives: a truncated one has no central directory
        if path.stat().st_size and not zipfile.is_zipfile(path):
            return f"{path.name} is truncated"
    return None


def last_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The newest ``checkpoint-N`` of ``output_dir`` that is complete; broken newer ones are removed with a warning
    naming them (they hold nothing usable). None when there is none (a fresh run: nothing to say)."""
    import re
    import shutil

    root = Path(output_dir)
    found = sorted(
        (p for p in root.glob("checkpoint-*") if p.is_dir() and re.fullmatch(r"checkpoint-\d+", p.name)),
        key=lambda p: int(p.name.split("-")[1]),
        reverse=True,
    ) if root.is_dir() else []  # fmt: skip
    for i, folder in enumerate(found):
        problem = checkpoint_problem(folder)
        if problem is None:
            return str(folder)
        fallback = found[i + 1].name if i + 1 < len(found) else "none left: training restarts from the base model"
        logger.warning("Checkpoint %s cannot be resumed from (%s); removing it. Falling back to: %s.", folder,
                       problem, fallback)  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)
    return None


def resume_point(config: Any, resume: str | bool | None) -> str | None:
    """The checkpoint a run resumes from: ``resume`` (or ``config.resume_from_checkpoint``) as a folder, or
    ``last``/True for the newest complete one in ``config.output_dir``; None for a fresh run."""
    resume = config.resume_from_checkpoint if resume is None else resume
    if resume in (None, False, "", "false", "False", "no"):
        return None
    if resume in (True, "true", "True", "last", "auto", "yes"):
        return last_complete_checkpoint(config.output_dir)
    if not Path(str(resume)).is_dir():
        raise FtcotError(f"resume_from_checkpoint={resume!r} is not a checkpoint folder (use 'last' for the newest).")
    return str(resume)


_PROBE = "Q: A coin is heads up. Is the coin still heads up? ### The coin was not flipped. --> yes END"


def check_tokenizer(tokenizer: Any, student: str) -> None:
    """Refuse a tokenizer that cannot represent text (an empty or unknown-only vocabulary): training on it runs every
    step on nothing, with loss 0, and saves a student that can say nothing."""
    ids = list(tokenizer(_PROBE, add_special_tokens=False)["input_ids"])
    unk = getattr(tokenizer, "unk_token_id", None)
    distinct = {i for i in ids if i != unk}
    if len(distinct) < 5:
        raise FtcotError(
            f"The student {student} has no usable tokenizer: a {len(_PROBE)}-character sentence becomes {len(ids)} "
            f"token(s), {len(distinct)} of them known (vocabulary size {len(tokenizer)}). Save the tokenizer beside "
            "the weights (tokenizer.save_pretrained(folder)) or give a student that has one."
        )


def whole_run_loss(state: Any, after_resume: float, resumed_at: int) -> float:
    """The training loss of the whole run. After a resume, transformers averages only the steps run since the
    checkpoint; the steps before it come from the logged losses up to the checkpoint (restored with its state)."""
    total = state.global_step
    if not resumed_at or total <= resumed_at:
        return after_resume
    logged = [(h["step"], h["loss"]) for h in state.log_history if "loss" in h and h["step"] <= resumed_at]
    if not logged:
        return after_resume
    weighted, previous = 0.0, 0
    for step, loss in logged:
        weighted, previous = weighted + loss * (step - previous), step
    before = weighted / previous
    return (before * resumed_at + after_resume * (total - resumed_at)) / total


def train_student(
    config: FineTuneCoTConfig,
    model_or_path: str | PreTrainedModel,
    train_dataset: Dataset,
    eval_dataset: Dataset | None = None,
    peft_config: Any = None,
    *,
    tokenizer: PreTrainedTokenizerBase | None = None,
    callbacks: list[TrainerCallback] | None = None,
    resume_from_checkpoint: str | bool | None = None,
    gguf_file: str | None = None,
    task: Any = None,
    dataset_name: str | None = None,
) -> tuple[Trainer, TrainResult]:
    """Fine-tune a student and save it to ``config.output_dir``.

    Args:
        config: the run's settings (:class:`FineTuneCoTConfig`; ``config.format`` formats the records).
        model_or_path: a model object, or a Hub id / folder / GGUF file / alias for
            ``ftcot_hf.students.loading.load_student``.
        train_dataset: records (question, answer, rationale...: a rationale dataset's train split), formatted with
            ``config.format``; or prompt/completion rows, used as they are.
        eval_dataset: the test records (question, answer) the per-epoch evaluation generates on
            (``config.eval_every_epoch``).
        peft_config: a ``peft.LoraConfig`` (LoRA/QLoRA) or None.
        tokenizer: with a model object (default: loaded from ``model.name_or_path``).
        callbacks: more ``TrainerCallback``s.
        task: the :class:`~ftcot_hf.Task` the per-epoch evaluation scores (default: the task named by
            ``config.task``).
        resume_from_checkpoint: a checkpoint folder, or ``"last"``/True for the newest in ``output_dir``
            (default: ``config.resume_from_checkpoint``).
        gguf_file: the GGUF file inside ``model_or_path`` when it is a folder holding one.
        dataset_name: where the rationales came from (a Hub id goes into the model card's metadata).

    Returns:
        ``(trainer, TrainResult)``; the per-epoch accuracies are also in ``output_dir/epoch_metrics.json``, the
        summary in ``output_dir/train_summary.json``, the loss per logged step in ``output_dir/loss_log.json``, and
        ``output_dir/README.md`` is the student's model card (``ftcot_hf.training.card.render_model_card``).

    Raises:
        MissingColumnsError: the dataset lacks what the format needs (named), EmptyDatasetError: no rows, FtcotError:
        a decoder format for an encoder-decoder student (or the reverse), evaluation asked without test data.
    """
    if config.cpu_threads:
        torch.set_num_threads(config.cpu_threads)
    if isinstance(model_or_path, str):
        with quiet_libraries():
            model, loaded_tokenizer = load_student_for_training(model_or_path, gguf_file=gguf_file)
        tokenizer = tokenizer or loaded_tokenizer
        student_name = model_or_path
    else:
        model = model_or_path
        student_name = getattr(model, "name_or_path", None) or type(model).__name__
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(model.name_or_path)
    check_tokenizer(tokenizer, student_name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if config.student is None:
        config.student = student_name
    encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
    fmt = get_format(config.format)
    if encoder_decoder and not fmt.encoder_decoder and fmt.encoder_decoder_variant is not None:
        logger.info("Encoder-decoder student: format %s -> %s", fmt.name, fmt.encoder_decoder_variant)
        fmt = get_format(fmt.encoder_decoder_variant)
        config.format = fmt.name
    if fmt.encoder_decoder != encoder_decoder:
        kind = "an encoder-decoder" if encoder_decoder else "a decoder-only"
        decoder = next((n for n, f in FORMATS.items() if f.encoder_decoder_variant == fmt.name), "a decoder format")
        hint = "ft_cot_t5 / vanilla_t5 / *_t5" if encoder_decoder else decoder
        raise FtcotError(f"Format {fmt.name!r} does not fit {student_name}, {kind} model: use {hint}.")
    with quiet_libraries():
        train = prepare_train_dataset(train_dataset, fmt)
    if train.num_rows < FEW_TRAIN_ROWS:
        logger.warning(
            "Training on only %d row(s): the student can but memorise them, and its accuracy will say little. Teach "
            "more questions (a larger --limit_train or dataset) or more rationales each (--degree).",
            train.num_rows,
        )
    if encoder_decoder:
        truncation = count_truncated_seq2seq(train, tokenizer, config.max_source_length, config.max_target_length)
        positions = asked = None
    else:
        asked = config.max_length
        positions = cap_max_length(config, model, student_name)
        truncation = None if config.packing else count_truncated(train, tokenizer, config.max_length)
    capped = None if encoder_decoder or asked == config.max_length else ("none" if asked is None else str(asked))
    report_truncation(truncation, positions, capped_from=capped, quiet_cap=asked == _DEFAULT_MAX_LENGTH)

    all_callbacks = list(callbacks or [])
    epoch_eval = None
    if config.eval_every_epoch:
        if eval_dataset is None or (config.task is None and task is None):
            raise FtcotError("eval_every_epoch needs the test records (eval_dataset) and the task (config.task).")
        task = resolve_task(task if task is not None else config.task)
        test = eval_dataset
        if config.eval_limit:
            test = test.select(range(min(config.eval_limit, test.num_rows)))
        epoch_eval = EpochEvalCallback(
            test,
            task=task,
            format=fmt.name,
            tokenizer=tokenizer,
            batch_size=config.eval_batch_size,
            max_new_tokens=config.eval_max_new_tokens,
            sc=config.eval_sc,
            mode=config.eval_mode,
            output_dir=config.output_dir,
            last_epoch=config.eval_last_epoch,
        )
        all_callbacks.append(epoch_eval)

    with quiet_libraries():  # TRL's five dataset maps draw a bar each; the training bar is the one to see
        if encoder_decoder:
            trainer = build_seq2seq_trainer(
                config, model, tokenizer, train, peft_config=peft_config, callbacks=all_callbacks
            )
        else:
            trainer = FineTuneCoTTrainer(
                model=model,
                args=config,
                train_dataset=train,
                processing_class=tokenizer,
                peft_config=peft_config,
                callbacks=all_callbacks,
            )
    use_numeric_logs(trainer)
    checkpoint = resume_point(config, resume_from_checkpoint)
    resumed_at = 0
    if checkpoint is not None:
        checkpoint_state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
        resumed_at = int(checkpoint_state["global_step"])
        if isinstance(trainer, FineTuneCoTTrainer):
            trainer.resume_counters(checkpoint_state)
    with quiet_libraries():  # checkpoint saves draw "Writing model shards" bars inside the training bar otherwise
        output = trainer.train(resume_from_checkpoint=checkpoint)
        trainer.save_model(config.output_dir)
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(config.output_dir)

    epochs = list(epoch_eval.records) if epoch_eval is not None else []
    last, best = summarize_epochs(epochs, report_best_epoch=config.report_best_epoch)
    result = TrainResult(
        output_dir=str(config.output_dir),
        global_step=trainer.state.global_step,
        training_loss=whole_run_loss(trainer.state, float(output.training_loss), resumed_at),
        train_runtime=float(output.metrics.get("train_runtime", 0.0)),
        epochs=epochs,
        last_epoch=last,
        best_epoch=best,
        metrics=dict(output.metrics),
        truncation=truncation.to_dict() if truncation is not None else None,
    )
    result.recipe = training_recipe(config, dataset_name=dataset_name, rows=train.num_rows, result=result,
                                    processes=trainer.accelerator.num_processes)  # fmt: skip
    if trainer.is_world_process_zero():
        out = Path(config.output_dir)
        summary = {"student": config.student, "task": config.task, "format": fmt.name, **result.to_dict()}
        if best is not None:
            summary["best_epoch_note"] = "best epoch (selected on test): optimistic, the paper's protocol"
        write_json_atomic(out / "train_summary.json", summary)
        write_json_atomic(out / "loss_log.json", loss_log(trainer.state.log_history))
        write_student_card(out, config, result=result, dataset_name=dataset_name, encoder_decoder=encoder_decoder)
    logger.info("%s", result.summary())
    return trainer, result
