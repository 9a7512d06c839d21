"""The ``distill:`` section of ``ftcot run``: ``--distill on_policy --distill_teacher M`` (or ``--distill_teacher_url
URL``, a vLLM server) and the options of
``ftcot distill`` a run passes on (``--distill_beta``, ``--distill_lmbda``...), and the ``DistillConfig`` of a
task's distill stage. Its flags carry a ``distill_`` prefix: ``learning_rate``, ``temperature`` and the batch size
are also the train and teach sections' flags (in YAML: ``distill: {method: on_policy, teacher: M, beta: 0.5}``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftcot_hf.training.distill_config import DistillConfig
from ftcot_hf.utils.parser import section_values, view

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


DISTILL_FIELDS = ("beta", "temperature", "lmbda", "max_completion_length", "learning_rate", "lr_scheduler_type",
                  "num_train_epochs", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
                  "top_p", "top_k", "gold_kwargs", "loss_top_k")  # fmt: skip
"""The DistillConfig options a run passes on; the others are the run's (folders, evaluation, seed, precision)."""

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
