"""``FineTuneCoTConfig``: TRL's ``SFTConfig`` with the paper's defaults and ftcot-hf's own options."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from transformers.trainer_utils import SaveStrategy, SchedulerType
from trl import SFTConfig

from ftcot_hf.students.defaults import EPOCH_EVAL_BATCH_SIZE, EPOCH_EVAL_MAX_NEW_TOKENS
from ftcot_hf.students.formats import get_format
from ftcot_hf.utils.fs import check_folder


def bf16_supported() -> bool:
    """bf16 autocast helps where the hardware has it: CUDA with bf16 (Ampere+). On CPU it is fp32."""
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def cpu_bf16_native() -> bool:
    """The CPU computes bf16 natively (AVX512-BF16, AMX): autocast there is ~1.6x faster than fp32 (SmolLM2-135M)."""
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_device_defaults(config: Any) -> None:
    """Precision and device settings of a TRL config (``SFTConfig``, ``DistillationConfig``) that work where it runs,
    set before TRL's ``__post_init__``: TRL turns ``bf16=None`` into True, which raises on machines without bf16
    ("doesn't support bf16/gpu"), so None means on where the hardware has it (CUDA with bf16), fp32 elsewhere."""
    if config.bf16 is None:
        config.bf16 = False if config.fp16 else bf16_supported()
    if not _cuda_available():
        config.dataloader_pin_memory = False  # nothing to pin to; torch warns once per epoch otherwise
        if config.bf16:
            config.use_cpu = True  # TrainingArguments accepts bf16 without a GPU only as CPU autocast
        if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
            # Several processes without CUDA (torchrun, accelerate launch): without use_cpu, transformers
            # initialises the process group but trains each process alone, on the whole dataset.
            config.use_cpu = True


@dataclass
class FineTuneCoTConfig(SFTConfig):
    r"""Configuration of a Fine-tune-CoT student run (``ftcot train`` and :func:`train_student`).

    A subclass of TRL's ``SFTConfig``, so every ``SFTConfig``/``TrainingArguments`` option works, a plain
    ``SFTTrainer`` accepts it, and ``TrlParser`` turns it into flags and YAML keys.

    Parameters that differ from ``SFTConfig`` (the paper's settings):
        learning_rate (3e-4), lr_scheduler_type (``constant``, no warm-up), per_device_train_batch_size (8),
        num_train_epochs (20), max_length (1024 = 512 prompt + 512 completion), completion_only_loss (True),
        weight_decay (0.01 and max_grad_norm 0, as the reference's ``torch.optim.AdamW`` under Lightning),
        bf16 (auto: on where the hardware supports it, fp32 on CPU; the paper trained in fp32: ``--bf16 false``),
        activation_checkpointing / gradient_checkpointing (off: it recomputes the forward pass, ~30% slower, and
        small students do not need the memory), train_sampling_strategy (``group_by_length``: batches of similar
        lengths pad less; ``random`` is the paper's sampling), save_strategy (epoch, keeping the last 2 checkpoints
        for resuming).

    Parameters that choose the data and the format:
        task, format, student, max_source_length, max_target_length
    Parameters of the per-epoch evaluation (the paper's protocol):
        eval_every_epoch, eval_last_epoch, eval_max_new_tokens, eval_batch_size, eval_sc, eval_mode, eval_limit,
        report_best_epoch
    Parameters of speed:
        cpu_threads, completion_logits_only, token_metrics
    """

    # Parameters whose default values are overridden from SFTConfig (the paper's settings)
    learning_rate: float = field(default=3e-4, metadata={"help": "AdamW learning rate (paper: 3e-4)."})
    lr_scheduler_type: SchedulerType | str = field(
        default="constant", metadata={"help": "Learning-rate schedule (paper: constant, no warm-up)."}
    )
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Batch size per device (paper: 8)."})
    num_train_epochs: float = field(default=20.0, metadata={"help": "Training epochs (paper: 20)."})
    max_length: int | None = field(
        default=1024,
        metadata={"help": "Maximum tokens of prompt + completion (paper: 512 + 512). Longer rows are truncated."},
    )
    completion_only_loss: bool | None = field(
        default=True, metadata={"help": "Loss on the completion only; the prompt is masked (paper: yes)."}
    )
    weight_decay: float = field(
        default=0.01,
        metadata={"help": "AdamW weight decay (0.01: torch.optim.AdamW's default, which the reference used)."},
    )
    max_grad_norm: float = field(
        default=0.0, metadata={"help": "Gradient clipping norm; 0 disables it (the reference did not clip)."}
    )
    bf16: bool | None = field(
        default=None,
        metadata={
            "help": "bf16 mixed precision. Default: on where supported (CUDA with bf16), off (fp32) on CPU. The "
            "paper trained in fp32: pass --bf16 false for an exact replication on GPU."
        },
    )
    activation_checkpointing: bool | None = field(
        default=None,
        metadata={
            "help": "Recompute activations in the backward pass to save memory (about 30%% slower); off by default "
            "(None) because paper-sized students fit without it. Alias: gradient_checkpointing."
        },
    )
    gradient_checkpointing: bool | None = field(
        default=None,
        metadata={"help": "Deprecated alias of activation_checkpointing (transformers 5); off by default."},
    )
    train_sampling_strategy: str = field(
        default="group_by_length",
        metadata={
            "help": "Batches of similar lengths (shuffled megabatches, sorted within): much less padding, about 1.5x "
            "faster than 'random' on the paper's tasks. 'random' samples as the paper did.",
            "choices": ["random", "sequential", "group_by_length", "batch_rebalance"],
        },
    )
    logging_steps: float = field(default=10, metadata={"help": "Log the training loss every N optimizer steps."})
    save_strategy: SaveStrategy | str = field(
        default="epoch", metadata={"help": "When to save a checkpoint (each epoch)."}
    )
    save_total_limit: int | None = field(
        default=2, metadata={"help": "Checkpoints kept (the newest ones); resuming needs the last one."}
    )

    # Parameters that choose the data and the format
    task: str | None = field(
        default=None, metadata={"help": "Task name (answer parsing of the per-epoch evaluation; dataset config)."}
    )
    format: str = field(
        default="ft_cot",
        metadata={
            "help": "Student format (ftcot_hf.students.formats.FORMATS): ft_cot, vanilla, natural, ft_cot_t5, "
            "vanilla_t5, middle_*/tail_* (Teacher-LM placements)..."
        },
    )
    student: str | None = field(
        default=None,
        metadata={"help": "The student to fine-tune: a Hub id, a local folder, a .gguf file or a built-in alias."},
    )
    max_source_length: int = field(
        default=512, metadata={"help": "Encoder-decoder students: maximum input tokens (paper: 512)."}
    )
    max_target_length: int = field(
        default=512, metadata={"help": "Encoder-decoder students: maximum target tokens (paper: 512)."}
    )

    # Parameters of the per-epoch evaluation
    eval_every_epoch: bool = field(
        default=False,
        metadata={
            "help": "Generate on the test split after every epoch and record its accuracy (epoch_metrics.json)."
        },
    )
    eval_last_epoch: bool = field(
        default=True,
        metadata={
            "help": "With eval_every_epoch: also evaluate after the final epoch. Off when the caller scores the final "
            "model itself (`ftcot run`'s eval stage), so the last epoch is not generated twice."
        },
    )
    eval_max_new_tokens: int = field(
        default=EPOCH_EVAL_MAX_NEW_TOKENS,
        metadata={"help": "Per-epoch evaluation: maximum generated tokens (paper: 1024 in total)."},
    )
    eval_batch_size: int = field(
        default=EPOCH_EVAL_BATCH_SIZE, metadata={"help": "Per-epoch evaluation: generation batch size."}
    )
    eval_sc: int = field(
        default=1, metadata={"help": "Per-epoch evaluation: self-consistency samples (1 = greedy, as the paper)."}
    )
    eval_mode: str = field(
        default="paper", metadata={"help": "Answer parsing of the evaluation: 'paper' (bit-exact) or 'robust'."}
    )
    eval_limit: int | None = field(
        default=None, metadata={"help": "Per-epoch evaluation on the first N test questions only (quick runs)."}
    )
    report_best_epoch: bool = field(
        default=False,
        metadata={
            "help": "Also report the best epoch's accuracy, labelled 'best epoch (selected on test)' (the paper's "
            "protocol; optimistic). The last epoch is always reported."
        },
    )

    # Parameters of speed
    cpu_threads: int | None = field(
        default=None,
        metadata={
            "help": "torch.set_num_threads for the run (default: torch's choice). On a CPU shared with other "
            "processes, fewer threads than cores can be much faster (threads wait on each other)."
        },
    )
    completion_logits_only: bool | None = field(
        default=None,
        metadata={
            "help": "Compute the LM head and a plain cross-entropy only at the positions that carry a label. TRL's "
            "fused head scores every position on CPU (prompt and padding too) and recomputes it in the backward "
            "pass. Default (None): on where TRL has no Triton kernel (CPU), off on CUDA/XPU, where TRL's own head "
            "is compact and does not materialise the logits. TRL's loss is also used wherever it is needed: dft "
            "loss, MoE, label smoothing, scaled logits."
        },
    )
    token_metrics: bool = field(
        default=False,
        metadata={
            "help": "Log mean token accuracy each step (TRL logs entropy and accuracy always; costly on CPU). Only "
            "with completion_logits_only."
        },
    )

    def __post_init__(self) -> None:
        resolve_device_defaults(self)
        if self.eval_sc < 1:
            raise ValueError(f"eval_sc must be >= 1, got {self.eval_sc}.")
        self._check_training_values()
        super().__post_init__()

    def _check_training_values(self) -> None:
        """Refuse settings that would train nothing and still report a "trained" student, and an unknown format
        (before any model is loaded). ``--max_steps N`` (> 0) decides the length instead of the epochs."""
        if not (isinstance(self.learning_rate, (int, float)) and math.isfinite(self.learning_rate)
                and self.learning_rate > 0):  # fmt: skip
            raise ValueError(
                f"learning_rate must be > 0 (got {self.learning_rate}): --learning_rate 3e-4 is the paper's."
            )
        max_steps = self.max_steps if isinstance(self.max_steps, int) else -1
        epochs = self.num_train_epochs
        if max_steps <= 0 and not (isinstance(epochs, (int, float)) and math.isfinite(epochs) and epochs > 0):
            raise ValueError(
                f"num_train_epochs must be > 0 (got {epochs}): an untrained student would be reported as trained. "
                "Pass --num_train_epochs 1 or more (paper: 20), or --max_steps N."
            )
        for name in ("max_length", "max_source_length", "max_target_length"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
                paper = "1024 (the paper's 512 + 512)" if name == "max_length" else "512 (the paper's)"
                raise ValueError(f"{name} must be a positive number of tokens (got {value!r}): --{name} {paper}.")
        hints = {"per_device_train_batch_size": "8 is the paper's", "gradient_accumulation_steps": "1 accumulates "
                 "nothing", "eval_batch_size": f"{EPOCH_EVAL_BATCH_SIZE} is the default"}  # fmt: skip
        for name, hint in hints.items():
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ValueError(f"{name} must be 1 or more (got {value!r}): --{name} {hint}.")
        if self.output_dir:  # a file there fails now, not when the Trainer saves (after loading the student)
            check_folder(self.output_dir)
        if isinstance(self.format, str):
            get_format(self.format)  # UnknownFormatError: names the close match and the known formats
