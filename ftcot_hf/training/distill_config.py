"""``DistillConfig``: TRL's ``DistillationConfig`` with ftcot-hf's defaults and options (``ftcot distill``)."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlparse

from transformers.trainer_utils import SaveStrategy, SchedulerType
from trl import DistillationConfig

from ftcot_hf.students.defaults import EVAL_BATCH_SIZE, EVAL_MAX_NEW_TOKENS
from ftcot_hf.students.formats import get_format
from ftcot_hf.training.config import resolve_device_defaults
from ftcot_hf.utils.fs import check_folder

logger = logging.getLogger(__name__)


@dataclass
class DistillConfig(DistillationConfig):
    r"""Configuration of on-policy distillation after Fine-tune-CoT (``ftcot distill`` and :func:`distill_student`).

    A subclass of TRL's ``DistillationConfig``: every ``DistillationConfig``/``TrainingArguments`` option works
    (``beta``, ``temperature``, ``max_completion_length``, ``top_p``, ``use_vllm``...) and a plain
    ``DistillationTrainer`` accepts it. When the teacher's vocabulary is not the student's, the same values become a
    ``GOLDConfig`` (``trl.experimental.gold``), with ``lmbda`` and ``gold_kwargs``. With ``teacher_url`` (a vLLM server
    scoring the completions) they become a ``ServerDistillationConfig`` (``trl.experimental.server_distillation``),
    with ``loss_top_k`` and ``loss_add_tail``.

    Parameters that differ from ``DistillationConfig``:
        learning_rate (1e-5; TRL's 1e-6 barely moves a 100M student in the few hundred steps a CPU affords),
        lr_scheduler_type (``constant``, as ``ftcot train``), num_train_epochs (1), max_completion_length (160: a
        Fine-tune-CoT completion, as ``ftcot eval``'s budget), bf16 (auto: on where the hardware has it, fp32 on CPU),
        activation_checkpointing (off: small students do not need it), save_strategy (epoch, the last 2 kept, to
        resume).

    Parameters that choose what is distilled:
        student (the folder ``ftcot train`` wrote), teacher_model, output_dir (default: ``<student>-distilled``),
        task and format (default: the student's own, from its ``train_summary.json``), lmbda, gold_kwargs
    Parameters of a teacher served by vLLM (``ftcot_hf.training.distill_server``):
        teacher_url, loss_top_k, loss_add_tail
    Parameters of the per-epoch evaluation (as ``ftcot train``'s):
        eval_every_epoch, eval_start, eval_last_epoch, eval_max_new_tokens, eval_batch_size, eval_sc, eval_mode,
        eval_limit, report_best_epoch, cpu_threads
    """

    FLAG_ALIASES: ClassVar[dict[str, str]] = {"teacher": "teacher_model", "teacher_model_server_url": "teacher_url"}

    # Parameters whose default values are overridden from DistillationConfig
    learning_rate: float = field(
        default=1e-5, metadata={"help": "AdamW learning rate (TRL's default 1e-6 barely moves a small student)."}
    )
    lr_scheduler_type: SchedulerType | str = field(
        default="constant", metadata={"help": "Learning-rate schedule (constant, as `ftcot train`)."}
    )
    num_train_epochs: float = field(default=1.0, metadata={"help": "Passes over the training questions."})
    max_completion_length: int | None = field(
        default=EVAL_MAX_NEW_TOKENS,
        metadata={"help": "Tokens the student samples per prompt at most (a rationale, ' --> answer END' and EOS)."},
    )
    bf16: bool | None = field(
        default=None,
        metadata={"help": "bf16 mixed precision. Default: on where supported (CUDA with bf16), off (fp32) on CPU."},
    )
    activation_checkpointing: bool | None = field(
        default=None,
        metadata={"help": "Recompute activations in the backward pass to save memory; off by default (None)."},
    )
    gradient_checkpointing: bool | None = field(
        default=None, metadata={"help": "Deprecated alias of activation_checkpointing (transformers 5); off."}
    )
    save_strategy: SaveStrategy | str = field(
        default="epoch", metadata={"help": "When to save a checkpoint (each epoch: --resume_from_checkpoint last)."}
    )
    save_total_limit: int | None = field(
        default=2, metadata={"help": "Checkpoints kept (the newest ones); resuming needs the last one."}
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "Where the distilled student is saved (default: <student>-distilled)."}
    )
    # TRL's, declared again so that --help shows them first: they are what a distillation is
    beta: float = field(
        default=1.0,
        metadata={"help": "The generalized JSD's interpolation: 0 forward KL (mode-covering), 1 reverse KL "
                  "(mode-seeking, TRL's default and on-policy distillation's usual choice), 0.5 the JSD."},
    )  # fmt: skip
    temperature: float = field(
        default=1.0, metadata={"help": "Sampling temperature of the student's completions and of the loss's softmax."}
    )

    # Parameters that choose what is distilled
    student: str | None = field(
        default=None,
        metadata={"help": "The student to distil into: a folder `ftcot train` wrote (runs/x/student/<task>), or any "
                  "student `ftcot train` takes."},
    )  # fmt: skip
    teacher_model: str | None = field(
        default=None,
        metadata={"help": "The teacher whose next-token distributions the student learns: a Hub id, a local folder, "
                  "a .gguf file or 'smollm2-135m-instruct'. Alias of TRL's --teacher_model_name_or_path. With "
                  "--teacher_url: optional, the served model's tokenizer, checked against the student's."},
    )  # fmt: skip
    teacher_url: str | None = field(
        default=None,
        metadata={"help": "The teacher as a vLLM server instead (`trl vllm-serve --model M`): its base URL, e.g. "
                  "http://localhost:8000. It scores the student's samples (top-k logprobs per token); TRL's "
                  "ServerDistillationTrainer (trl.experimental.server_distillation), same vocabulary only. Alias of "
                  "TRL's --teacher_model_server_url."},
    )  # fmt: skip
    task: str | None = field(
        default=None,
        metadata={"help": "Task of the prompts and the evaluation (default: the student's, in train_summary.json)."},
    )
    format: str | None = field(
        default=None,
        metadata={"help": "Student format of the prompts ('{question} ###' for ft_cot) and of the evaluation "
                  "(default: the student's, in train_summary.json, else ft_cot)."},
    )  # fmt: skip
    lmbda: float = field(
        default=1.0,
        metadata={"help": "Share of batches the student generates (on-policy); the rest are the rationale rows "
                  "(off-policy, GKD's mix). 1.0: fully on-policy (TRL's DistillationTrainer); below 1 it needs "
                  "--rationales and runs GOLD (trl.experimental.gold), as does a teacher with another vocabulary."},
    )  # fmt: skip
    gold_kwargs: dict[str, Any] | str | None = field(
        default=None,
        metadata={"help": "More GOLDConfig options where GOLD runs, as JSON ('{\"uld_use_hybrid_loss\": true}')."},
    )

    # Parameters of a teacher served by vLLM (ServerDistillationConfig's, which DistillationConfig lacks)
    loss_top_k: int = field(
        default=1,
        metadata={"help": "With --teacher_url: the teacher's top-k logprobs per token the loss runs on (a server "
                  "returns no more): 1 with --beta above 0 (TRL's top-1 support), K >= 1 with --beta 0 (forward KL "
                  "on the teacher's top K)."},
    )  # fmt: skip
    loss_add_tail: bool = field(
        default=True,
        metadata={"help": "With --teacher_url: one more bucket for the probability outside the top-k (TRL's default; "
                  "without it a top-1 support always gives a zero loss)."},
    )  # fmt: skip

    # Parameters of the per-epoch evaluation
    eval_every_epoch: bool = field(
        default=True, metadata={"help": "Score the test split after every epoch (epoch_metrics.json)."}
    )
    eval_start: bool = field(
        default=True,
        metadata={"help": "Also score the SFT student before distilling (epoch 0 in epoch_metrics.json), so the "
                  "report shows it beside the distilled one. Off when the caller scores it itself (`ftcot run`)."},
    )  # fmt: skip
    eval_last_epoch: bool = field(
        default=True, metadata={"help": "With eval_every_epoch: also score after the final epoch."}
    )
    eval_max_new_tokens: int = field(default=EVAL_MAX_NEW_TOKENS, metadata={"help": "Evaluation: tokens at most."})
    eval_batch_size: int = field(default=EVAL_BATCH_SIZE, metadata={"help": "Evaluation: generation batch size."})
    eval_sc: int = field(default=1, metadata={"help": "Evaluation: self-consistency samples (1 = greedy)."})
    eval_mode: str = field(
        default="paper", metadata={"help": "Answer parsing of the evaluation: 'paper' (bit-exact) or 'robust'."}
    )
    eval_limit: int | None = field(
        default=None, metadata={"help": "Evaluation on the first N test questions only (quick runs)."}
    )
    report_best_epoch: bool = field(
        default=False,
        metadata={"help": "Also report the best epoch, labelled 'selected on test' (optimistic); the last is always."},
    )
    cpu_threads: int | None = field(
        default=None, metadata={"help": "torch.set_num_threads for the run (default: torch's choice)."}
    )

    def __post_init__(self) -> None:
        if self.teacher_model_name_or_path and self.teacher_model not in (None, self.teacher_model_name_or_path):
            raise ValueError(f"--teacher_model {self.teacher_model} and --teacher_model_name_or_path "
                             f"{self.teacher_model_name_or_path} disagree: give one of them.")  # fmt: skip
        self.teacher_model = self.teacher_model or self.teacher_model_name_or_path
        self.teacher_model_name_or_path = self.teacher_model
        if self.teacher_url is not None:
            self.teacher_url = normalize_url(self.teacher_url)
        if self.output_dir is None and self.student:  # beside the SFT student: runs/x/student/<task>-distilled
            self.output_dir = str(self.student).rstrip("/") + "-distilled"
        resolve_device_defaults(self)
        if isinstance(self.gold_kwargs, str):
            try:
                self.gold_kwargs = json.loads(self.gold_kwargs) if self.gold_kwargs.strip() else None
            except ValueError as e:
                raise ValueError(f"--gold_kwargs is not JSON ({e}): give an object of GOLDConfig options.") from None
        if self.gold_kwargs is not None and not isinstance(self.gold_kwargs, dict):
            raise ValueError(f"--gold_kwargs must be a JSON object of GOLDConfig options, not {self.gold_kwargs!r}.")
        self._check_values()
        super().__post_init__()

    def _check_values(self) -> None:
        """Settings that would distil nothing, or fail only after the models are loaded, are refused here."""
        if not (isinstance(self.lmbda, (int, float)) and 0.0 <= self.lmbda <= 1.0):
            raise ValueError(f"lmbda must be in [0, 1] (the share of on-policy batches), got {self.lmbda!r}.")
        if not (isinstance(self.learning_rate, (int, float)) and math.isfinite(self.learning_rate)
                and self.learning_rate > 0):  # fmt: skip
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}.")
        if not (isinstance(self.temperature, (int, float)) and self.temperature > 0):
            raise ValueError(f"temperature must be > 0 (it divides the logits), got {self.temperature!r}.")
        max_steps = self.max_steps if isinstance(self.max_steps, int) else -1
        if max_steps <= 0 and not (math.isfinite(self.num_train_epochs) and self.num_train_epochs > 0):
            raise ValueError(f"num_train_epochs must be > 0 (got {self.num_train_epochs}), or give --max_steps N.")
        for name in ("max_completion_length", "eval_max_new_tokens", "eval_batch_size", "eval_sc",
                     "per_device_train_batch_size"):  # fmt: skip
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ValueError(f"{name} must be 1 or more, got {value!r}.")
        if self.output_dir:
            check_folder(self.output_dir)
        if isinstance(self.format, str):
            get_format(self.format)  # UnknownFormatError: names the close match
        if self.teacher_url is not None:
            check_server_options(self)


# --- the teacher server's options (``--teacher_url``: :mod:`ftcot_hf.training.distill_server`) ----------------------
def normalize_url(url: str) -> str:
    """The server's base URL as VLLMClient wants it (it appends ``/v1/...`` itself): ``.../v1`` as ``ftcot teach``'s
    ``--base_url`` takes it is accepted too."""
    url = str(url).strip().rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def check_server_options(config: DistillConfig) -> None:
    """What the server path cannot do, refused when the config is made (ValueError: one line, exit 2)."""
    url = config.teacher_url
    parsed = urlparse(url or "")
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"--teacher_url {url!r} is not an http(s) URL: give the vLLM server's, e.g. "
                         "http://localhost:8000.")  # fmt: skip
    if config.lmbda < 1.0:
        raise ValueError(f"--lmbda {config.lmbda:g} mixes in off-policy batches, which GOLD trains with a local "
                         "teacher; with --teacher_url TRL's ServerDistillationTrainer is fully on-policy (--lmbda 1).")
    if config.gold_kwargs:
        raise ValueError("--gold_kwargs: GOLD does not run with --teacher_url (TRL's ServerDistillationTrainer "
                         "does); give the teacher as --teacher_model for GOLD.")  # fmt: skip
    top_k = config.loss_top_k
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ValueError(f"--loss_top_k must be 1 or more with --teacher_url, got {top_k!r}: a server returns the "
                         "teacher's top-k logprobs, not its full distribution.")  # fmt: skip
    if config.beta > 0 and top_k != 1:
        raise ValueError(f"--loss_top_k {top_k} with --beta {config.beta:g}: with a server teacher TRL computes a "
                         "divergence with a reverse-KL part on top-1 support only; use --loss_top_k 1, or --beta 0 "
                         "(forward KL on the teacher's top k).")  # fmt: skip
    if config.teacher_model_init_kwargs:
        raise ValueError("--teacher_model_init_kwargs: with --teacher_url no teacher is loaded here (the server "
                         "holds it).")  # fmt: skip
    if config.use_vllm and config.vllm_mode == "server":
        student = config.vllm_server_base_url or f"http://{config.vllm_server_host}:{student_port(config)}"
        if _address(student) == _address(url):
            raise ValueError(f"The student's vLLM server ({student}) is the teacher's (--teacher_url {url}): give "
                             "the student's its own --vllm_server_port.")  # fmt: skip
    if config.temperature != 1.0:
        logger.warning("--temperature %g with --teacher_url: vLLM returns the teacher's prompt logprobs at "
                       "temperature 1, while the student's are divided by %g.", config.temperature,
                       config.temperature)  # fmt: skip


def student_port(config: DistillConfig) -> int:
    """The port of the student's vLLM server (``--use_vllm --vllm_mode server``): TRL's ServerDistillationConfig
    moves DistillationConfig's default 8000, the teacher's usual port, to 8001 (:func:`server_config` keeps that)."""
    from trl import DistillationConfig

    port = int(config.vllm_server_port)
    return 8001 if port == DistillationConfig.vllm_server_port else port


def _address(url: str) -> tuple[str, int | None]:
    parsed = urlparse(url)
    host = parsed.hostname or ""
    host = "127.0.0.1" if host in ("localhost", "0.0.0.0") else host  # the same loopback server
    return host, parsed.port or (443 if parsed.scheme == "https" else 80)
