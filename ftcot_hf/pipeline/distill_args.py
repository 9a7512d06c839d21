"""The ``distill:`` section of ``ftcot run``: ``--distill on_policy --distill_teacher M`` (or ``--distill_teacher_url
URL``, a vLLM server) and the options of ``ftcot distill`` a run passes on (``--distill_beta``, ``--distill_lmbda``...:
a view of ``DistillConfig`` by exclusion, as the teach, train, eval and hub sections are), and the ``DistillConfig``
of a task's distill stage. Its flags carry a ``distill_`` prefix: ``learning_rate``, ``temperature`` and the batch size
are also the train and teach sections' flags (in YAML: ``distill: {method: on_policy, teacher: M, beta: 0.5}``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftcot_hf.training.distill_config import DistillConfig
from ftcot_hf.utils.parser import declared_fields, section_values, view

DISTILL_METHODS = ("on_policy",)


@dataclass
class RunDistillArgs:
    """Whether a run distils its trained student, and from which teacher."""

    method: str | None = field(
        default=None,
        metadata={"help": "'on_policy': after training, the student samples completions of the training questions "
                  "and learns the --distill_teacher's next-token distributions over them (`ftcot distill`, a stage "
                  "between train and eval); the report shows the SFT and the distilled student side by side.",
                  "choices": list(DISTILL_METHODS)},
    )  # fmt: skip
    teacher: str | None = field(
        default=None,
        metadata={"help": "The distillation's teacher: a Hub id, a local folder, a .gguf file or "
                  "'smollm2-135m-instruct' (its vocabulary decides the trainer: `ftcot distill`). With "
                  "--distill_teacher_url: optional, the served model's tokenizer, checked against the student's."},
    )  # fmt: skip
    teacher_url: str | None = field(
        default=None,
        metadata={"help": "The distillation's teacher as a vLLM server instead (`trl vllm-serve --model M`): its "
                  "base URL, e.g. http://localhost:8000 (`ftcot distill --teacher_url`: TRL's "
                  "ServerDistillationTrainer, same vocabulary only)."},
    )  # fmt: skip


_DECLARED = declared_fields(DistillConfig)
DISTILL_OWNED = frozenset({"student", "teacher_model", "teacher_url", "task", "format", "output_dir", "bf16",
                           "save_strategy", "save_total_limit", "cpu_threads", "activation_checkpointing",
                           "gradient_checkpointing", "loss_add_tail", "report_best_epoch",
                           *(n for n in _DECLARED if n.startswith("eval_"))})  # fmt: skip
"""DistillConfig's own fields a run sets itself: the models (--student, --distill_teacher/_url), the task and format,
the folders and checkpoints, the precision and threads (the train section's), the per-epoch evaluation (the eval
section's), and two a run keeps at their defaults: activation checkpointing (off: small students), loss_add_tail
(TRL's tail bucket, without which a top-1 server support gives a zero loss)."""
DISTILL_TRL = ("max_steps", "per_device_train_batch_size", "gradient_accumulation_steps", "top_p", "top_k")
"""The options of TRL's DistillationConfig / TrainingArguments a run passes on as well: what sizes and samples a
distillation (their hundreds of others are `ftcot distill`'s only)."""
DISTILL_FIELDS = frozenset(_DECLARED - DISTILL_OWNED) | frozenset(DISTILL_TRL)
"""The DistillConfig options a run passes on (``--distill_<name>``, the ``distill:`` section): every field
DistillConfig declares but the run's own, and ``DISTILL_TRL``. A field added to DistillConfig is one of them."""

DISTILL_RUN = view(RunDistillArgs, title="On-policy distillation of a run (YAML section distill:)", section="distill",
                   rename={"method": "distill", "teacher": "distill_teacher",
                           "teacher_url": "distill_teacher_url"})  # fmt: skip
DISTILL = view(DistillConfig, title="Distillation (the fields of `ftcot distill`; YAML section distill:)",
               section="distill", only=DISTILL_FIELDS, rename={name: f"distill_{name}" for name in DISTILL_FIELDS},
               types={"lr_scheduler_type": str, "gold_kwargs": str | None})  # fmt: skip
DISTILL_SECTION: tuple[type, ...] = (DISTILL_RUN, DISTILL)


def distill_config(run: Any, task: str, student_dir: str | Path, output_dir: str | Path, *,
                   bf16: bool) -> DistillConfig:  # fmt: skip
    """The DistillConfig of one task's distill stage: the distill section + what the run decides (folders, format,
    seed, precision, the evaluation settings; the eval stages score the SFT and the distilled student)."""
    values = section_values(run, (DISTILL,))
    return DistillConfig(
        **values, student=str(student_dir), teacher_model=run.distill_teacher, teacher_url=run.distill_teacher_url,
        task=task, format=run.format,
        output_dir=str(output_dir), seed=run.seed, report_to="none", bf16=bf16, cpu_threads=run.cpu_threads,
        eval_every_epoch=run.scores_every_epoch, eval_start=False, eval_last_epoch=False,
        eval_max_new_tokens=run.eval_max_new_tokens, eval_batch_size=run.eval_batch_size, eval_mode=run.mode,
        report_best_epoch=run.select_epoch == "test", save_strategy="epoch", save_total_limit=1, disable_tqdm=False,
        resume_from_checkpoint="last",  # the stage's checkpoints of other inputs are discarded before it runs
    )  # fmt: skip
