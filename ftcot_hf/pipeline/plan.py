"""What a run does, decided once before any work: :class:`RunPlan`, made by :func:`~ftcot_hf.pipeline.run.validate`.

A stage's own config (``TeachConfig``, ``FineTuneCoTConfig``, ``DistillConfig``, ``EvalConfig``, ``PushConfig``) checks
its values when it is built, so each is built here once, up front (a bad value fails before the teach stage), and the
stage then uses that same object: nothing is built twice, and what was checked is what runs. A stage that writes into
its temporary folder gets a copy with only ``output_dir`` changed (:func:`writing_into`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ftcot_hf.evaluation.cli import EvalConfig
from ftcot_hf.hub.cli import PushConfig
from ftcot_hf.pipeline.config import RunConfig
from ftcot_hf.students.loading import EMBEDDED_BASE_MODEL, is_embedded
from ftcot_hf.tasks import Task
from ftcot_hf.teach.cli import TeachConfig
from ftcot_hf.training.config import FineTuneCoTConfig

C = TypeVar("C")

EVAL_STAGES = ("eval_untrained", "eval", "eval_distilled")
"""The evaluation stages of a task, in the order they run: the student before training, after it, after the
distillation; each is a folder ``<run>/<stage>/<task>``."""


def rationales_folder(config: RunConfig) -> Path:
    """The teach stage's folder: ``rationales``, or with ``--num_shards`` a part's own (no student of a part)."""
    run_dir = Path(config.output_dir)
    if config.num_shards > 1:
        return run_dir / f"rationales.shard-{config.shard_index:05d}-of-{config.num_shards:05d}"
    return run_dir / "rationales"


def partial_folder(final: Path) -> Path:
    """Where a training stage checkpoints before its model is moved into ``final``: ``.<task>.partial`` beside it."""
    return final.parent / f".{final.name}.partial"


def writing_into(config: C, folder: str | Path) -> C:
    """``config`` (a stage's, built and checked once in the plan) writing into ``folder``, the stage's temporary
    folder: a shallow copy with only ``output_dir`` changed. Not a second construction, which would check every value
    again (and, for a TeachConfig with the length filter, load the student's tokenizer again)."""
    retargeted = copy.copy(config)
    retargeted.output_dir = str(folder)  # type: ignore[attr-defined]
    return retargeted


@dataclass(frozen=True)
class RunPlan:
    """A run's tasks, its config and each stage's own config, built once before any work."""

    config: RunConfig
    """The run's config with the epoch selection filled in for its tasks (a copy: the caller's is left as given)."""
    tasks: list[Task]
    """The run's tasks (the edge: below it, stages receive these objects)."""
    teach: TeachConfig
    """The teach stage's config; its ``output_dir`` is the stage's folder."""
    bf16: bool
    """Whether training takes bf16 autocast (``--bf16 auto`` resolved on this machine)."""
    train: dict[str, FineTuneCoTConfig]
    """Per task: its training's config (``output_dir``: the ``.<task>.partial`` folder it checkpoints in)."""
    distill: dict[str, Any]
    """Per task: its distillation's DistillConfig (empty without ``--distill``)."""
    evals: dict[str, dict[str, EvalConfig]]
    """Per evaluation stage (:data:`EVAL_STAGES`, those the run has), per task: its EvalConfig."""
    pushes: dict[str, PushConfig]
    """With ``--push_to_hub``: ``rationales`` and each task's student, their PushConfig."""

    @property
    def run_dir(self) -> Path:
        return Path(self.config.output_dir)

    @property
    def rationales(self) -> Path:
        return Path(self.teach.output_dir)

    def folder(self, stage: str, task: str) -> Path:
        """A task's folder of ``stage`` (``student``, ``distilled``, an eval stage): ``<run>/<stage>/<task>``."""
        return self.run_dir / stage / task


def eval_configs(config: RunConfig, tasks: list[Task], rationales: Path) -> dict[str, dict[str, EvalConfig]]:
    """Each evaluation stage's EvalConfig per task: the untrained student on its first ``--eval_untrained_limit``
    test questions (0: all), the trained and the distilled one on ``--limit_test``, all of the rationale folder's
    test split; named in the results as the run's report names them."""
    limits = [n for n in (config.eval_untrained_limit, config.limit_test) if n]
    stages: dict[str, tuple[int | None, Callable[[str], str]]] = {}
    if config.eval_untrained:
        stages["eval_untrained"] = (min(limits, default=None), lambda task: f"{config.student} (untrained)")
    stages["eval"] = (config.limit_test, lambda task: f"{config.student} (Fine-tune-CoT, {task})")
    if config.distill:
        stages["eval_distilled"] = (config.limit_test, lambda task: f"{config.student} (Fine-tune-CoT + on-policy "
                                    f"distillation from {config.distill_teacher_name}, {task})")  # fmt: skip
    run_dir = Path(config.output_dir)
    return {stage: {t.name: config.eval_config(t, rationales, run_dir / stage / t.name, model=label(t.name),
                                               limit=limit) for t in tasks}
            for stage, (limit, label) in stages.items()}  # fmt: skip


def push_configs(config: RunConfig, tasks: list[Task], rationales: Path) -> dict[str, PushConfig]:
    """The run's uploads (``--push_to_hub``): the rationale dataset to ``--hub_dataset_id``, each task's student to
    ``--hub_model_id`` (``{task}`` replaced), its card naming the base model, the task, the format and the dataset."""
    if not config.push_to_hub:
        return {}
    pushes = {}
    if config.hub_dataset_id:
        pushes["rationales"] = config.push_config("rationales", rationales, config.hub_dataset_id)
    if config.hub_model_id:
        base = EMBEDDED_BASE_MODEL if is_embedded(config.student) else config.student
        for t in tasks:
            pushes[t.name] = config.push_config(
                "student", Path(config.output_dir) / "student" / t.name, config.hub_model_id.replace("{task}", t.name),
                base_model=base, task=t.name, format=config.format, dataset_repo=config.hub_dataset_id,
            )  # fmt: skip
    return pushes
